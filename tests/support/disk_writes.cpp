#include "disk_writes.h"

#include <algorithm>
#include <cstring>

namespace nodeha::test {

namespace {

uint64_t u64_at(std::string_view sector, size_t offset) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(sector[offset + i])) << (8 * i);
  return v;
}

struct Stamp {
  bool present = false;
  uint64_t seq = 0;
  uint64_t lba = 0;
};

Stamp stamp_of(std::string_view image, uint64_t lba) {
  std::string_view sector = image.substr(lba * kSectorBytes, kSectorBytes);
  if (sector.substr(0, kDiskWriterMagic.size()) != kDiskWriterMagic) return {};
  return {true, u64_at(sector, 8), u64_at(sector, 16)};
}

std::string at(uint64_t lba) { return "LBA " + std::to_string(lba) + ": "; }

}  // namespace

DiskWrites check_disk_writes(std::string_view image, GuestIs guest) {
  DiskWrites out;
  if (image.size() % kSectorBytes != 0) {
    out.problem = "image size " + std::to_string(image.size()) + " is not a whole number of 512-byte sectors";
    return out;
  }
  out.limit_seen = std::min<uint64_t>(image.size() / kSectorBytes, 0xffffffffULL);
  if (out.limit_seen < 2) {
    out.problem = "image of " + std::to_string(out.limit_seen) + " sector(s) has no room for writes";
    return out;
  }
  const uint64_t limit = out.limit_seen;
  // Pass 1: the highest seq and where it is; a stamp at the wrong place is foreign data.
  for (uint64_t lba = 1; lba < limit; ++lba) {
    Stamp s = stamp_of(image, lba);
    if (!s.present) continue;
    if (s.lba != lba || s.seq == 0) {
      out.problem = at(lba) + "foreign stamp (seq " + std::to_string(s.seq) + ", naming LBA " + std::to_string(s.lba) + ")";
      return out;
    }
    ++out.sectors_written;
    if (s.seq > out.highest_seq) {
      out.highest_seq = s.seq;
      out.highest_lba = lba;
    }
  }
  const uint64_t round = limit - 1;
  auto name = [](uint64_t seq) { return seq ? "seq " + std::to_string(seq) : std::string("no stamp"); };
  if (guest == GuestIs::kRunning) {
    // Pass 2 of a scan: `done`, the fewest writes done when this LBA was read, only grows. LBA r
    // holding v (0: no stamp) was read after write v and before its next one, v + round (or r).
    uint64_t done = 0;
    for (uint64_t lba = 1; lba < limit; ++lba) {
      uint64_t found = stamp_of(image, lba).seq;
      uint64_t next = found ? found + round : lba;
      done = std::max(done, found);
      if (done < next) continue;
      out.problem = at(lba) + "found " + name(found) + ", but a lower LBA read before it holds seq " +
                    std::to_string(done) + ", written after this LBA's next write (seq " + std::to_string(next) +
                    "): a lost write";
      return out;
    }
    out.consistent = true;
    return out;
  }
  // Pass 2 of an instant: every LBA against the one snapshot that S at L allows. `back` is how
  // many sectors before S the writer wrote this LBA last.
  const uint64_t S = out.highest_seq, L = out.highest_lba;
  for (uint64_t lba = 1; lba < limit; ++lba) {
    uint64_t back = lba <= L ? L - lba : L + round - lba;
    uint64_t expected = S > back ? S - back : 0;
    uint64_t found = stamp_of(image, lba).seq;
    if (found == expected) continue;
    out.problem = at(lba) + "expected " + name(expected);
    if (!expected) out.problem += " (highest seq " + std::to_string(S) + " at LBA " + std::to_string(L) + ")";
    out.problem += ", found " + name(found);
    if (expected && found < expected) out.problem += " (a lost write)";
    return out;
  }
  out.consistent = true;
  return out;
}

}  // namespace nodeha::test
