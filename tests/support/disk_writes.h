// What the boot-sector disk writer (tests/fixtures/disk_writer.S) left on a disk, and whether it
// proves that no write was lost. Pure: it reads the bytes of a raw image, nothing else.
//
// The writer stamps sectors LBA 1, 2, ..., limit-1, then wraps to 1, each with "NODEHAWR", a
// global seq (1 for the first sector written, +1 per sector) and its own LBA; limit is the
// disk's sector count capped at 2^32-1. So a snapshot of the disk taken at any instant is fully
// determined by the highest seq S and where it sits (LBA L): LBA <= L holds S - (L - LBA), a
// LBA above L holds the previous round's S - (L - LBA) - (limit - 1), and a sector whose
// expected seq is 0 or less was never written (no stamp). Anything else is a lost write (an
// older seq, no stamp where one belongs) or foreign data (a stamp naming another LBA, a stamp
// where none belongs).
//
// An image read while the guest writes (GuestIs::kRunning) is not of one instant: the reader
// scans it in LBA order, each LBA as it was at its own, later moment, and a slow step of the
// reader (qemu-img writes its output between reads) lets the writer pass it. What such a scan
// can show is exactly this: there is a count of writes done, never falling from one LBA to the
// next, at which every LBA holds its last stamp (none before its first write). The check finds
// the smallest such count LBA by LBA. It is weaker than the exact check: a write lost in the
// writer's current round looks like the scan catching up with the writer; one lost in the
// previous round (above the writer's position) is still found. Prove with a stopped guest.
//
// Cost: two passes over the image, O(size), no allocation beyond the result.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace nodeha::test {

inline constexpr std::string_view kDiskWriterMagic = "NODEHAWR";
inline constexpr uint64_t kSectorBytes = 512;

// Whether the guest may have been writing while its image was read.
enum class GuestIs {
  kStopped,  // paused, shut off, or gone: the image is of one instant, checked exactly
  kRunning,  // the image is a scan in LBA order while the writer went on
};

struct DiskWrites {
  uint64_t highest_seq = 0;      // S: the last sector the writer finished; 0 when none was
  uint64_t highest_lba = 0;      // L: where S sits; 0 when nothing was written
  uint64_t sectors_written = 0;  // LBAs that hold a stamp (at most limit_seen - 1)
  uint64_t limit_seen = 0;       // the writer's limit for an image of this size
  bool consistent = false;       // every LBA holds what the writer must have left there last
  std::string problem;           // the first LBA that does not, expected vs found; empty when consistent
};

// Checks a raw image (the whole disk, sector 0 first).
DiskWrites check_disk_writes(std::string_view image, GuestIs guest = GuestIs::kStopped);

}  // namespace nodeha::test
