// Tasks without a size limit (docs/node-operations.md, "Task records"): a node of 5,000 VMs, more
// than a task record in one piece could hold under NATS's 1 MiB, is drained while dead and
// rebuilt onto another node; every VM ends there, both tasks succeed, and `nodeha task show`
// reads all 5,000 steps (in pages). A dead node's drain reads the node's record once per round,
// not once per step (nodeha_drain_node_reads_total).
#include "cli_run.h"
#include "list_pages.h"
#include "operations_fixture.h"

#include <algorithm>
#include <cstdio>

namespace nodeha::test {
namespace {

using json = nlohmann::json;

class TaskScale : public Operations {
 protected:
  // Room for thousands of 64 MiB, 1-vCPU test VMs on one 8-CPU node, and steps run 16 at a time.
  std::string scale_config() const {
    std::string c = controller_config("[[plugin]]\nlibrary = \"rebuild\"\nparallel = 16\n");
    c.replace(c.find("cpu_ratio = 32.0"), 16, "cpu_ratio = 1000.0");
    return c;
  }
  // VMs whose record names `node`: one listing, not a read per VM.
  size_t recorded_on(const std::string& node) {
    auto all = bus_->kv_list("vms");
    size_t n = 0;
    for (const auto& e : all ? all.value() : std::vector<KvEntry>{})
      n += json::parse(e.value, nullptr, false).value("node", "") == node;
    return n;
  }
  // Starts a controller and node-a with `count` VMs, then loses node-a: drained while unreachable.
  // The drain's task id.
  std::string lose_and_drain(size_t count, std::unique_ptr<HostProcess>& ctl) {
    ctl = std::make_unique<HostProcess>(scale_config());
    EXPECT_TRUE(ctl->wait_ready()) << ctl->log();
    auto a = start_agent("node-a", vms_of(1, static_cast<int>(count)), 400000);
    EXPECT_TRUE(wait_until([&] { return normal("node-a") && recorded_on("node-a") == count; }, 60s)) << ctl->log() << a->log();
    a.reset();
    EXPECT_TRUE(wait_until([&] { return unreachable("node-a"); }, 10s));
    auto r = command("node.drain", {{"node", "node-a"}});
    EXPECT_TRUE(r["ok"]) << r.dump().substr(0, 2000);
    return r["ok"] ? r["result"]["task"].get<std::string>() : "";
  }
};

TEST_F(TaskScale, ADeadNodesDrainReadsItsRecordOncePerRoundNotOncePerStep) {
  constexpr size_t kVms = 500;
  std::unique_ptr<HostProcess> ctl;
  std::string id = lose_and_drain(kVms, ctl);
  ASSERT_FALSE(id.empty());
  const std::string waiting = "nodeha_task_steps_total{kind=\"drain\",result=\"waiting\"}";
  const std::string reads = "nodeha_drain_node_reads_total";
  ASSERT_TRUE(wait_until([&] { return ctl->metric(waiting) >= kVms; }, 20s))
      << ctl->metric(waiting) << " waits; task " << task(id).dump().substr(0, 3000) << "\n" << ctl->log();
  double waited0 = ctl->metric(waiting), read0 = ctl->metric(reads);
  // Three more rounds of every step waiting (retry_every 300 ms).
  ASSERT_TRUE(wait_until([&] { return ctl->metric(waiting) >= waited0 + 3 * kVms; }, 30s)) << ctl->log();
  double waited = ctl->metric(waiting) - waited0, read = ctl->metric(reads) - read0;
  // Once per step per retry would be at least one read per wait (two, with the lock's release).
  EXPECT_GT(read, 0) << "the node's record is read";
  EXPECT_LT(read * 50, waited) << read << " reads of node-a's record for " << waited << " waits";
  EXPECT_EQ(task_state(id), "running");
}

// Tasks are kept, and 3,000 heads are over nats-server's 1 MiB max_payload for one reply:
// task.list answers newest first in pages, each under the limit, every task in exactly one page
// (two tasks created in the same millisecond by id); the CLI asks for every page.
TEST_F(TaskScale, ThreeThousandTasksAreListedNewestFirstInPages) {
  constexpr int kTasks = 3000;
  HostProcess ctl(controller_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  std::vector<std::pair<int64_t, std::string>> expected;  // (-created, id): newest first, then by id
  for (int i = 0; i < kTasks; ++i) {
    char id[17];
    std::snprintf(id, sizeof id, "%08x%08x", static_cast<unsigned>(i) * 2654435761u, static_cast<unsigned>(i));
    int64_t created = 1765000000000 + (i / 2) * 1000;  // two tasks a millisecond
    json head = {{"id", id},
                 {"kind", "drain"},
                 {"node", "node-" + std::to_string(i % 50)},
                 {"state", "succeeded"},
                 {"created", created},
                 {"updated", created + 5000},
                 {"epoch", 1},
                 {"requested_by", "admin"},
                 {"chunk_steps", 64},
                 {"step_count", 12},
                 {"step_counts", {{"succeeded", 12}}},
                 {"detail", std::string(250, '.')}};
    ASSERT_TRUE(bus_->kv_create("tasks", id, head.dump())) << i;
    expected.emplace_back(-created, id);
  }
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> ids;
  for (const auto& [c, id] : expected) ids.push_back(id);

  auto pages = list_pages(*bus_, "nodeha.cmd.task.list", json::object(), "tasks");
  ASSERT_TRUE(pages.ok) << pages.error;
  EXPECT_GT(pages.pages, 1);
  EXPECT_LT(pages.largest, 1u << 20);
  std::vector<std::string> listed;
  for (const auto& t : pages.items) listed.push_back(t["id"]);
  EXPECT_EQ(listed, ids);
  auto filtered = command("task.list", {{"node", "node-7"}});
  EXPECT_EQ(filtered["result"]["tasks"].size(), static_cast<size_t>(kTasks / 50)) << filtered.dump().substr(0, 300);
  EXPECT_EQ(command("task.list", {{"after", std::string(257, '0')}})["error"]["code"], "bad_value");

  TempDir dir;
  auto cli = run_cli({"--server", nats_.url(), "--json", "task", "list"}, dir);
  ASSERT_EQ(cli.status, 0) << cli.err;
  std::vector<std::string> shown;
  const auto doc = cli.doc();
  for (const auto& t : doc["tasks"]) shown.push_back(t["id"]);
  EXPECT_EQ(shown, ids);
}

TEST_F(TaskScale, RebuildOfANodeWithFiveThousandVmsMovesThemAll) {
  constexpr size_t kVms = 5000;
  std::unique_ptr<HostProcess> ctl;
  std::string drain = lose_and_drain(kVms, ctl);
  ASSERT_FALSE(drain.empty());
  auto b = start_agent("node-b", {}, 400000);
  ASSERT_TRUE(wait_until([&] { return normal("node-b") && node_record("node-a")["lock"].is_null(); }, 20s)) << ctl->log();

  auto r = command("node.rebuild", {{"node", "node-a"}, {"target", "node-b"}});
  ASSERT_TRUE(r["ok"]) << r.dump().substr(0, 2000);
  std::string id = r["result"]["task"];
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 90s))
      << task_state(id) << "\n" << ctl->log().substr(0, 4000);

  // Every VM is recorded on node-b and runs there; each step succeeded, read by the one reader.
  EXPECT_EQ(recorded_on("node-b"), kVms);
  auto there = domains("node-b");
  size_t running = 0;
  for (const auto& [uuid, state] : there) running += state == "running";
  EXPECT_EQ(running, kVms);
  json t = task(id);
  ASSERT_EQ(t["steps"].size(), kVms);
  for (const auto& s : t["steps"]) ASSERT_EQ(s["state"], "succeeded") << s;
  EXPECT_EQ(t["step_count"], kVms);
  EXPECT_EQ(t["step_counts"], json({{"succeeded", kVms}}));
  auto head = bus_->kv_get("tasks", id);
  ASSERT_TRUE(head);
  EXPECT_LT(head->value.size(), 64u * 1024) << "the head holds no steps";

  // The dead node's drain ends too: each VM's record names node-b now, nothing is left to stop.
  ASSERT_TRUE(wait_until([&] { return task_state(drain) == "succeeded"; }, 30s)) << ctl->log().substr(0, 4000);

  // The CLI reads the whole task, page by page (a reply holds at most 384 KiB of steps).
  auto show = run_cli({"--json", "--server", nats_.url(), "task", "show", id}, files_);
  ASSERT_EQ(show.status, 0) << show.err;
  json doc = show.doc();
  ASSERT_EQ(doc.value("steps", json::array()).size(), kVms) << show.err;
  EXPECT_EQ(doc["steps"][kVms - 1]["vm"], t["steps"][kVms - 1]["vm"]);
  EXPECT_FALSE(doc.contains("next_chunk"));
}

}  // namespace
}  // namespace nodeha::test
