// Live migration of guests with local disks, on real QEMU between two isolated libvirtd daemons
// (node-a, node-b). Each daemon's /var is its own (libvirtd.h), so a disk at
// /var/lib/libvirt/images/<guest>.raw is a different file on each node, as on two hosts; a
// backing file in a TempDir is shared storage (the agents' shared_paths). The guests are the disk
// writer (disk_guest.h): they stamp their disk sector by sector, forever, and the image alone
// proves that it holds every write up to the newest one.
//
// - A 256 MiB raw disk full of data moves with its guest: the destination's image, read with the
//   guest paused there, holds every write, the newest past the last one seen before the copy;
//   the source's image is gone; the reply counts the disk apart from the memory (the figure in
//   docs/performance.md).
// - With the copy slowed (bandwidth_mib limits the disk copy too), the guest writes while its disk is copied: the source's
//   image read in the middle of the copy has writes past the start, and the destination holds
//   them all. Before that, an aborted copy keeps the source's image and removes the destination's.
// - A qcow2 top over a shared backing file: only the top is copied, the backing file is untouched,
//   the destination's top names it.
// - An image already at the path on the destination is never written over.
// - A copy the guest outwrites (bandwidth_mib below its writes) is stopped by the stall limit.
// An InvariantMonitor samples both daemons throughout: no guest ever runs on both.
#include "bus.h"
#include "disk_guest.h"
#include "host_process.h"
#include "invariant.h"
#include "libvirtd.h"
#include "nats_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <future>
#include <mutex>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using json = nlohmann::json;

const std::string kGuest = Libvirtd::guest_uuid(1);
constexpr const char* kImages = "/var/lib/libvirt/images";

class DiskMigration : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    ASSERT_TRUE(a_.running()) << a_.log();
    ASSERT_TRUE(b_.running()) << b_.log();
    auto sub = bus_->subscribe("nodeha.evt.vm.>", "", [this](Message m) {
      std::lock_guard lock(mu_);
      events_.push_back(json::parse(m.data, nullptr, false));
    });
    ASSERT_TRUE(sub);
    monitor_ = std::make_unique<InvariantMonitor>(std::vector<InvariantMonitor::Node>{{"node-a", a_.uri()}, {"node-b", b_.uri()}});
  }

  // The controller (vms and tasks: the record desks) and both agents; `bandwidth_mib` 0 is unlimited.
  void start(int bandwidth_mib = 0) {
    ctl_ = std::make_unique<HostProcess>(host_tables("controller", "ctl", nats_.url()) +
                                         "[[plugin]]\nlibrary = \"vms\"\n[[plugin]]\nlibrary = \"tasks\"\n");
    auto agent = [&](const std::string& node, const Libvirtd& own, const Libvirtd& peer) {
      return std::make_unique<HostProcess>(host_tables("agent", node, nats_.url()) +
                                           libvirt_agent_tables(own.uri(), "", peer.uri()) +
                                           "shared_paths = [\"" + shared_.path() + "\"]\nbandwidth_mib = " +
                                           std::to_string(bandwidth_mib) + "\n");
    };
    agent_a_ = agent("node-a", a_, b_);
    agent_b_ = agent("node-b", b_, a_);
    ASSERT_TRUE(ctl_->wait_ready()) << ctl_->log();
    ASSERT_TRUE(agent_a_->wait_ready()) << agent_a_->log();
    ASSERT_TRUE(agent_b_->wait_ready()) << agent_b_->log();
  }

  void TearDown() override {
    if (HasFailure() && agent_a_) std::printf("---- node-a agent log ----\n%s\n", agent_a_->log().c_str());
    monitor_->stop();
    EXPECT_THAT(monitor_->violations_text(), IsEmpty()) << "one and only one running copy of a VM, ever";
  }

  // Starts the writer from `disk` on node-a, with a record naming node-a, and waits until it has
  // written.
  void start_writer(const DiskSpec& disk) {
    std::string error;
    ASSERT_TRUE(a_.define_and_start_with_disk("writer", kGuest, 64, disk, &error)) << error << "\n" << a_.log();
    json record = {{"uuid", kGuest}, {"name", "writer"}, {"node", "node-a"}, {"generation", 1}, {"state", "running"},
                   {"desired", "running"}, {"vcpus", 1}, {"memory_mib", 64}, {"disk_gib", 1}, {"local_disk", true},
                   {"local_disks", {disk.path}}, {"group", ""}, {"xml", ""}, {"updated", 0}};
    ASSERT_TRUE(bus_->kv_put("vms", kGuest, record.dump()));
    ASSERT_TRUE(wait_until([&] { return read_disk_writes(a_, disk.path, GuestIs::kRunning).highest_seq > 0; }, 30s))
        << "the writer never wrote: " << read_disk_writes(a_, disk.path, GuestIs::kRunning).problem;
  }

  json migrate(std::chrono::milliseconds timeout = 120s) {
    json body = {{"uuid", kGuest},      {"dest_node", "node-b"},       {"dest_uri", b_.uri()},
                 {"migrate_uri", "tcp://127.0.0.1"}, {"include_local_disk", true}};
    auto r = bus_->request("nodeha.agent.node-a.vm.migrate", body.dump(), timeout);
    return r ? json::parse(r.value(), nullptr, false) : json{{"transport", r.status().message()}};
  }

  // The migration_progress events so far that count disk bytes copied.
  std::vector<json> disk_progress() {
    std::lock_guard lock(mu_);
    std::vector<json> out;
    for (const auto& e : events_)
      if (e.value("event", "") == "migration_progress" && e.value("disk_processed", uint64_t{0}) > 0) out.push_back(e);
    return out;
  }
  bool disk_copy_seen() { return !disk_progress().empty(); }

  static bool exists(Libvirtd& d, const std::string& path) { return d.run_in_mounts({"test", "-e", path}) == 0; }

  // Pauses the guest on node-b and reads its disk there, exactly.
  DiskWrites written_on_b(const std::string& path) {
    std::string error;
    EXPECT_TRUE(b_.suspend(kGuest, &error)) << error;
    auto w = read_disk_writes(b_, path, GuestIs::kStopped);
    EXPECT_TRUE(b_.resume(kGuest, &error)) << error;
    return w;
  }

  NatsServer nats_;
  Libvirtd a_;
  Libvirtd b_;
  TempDir shared_;  // shared storage: the same files for both daemons
  std::unique_ptr<host::Bus> bus_;
  std::unique_ptr<HostProcess> ctl_, agent_a_, agent_b_;
  std::unique_ptr<InvariantMonitor> monitor_;
  std::mutex mu_;
  std::vector<json> events_;
};

TEST_F(DiskMigration, A256MiBRawDiskMovesWithItsGuestAndHoldsEveryWrite) {
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string path = std::string(kImages) + "/writer.raw";
  std::string error;
  ASSERT_TRUE(make_raw_disk(a_, path, 256, true, &error)) << error;
  ASSERT_NO_FATAL_FAILURE(start_writer({path, "raw"}));
  ASSERT_FALSE(exists(b_, path)) << "node-b has no such image before the migration";
  uint64_t before = read_disk_writes(a_, path, GuestIs::kRunning).highest_seq;

  auto started = std::chrono::steady_clock::now();
  json r = migrate();
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_TRUE(r.value("ok", false)) << r << "\n" << agent_a_->log();
  const json& res = r["result"];
  std::printf("[ figure   ] 256 MiB raw disk + 64 MiB guest: %.2f s (agent %lld ms); disk %llu of %llu bytes, memory %llu of %llu\n",
              took, res.value("duration_ms", 0LL), res.value("disk_processed", 0ULL), res.value("disk_total", 0ULL),
              res.value("memory_processed", 0ULL), res.value("memory_total", 0ULL));
  EXPECT_GE(res.value("disk_total", uint64_t{0}), uint64_t{256} << 20) << "the whole disk was copied: " << res;
  EXPECT_GT(res.value("memory_total", uint64_t{0}), 0u) << res;
  ASSERT_EQ(res["disks"].size(), 1u) << res;
  EXPECT_EQ(res["disks"][0]["path"], path);
  EXPECT_EQ(res["disks"][0]["capacity"], uint64_t{256} << 20);
  EXPECT_THAT(res.value("images", ""), HasSubstr("source images removed"));

  EXPECT_EQ(b_.domain_state(kGuest), "running");
  EXPECT_EQ(a_.domain_state(kGuest), "") << "undefined on node-a";
  EXPECT_LT(monitor_->longest_gap(kGuest).count(), 1000) << "live: " << monitor_->timeline_text(kGuest);
  EXPECT_FALSE(exists(a_, path)) << "the source's image is removed after the success";
  auto info = json::parse(image_info(b_, path), nullptr, false);
  EXPECT_EQ(info.value("format", ""), "raw") << info;
  EXPECT_EQ(info.value("virtual-size", uint64_t{0}), uint64_t{256} << 20) << info;
  DiskWrites w = written_on_b(path);
  EXPECT_TRUE(w.consistent) << w.problem;
  EXPECT_GT(w.highest_seq, before) << "the writes since the copy began are on node-b";
  // It writes on, on node-b.
  EXPECT_TRUE(wait_until([&] { return read_disk_writes(b_, path, GuestIs::kRunning).highest_seq > w.highest_seq; }, 30s));
  EXPECT_EQ(bus_->kv_get("vms", kGuest) ? json::parse(bus_->kv_get("vms", kGuest)->value).value("node", "") : "", "node-b");
}

TEST_F(DiskMigration, AnAbortedCopyKeepsTheSourceAndTheWritesDuringTheNextCopyArrive) {
  // 128 MiB of disk at 24 MiB/s: seconds to look in the middle. The limit is well above what the
  // writer writes (at most ~10 MiB/s here): a guest that writes faster than its copy goes would
  // keep the copy from ever converging.
  ASSERT_NO_FATAL_FAILURE(start(24));
  const std::string path = std::string(kImages) + "/writer.raw";
  std::string error;
  ASSERT_TRUE(make_raw_disk(a_, path, 128, true, &error)) << error;
  ASSERT_NO_FATAL_FAILURE(start_writer({path, "raw"}));

  // Aborted in the middle of the disk copy: the guest runs on, on node-a, with its image; the
  // image made on node-b is gone.
  auto first = std::async(std::launch::async, [&] { return migrate(); });
  ASSERT_TRUE(wait_until([&] { return disk_copy_seen(); }, 60s)) << "no disk bytes counted";
  auto abort = bus_->request("nodeha.agent.node-a.vm.abort", json{{"uuid", kGuest}}.dump(), 10s);
  ASSERT_TRUE(abort) << abort.status().message();
  json aborted = first.get();
  EXPECT_EQ(aborted["error"]["code"], "migration_aborted") << aborted;
  EXPECT_THAT(aborted.dump(), HasSubstr("source images kept; the destination's removed"));
  EXPECT_EQ(a_.domain_state(kGuest), "running");
  EXPECT_EQ(b_.domain_state(kGuest), "");
  EXPECT_TRUE(exists(a_, path));
  EXPECT_FALSE(exists(b_, path)) << "the image made for the copy is removed";
  {
    std::lock_guard lock(mu_);
    events_.clear();
  }

  // Again, to the end. In the middle of the copy the source has writes past the start; node-b
  // has them all afterwards.
  uint64_t before = read_disk_writes(a_, path, GuestIs::kRunning).highest_seq;
  auto second = std::async(std::launch::async, [&] { return migrate(); });
  ASSERT_TRUE(wait_until([&] { return disk_copy_seen(); }, 60s)) << "no disk bytes counted";
  DiskWrites during = read_disk_writes(a_, path, GuestIs::kRunning);
  json done = second.get();
  ASSERT_TRUE(done.value("ok", false)) << done.dump() << "\n" << agent_a_->log();
  EXPECT_GE(done["result"].value("duration_ms", 0), 4000) << "the copy was slowed: " << done;
  ASSERT_TRUE(during.consistent) << "read while the disk was copied: " << during.problem;
  EXPECT_GT(during.highest_seq, before) << "the guest wrote during the copy";
  DiskWrites w = written_on_b(path);
  EXPECT_TRUE(w.consistent) << w.problem;
  EXPECT_GE(w.highest_seq, during.highest_seq) << "every write made during the copy is on node-b";
  // Seconds of copying: the progress counted the disk apart from the memory, and estimated the
  // time left once it had a rate.
  bool estimated = false;
  for (const auto& e : disk_progress()) {
    EXPECT_GE(e.value("disk_total", uint64_t{0}), uint64_t{128} << 20) << e;
    EXPECT_TRUE(e.contains("memory_total")) << e;
    estimated = estimated || (e["time_remaining_ms"].is_number() && e["time_remaining_ms"].get<int64_t>() > 0);
  }
  EXPECT_TRUE(estimated) << "no event estimated the time left";
  EXPECT_FALSE(exists(a_, path));
  EXPECT_EQ(b_.domain_state(kGuest), "running");
}

TEST_F(DiskMigration, OnlyAQcow2TopMovesAndItsSharedBackingFileStaysUntouched) {
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string top = std::string(kImages) + "/writer.qcow2";
  const std::string base = shared_.file("base.raw");
  std::string error;
  // 512 MiB of data below: far more than the writer covers in the test (it writes some MiB/s).
  ASSERT_TRUE(make_qcow2_over_backing(a_, top, base, 512, &error)) << error;
  std::string base_sum;
  ASSERT_EQ(a_.run_in_mounts({"md5sum", base}, &base_sum), 0);
  ASSERT_NO_FATAL_FAILURE(start_writer({top, "qcow2", base, "raw"}));
  uint64_t before = read_disk_writes(a_, top, GuestIs::kRunning).highest_seq;

  json r = migrate();
  ASSERT_TRUE(r.value("ok", false)) << r << "\n" << agent_a_->log();
  // Only the top: what the writer wrote (and wrote again during the copy), far below the 512 MiB
  // the backing file holds; on node-b the top holds no more than that either.
  EXPECT_GT(r["result"].value("disk_total", uint64_t{0}), 0u) << r;
  EXPECT_LT(r["result"].value("disk_total", uint64_t{0}), uint64_t{256} << 20) << "the backing file is not copied: " << r;
  auto info = json::parse(image_info(b_, top), nullptr, false);
  EXPECT_EQ(info.value("format", ""), "qcow2") << info;
  EXPECT_EQ(info.value("backing-filename", ""), base) << info;
  EXPECT_EQ(info.value("virtual-size", uint64_t{0}), uint64_t{512} << 20) << info;
  EXPECT_LT(info.value("actual-size", uint64_t{1} << 40), uint64_t{256} << 20) << "node-b's top holds the top only: " << info;
  DiskWrites w = written_on_b(top);
  EXPECT_TRUE(w.consistent) << w.problem;
  EXPECT_GT(w.highest_seq, before);
  std::string base_after;
  ASSERT_EQ(b_.run_in_mounts({"md5sum", base}, &base_after), 0);
  EXPECT_EQ(base_after, base_sum) << "the shared backing file is never written";
  EXPECT_FALSE(exists(a_, top)) << "the source's top is removed after the success";
  EXPECT_TRUE(exists(a_, base)) << "the backing file stays";
}

TEST_F(DiskMigration, AnImageAlreadyOnTheDestinationIsNeverWrittenOver) {
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string path = std::string(kImages) + "/writer.raw";
  std::string error;
  ASSERT_TRUE(make_raw_disk(a_, path, 16, true, &error)) << error;
  ASSERT_TRUE(make_raw_disk(b_, path, 16, true, &error)) << error;  // another VM's disk, say
  std::string b_sum;
  ASSERT_EQ(b_.run_in_mounts({"md5sum", path}, &b_sum), 0);
  ASSERT_NO_FATAL_FAILURE(start_writer({path, "raw"}));

  json r = migrate();
  EXPECT_EQ(r["error"]["code"], "migration_failed") << r;
  EXPECT_THAT(r["error"]["message"].get<std::string>(), HasSubstr(path + " exists on the destination already"));
  EXPECT_EQ(a_.domain_state(kGuest), "running");
  EXPECT_EQ(b_.domain_state(kGuest), "");
  std::string b_after;
  ASSERT_EQ(b_.run_in_mounts({"md5sum", path}, &b_after), 0);
  EXPECT_EQ(b_after, b_sum) << "node-b's file is untouched";
  EXPECT_TRUE(exists(a_, path));
  // Without include_local_disk the agent refuses before anything: the disk is named.
  json body = {{"uuid", kGuest}, {"dest_node", "node-b"}, {"dest_uri", b_.uri()}, {"migrate_uri", "tcp://127.0.0.1"},
               {"include_local_disk", false}};
  auto refused = bus_->request("nodeha.agent.node-a.vm.migrate", body.dump(), 30s);
  ASSERT_TRUE(refused);
  EXPECT_THAT(refused.value(), HasSubstr("has local disks (" + path + ")"));
}

// A guest that writes faster than its copy may go (bandwidth_mib) never lets the copy converge:
// the stall limit ends it, the guest runs on where it was with its image, and the image made for
// it on node-b is gone.
TEST_F(DiskMigration, ACopyTheGuestOutwritesIsStoppedByTheStallLimit) {
  ASSERT_NO_FATAL_FAILURE(start(1));  // 1 MiB/s: far below what the writer writes
  const std::string path = std::string(kImages) + "/writer.raw";
  std::string error;
  ASSERT_TRUE(make_raw_disk(a_, path, 64, false, &error)) << error;
  ASSERT_NO_FATAL_FAILURE(start_writer({path, "raw"}));
  json body = {{"uuid", kGuest},      {"dest_node", "node-b"},       {"dest_uri", b_.uri()},
               {"migrate_uri", "tcp://127.0.0.1"}, {"include_local_disk", true}, {"stall_ms", 5000}};
  auto started = std::chrono::steady_clock::now();
  auto r = bus_->request("nodeha.agent.node-a.vm.migrate", body.dump(), 120s);
  ASSERT_TRUE(r) << r.status().message();
  json reply = json::parse(r.value(), nullptr, false);
  std::printf("[ measured ] stalled after %.2f s: %s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), reply.dump().c_str());
  EXPECT_EQ(reply["error"]["code"], "migration_stalled") << reply;
  EXPECT_EQ(a_.domain_state(kGuest), "running");
  EXPECT_EQ(b_.domain_state(kGuest), "");
  EXPECT_TRUE(exists(a_, path));
  EXPECT_FALSE(exists(b_, path));
}

}  // namespace
}  // namespace nodeha::test
