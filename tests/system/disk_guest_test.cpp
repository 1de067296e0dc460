// The disk-writing guest (disk_guest.h) on real, isolated libvirtd daemons with QEMU: the proof
// the local-disk migration tests stand on. A guest boots the writer from its own disk, the image
// read from outside shows its writes growing and consistent (no write lost), a paused guest's
// image holds still, and a path under /var is each daemon's own file. A qcow2 guest writes into
// its top layer only: the shared backing file keeps its bytes. The write rate is printed.
#include "disk_guest.h"
#include "libvirtd.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

const std::string kRawImage = "/var/lib/libvirt/images/writer.raw";
const std::string kTopImage = "/var/lib/libvirt/images/writer.qcow2";
constexpr int kDiskMib = 64;

// FNV-1a of a file's bytes: tells whether a shared backing file changed.
uint64_t checksum(const std::string& path) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : read_file(path)) h = (h ^ ch) * 1099511628211ULL;
  return h;
}

// Reads the image until its highest seq reaches `at_least` (or it turns inconsistent, or 60 s
// pass); the last read.
DiskWrites read_until(Libvirtd& daemon, const std::string& path, uint64_t at_least) {
  DiskWrites w;
  wait_until(
      [&] {
        w = read_disk_writes(daemon, path, GuestIs::kRunning);
        return !w.consistent || w.highest_seq >= at_least;
      },
      60s);
  return w;
}

// Pauses the guest and reads its image twice: a paused writer's image holds still.
DiskWrites read_paused(Libvirtd& daemon, const std::string& uuid, const std::string& path) {
  std::string error;
  EXPECT_TRUE(daemon.suspend(uuid, &error)) << error;
  EXPECT_EQ(daemon.domain_state(uuid), "paused");
  DiskWrites once = read_disk_writes(daemon, path, GuestIs::kStopped);
  DiskWrites again = read_disk_writes(daemon, path, GuestIs::kStopped);
  EXPECT_TRUE(once.consistent) << once.problem;
  EXPECT_TRUE(again.consistent) << again.problem;
  EXPECT_EQ(once.highest_seq, again.highest_seq) << "the image changed while the guest was paused";
  EXPECT_EQ(once.sectors_written, again.sectors_written);
  return again;
}

// Two reads a little apart (the second once 4000 more sectors were written) while the guest
// runs: the writes grow, both reads are consistent. Prints the rate (sectors per second between
// the reads) and wants a few hundred at least with KVM. The second read.
DiskWrites writes_grow_consistently(Libvirtd& daemon, const std::string& path, const char* format) {
  DiskWrites first = read_until(daemon, path, 1);
  EXPECT_TRUE(first.consistent) << first.problem;
  EXPECT_GT(first.highest_seq, 0u) << "the guest wrote nothing within 60 s";
  if (!first.consistent || first.highest_seq == 0) return first;
  auto t0 = std::chrono::steady_clock::now();
  DiskWrites second = read_until(daemon, path, first.highest_seq + 4000);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(second.consistent) << second.problem;
  EXPECT_GE(second.highest_seq, first.highest_seq + 4000) << "the writes stalled";
  double rate = static_cast<double>(second.highest_seq - first.highest_seq) / seconds;
  bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
  std::printf("[ rate     ] %.0f sectors/s (%.1f MiB/s) written by the guest, %s, %s, cache=writethrough\n", rate,
              rate / 2048, format, kvm ? "kvm" : "tcg");
  std::fflush(stdout);
  if (kvm) {
    EXPECT_GE(rate, 300) << "the migration tests need a few hundred writes per second";
  }
  return second;
}

TEST(DiskGuest, ARawDiskWriterWritesConsistentlyIntoItsDaemonsOwnImage) {
  Libvirtd a, b;
  ASSERT_TRUE(a.running()) << a.log();
  ASSERT_TRUE(b.running()) << b.log();
  std::string error;
  ASSERT_TRUE(make_raw_disk(a, kRawImage, kDiskMib, true, &error)) << error;
  json info = json::parse(image_info(a, kRawImage), nullptr, false);
  EXPECT_EQ(info.value("format", ""), "raw") << info.dump();
  EXPECT_EQ(info.value("virtual-size", 0ULL), uint64_t{kDiskMib} << 20) << info.dump();
  EXPECT_GE(info.value("actual-size", 0ULL), uint64_t{kDiskMib - 1} << 20) << "random fill is not sparse: " << info.dump();
  DiskWrites fresh = read_disk_writes(a, kRawImage, GuestIs::kStopped);
  EXPECT_TRUE(fresh.consistent) << fresh.problem;
  EXPECT_EQ(fresh.highest_seq, 0u) << "random fill is not a stamp";
  EXPECT_EQ(fresh.limit_seen, uint64_t{kDiskMib} << 11);

  const std::string uuid = Libvirtd::guest_uuid(1);
  ASSERT_TRUE(a.define_and_start_with_disk("writer", uuid, 64, {kRawImage, "raw"}, &error)) << error << "\n" << a.log();

  DiskWrites second = writes_grow_consistently(a, kRawImage, "raw");
  if (!second.consistent || second.highest_seq == 0) return;

  DiskWrites paused = read_paused(a, uuid, kRawImage);
  EXPECT_GE(paused.highest_seq, second.highest_seq);

  // Same path, other daemon: not there; nor on the machine itself.
  EXPECT_EQ(a.run_in_mounts({"test", "-f", kRawImage}), 0);
  EXPECT_EQ(b.run_in_mounts({"test", "-e", kRawImage}), 1) << "daemon b sees daemon a's image";
  EXPECT_FALSE(std::filesystem::exists(kRawImage)) << "the image leaked out of daemon a's namespace";
  DiskWrites elsewhere = read_disk_writes(b, kRawImage, GuestIs::kStopped);
  EXPECT_FALSE(elsewhere.consistent);
  EXPECT_THAT(elsewhere.problem, HasSubstr("qemu-img convert " + kRawImage + " failed"));

  // Resumed, it writes on from where it was.
  ASSERT_TRUE(a.resume(uuid, &error)) << error;
  DiskWrites resumed = read_until(a, kRawImage, paused.highest_seq + 1);
  EXPECT_TRUE(resumed.consistent) << resumed.problem;
  EXPECT_GT(resumed.highest_seq, paused.highest_seq);
}

TEST(DiskGuest, AQcow2WriterWritesIntoItsTopAndLeavesTheSharedBackingFileAlone) {
  TempDir shared;  // before the daemons: gone only after their guests
  const std::string backing = shared.file("base.raw");
  Libvirtd a, b;
  ASSERT_TRUE(a.running()) << a.log();
  ASSERT_TRUE(b.running()) << b.log();
  std::string error;
  EXPECT_FALSE(make_qcow2_over_backing(a, kTopImage, "/var/lib/libvirt/images/base.raw", kDiskMib, &error));
  EXPECT_THAT(error, HasSubstr("must be on shared storage"));
  ASSERT_TRUE(make_qcow2_over_backing(a, kTopImage, backing, kDiskMib, &error)) << error;
  const uint64_t before = checksum(backing);
  json info = json::parse(image_info(a, kTopImage), nullptr, false);
  EXPECT_EQ(info.value("format", ""), "qcow2") << info.dump();
  EXPECT_EQ(info.value("backing-filename", ""), backing) << info.dump();
  EXPECT_EQ(info.value("virtual-size", 0ULL), uint64_t{kDiskMib} << 20) << info.dump();

  const std::string uuid = Libvirtd::guest_uuid(2);
  ASSERT_TRUE(a.define_and_start_with_disk("writer", uuid, 64, {kTopImage, "qcow2", backing, "raw"}, &error))
      << error << "\n" << a.log();
  DiskWrites running = writes_grow_consistently(a, kTopImage, "qcow2");
  if (!running.consistent || running.highest_seq == 0) return;
  DiskWrites paused = read_paused(a, uuid, kTopImage);
  EXPECT_GE(paused.highest_seq, running.highest_seq);
  EXPECT_EQ(checksum(backing), before) << "the guest wrote into its backing file";
  // The top now holds what the writer wrote: it grew past its empty few hundred KiB.
  json after = json::parse(image_info(a, kTopImage), nullptr, false);
  EXPECT_GT(after.value("actual-size", 0ULL), paused.sectors_written * kSectorBytes) << after.dump();

  // Another daemon's top over the same backing file (a migration's destination): the backing
  // file is reused as it is, and the new top holds no writes.
  ASSERT_TRUE(make_qcow2_over_backing(b, kTopImage, backing, kDiskMib, &error)) << error;
  EXPECT_EQ(checksum(backing), before);
  DiskWrites other = read_disk_writes(b, kTopImage, GuestIs::kStopped);
  EXPECT_TRUE(other.consistent) << other.problem;
  EXPECT_EQ(other.highest_seq, 0u);
  DiskWrites still = read_disk_writes(a, kTopImage, GuestIs::kStopped);
  EXPECT_EQ(still.highest_seq, paused.highest_seq) << "daemon b's new top replaced daemon a's";
}

}  // namespace
}  // namespace nodeha::test
