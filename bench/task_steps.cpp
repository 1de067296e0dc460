// Tasks at 10,000 steps (docs/performance.md, "Tasks at 10,000 steps"): a task's steps kept in
// chunks (plugins/common/task_steps.h) instead of one record over NATS's 1 MiB.
//
// Starts nats-server -js (free loopback port, temp store) and a controller process with the tasks
// and drain plugins. Writes a dead node (its record says unreachable) with --steps VMs into the
// buckets, and drains it: the drain's task has --steps steps, every one waiting for the dead
// node, retried every 2 s (the shipped default), so its chunks are being rewritten throughout.
// Then measures:
//   - the records: the head's size, the chunks' (count, largest), the whole task as one JSON;
//   - `nodeha task show <id>` (the CLI process, end to end: connect, task.show page by page,
//     print every step as a table to a file), --runs times: p50 and p99, once the drain is
//     cancelled (its steps ended cancelled; the controller runs no task meanwhile);
//   - one step update at --steps steps, in-process on a copy of the task under its own id, as
//     the engine writes it (Engine::save for one changed step): the step's chunk encoded and
//     written with its revision, the head rebuilt from the kept counts and written with its
//     revision, the event published; --updates times: p50 and p99. Beside it, what a write cost
//     before chunks: the whole record serialized (the write itself NATS would refuse);
//   - over a 10 s window while the dead node's drain waits (before the cancel): the controller's
//     CPU and the reads of the node's record (nodeha_drain_node_reads_total) against the steps'
//     waits.
// Prints a Markdown table and `figure:` lines; exits non-zero only when it could not measure.
#include "bus.h"
#include "host_process.h"
#include "measure.h"
#include "nats_server.h"
#include "task_read.h"
#include "task_record.h"
#include "task_steps.h"
#include "wait.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>

namespace nodeha::bench {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using test::HostProcess;
using test::wait_until;

struct Options {
  int steps = 10000;
  int runs = 11;
  int updates = 200;
};

double ms_since(SteadyClock::time_point t) { return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count(); }

std::string uuid(int i) {
  char u[40];
  std::snprintf(u, sizeof u, "00000009-0000-4000-8000-%012d", i);
  return u;
}

// `nodeha args...` with stdout to `out`; its exit status, -1 when it could not run.
int run_cli(const std::vector<std::string>& args, const std::string& out) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (!std::freopen(out.c_str(), "w", stdout)) _exit(127);
    std::vector<char*> argv{const_cast<char*>(NODEHA_BENCH_CLI_BIN)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(NODEHA_BENCH_CLI_BIN, argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// One step update as Engine::save writes it: the chunk, then the head, then the event.
struct Writer {
  host::Bus& bus;
  json task;
  json counts;
  task_steps::Revisions rev;

  bool store(const std::string& id) {
    task["id"] = id;
    counts = task_steps::counts(task["steps"]);
    for (size_t k = 0; k < task_steps::chunk_count(task["steps"].size()); ++k) {
      auto w = bus.kv_create(task_steps::kBucket, task_steps::chunk_key(id, k), task_steps::encode_chunk(task, k));
      if (!w) return false;
      rev.chunks.push_back(w.value());
    }
    auto w = bus.kv_create("tasks", id, task_steps::head(task, counts).dump());
    if (w) rev.head = w.value();
    return static_cast<bool>(w);
  }
  bool update(size_t i, const std::string& state) {
    json& s = task["steps"][i];
    std::string from = s.value("state", "?");
    counts[from] = counts.value(from, 0) - 1;
    if (counts[from] == 0) counts.erase(from);
    counts[state] = counts.value(state, 0) + 1;
    s["state"] = state;
    task["updated"] = static_cast<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::system_clock::now().time_since_epoch()).count());
    const std::string id = task["id"];
    size_t k = task_steps::chunk_of_step(i);
    std::string chunk = task_steps::encode_chunk(task, k);
    auto c = bus.kv_update(task_steps::kBucket, task_steps::chunk_key(id, k), chunk, rev.chunks[k]);
    if (!c) return false;
    rev.chunks[k] = c.value();
    std::string head = task_steps::head(task, counts).dump();
    auto h = bus.kv_update("tasks", id, head, rev.head);
    if (!h) return false;
    rev.head = h.value();
    return bus.publish("nodeha.evt.task." + id, "{\"event\":\"step\",\"chunk\":" + chunk + "," + head.substr(1)).is_ok();
  }
};

int run(const Options& o) {
  test::NatsServer nats;
  auto bus = nats.client();
  if (!bus || !bus->wait_connected(10s)) {
    std::fprintf(stderr, "cannot reach nats-server\n");
    return 1;
  }
  HostProcess ctl(test::host_tables("controller", "ctl", nats.url()) +
                  "[[plugin]]\nlibrary = \"tasks\"\n[[plugin]]\nlibrary = \"drain\"\n");
  if (!ctl.wait_ready()) {
    std::fprintf(stderr, "the controller did not start:\n%s\n", ctl.log().c_str());
    return 1;
  }
  // A dead node and its VMs, written as the heartbeat and vms plugins would have (short names:
  // the drain's answer lists its plan, and must stay under the bus's payload limit).
  (void)bus->kv_put("nodes", "node-x", json{{"management", "enabled"}, {"monitor", "unreachable"}, {"lock", nullptr}}.dump());
  for (int i = 0; i < o.steps; ++i)
    (void)bus->kv_put("vms", uuid(i), json{{"uuid", uuid(i)}, {"name", "v" + std::to_string(i)}, {"node", "node-x"},
                                           {"state", "running"}, {"desired", "running"}, {"vcpus", 1}, {"memory_mib", 64},
                                           {"generation", 1}}.dump());
  auto r = bus->request("nodeha.cmd.node.drain", json{{"node", "node-x"}}.dump(), 60s);
  json reply = r ? json::parse(r.value(), nullptr, false) : json();
  if (!reply.is_object() || !reply.value("ok", false)) {
    std::fprintf(stderr, "the drain was refused: %s\n%s\n", r ? r.value().substr(0, 500).c_str() : r.status().message().c_str(),
                 ctl.log().c_str());
    return 1;
  }
  const std::string id = reply["result"]["task"];
  const std::string waits = "nodeha_task_steps_total{kind=\"drain\",result=\"waiting\"}";
  if (!wait_until([&] { return ctl.metric(waits) >= o.steps; }, 120s)) {
    std::fprintf(stderr, "the drain's steps did not all wait once:\n%s\n", ctl.log().c_str());
    return 1;
  }

  // The records.
  json whole = test::read_task(*bus, id);
  auto head = bus->kv_get("tasks", id);
  size_t chunks = task_steps::chunk_count(whole.value("steps", json::array()).size()), largest = 0, all = 0;
  for (size_t k = 0; k < chunks; ++k)
    if (auto c = bus->kv_get(task_steps::kBucket, task_steps::chunk_key(id, k))) {
      largest = std::max(largest, c->value.size());
      all += c->value.size();
    }
  if (!head || whole["steps"].size() != static_cast<size_t>(o.steps)) {
    std::fprintf(stderr, "the task was not read whole\n");
    return 1;
  }

  // The drain waiting: CPU and reads of the node's record over a window.
  double cpu0 = cpu_seconds(ctl.process().pid()), reads0 = ctl.metric("nodeha_drain_node_reads_total"), waits0 = ctl.metric(waits);
  auto t0 = SteadyClock::now();
  wait_until([] { return false; }, 10s);  // a measurement window, not a wait for a condition
  double window_s = ms_since(t0) / 1000.0;
  double cpu_pct = 100.0 * (cpu_seconds(ctl.process().pid()) - cpu0) / window_s;
  double reads = ctl.metric("nodeha_drain_node_reads_total") - reads0, waited = ctl.metric(waits) - waits0;

  // The drain cancelled (its waiting steps end cancelled): `task show` is timed on a controller that
  // runs no task, the task's 10,000 steps as they ended.
  (void)bus->request("nodeha.cmd.task.cancel", json{{"task", id}}.dump(), 10s);
  if (!wait_until([&] { return task_record::task_final(test::read_task(*bus, id).value("state", "")); }, 60s)) {
    std::fprintf(stderr, "the cancelled drain did not end\n");
    return 1;
  }

  // `nodeha task show`, end to end.
  test::TempDir dir;
  const std::string out = dir.path() + "/show.txt";
  std::vector<double> show_ms;
  for (int i = 0; i < o.runs; ++i) {
    auto t = SteadyClock::now();
    int code = run_cli({"--server", nats.url(), "task", "show", id}, out);
    show_ms.push_back(ms_since(t));
    if (code != 0) {
      std::fprintf(stderr, "nodeha task show exited %d\n", code);
      return 1;
    }
  }
  size_t lines = 0;
  for (char c : test::read_file(out)) lines += c == '\n';

  // One step update, as the engine writes it, on a copy of the task.
  Writer w{*bus, whole, json::object(), {}};
  if (!w.store(std::string(16, 'e'))) {
    std::fprintf(stderr, "cannot store the copy of the task\n");
    return 1;
  }
  std::mt19937 rng(7);
  std::vector<double> update_ms, whole_ms;
  size_t whole_bytes = 0;
  for (int i = 0; i < o.updates; ++i) {
    size_t step = rng() % w.task["steps"].size();
    auto t = SteadyClock::now();
    if (!w.update(step, i % 2 ? "pending" : "running")) {
      std::fprintf(stderr, "a step update failed\n");
      return 1;
    }
    update_ms.push_back(ms_since(t));
    if (i < 20) {
      auto d = SteadyClock::now();
      whole_bytes = w.task.dump().size();
      whole_ms.push_back(ms_since(d));
    }
  }
  const double whole_mib = static_cast<double>(whole_bytes) / (1 << 20);

  double show50 = percentile(show_ms, 50), show99 = percentile(show_ms, 99);
  double up50 = percentile(update_ms, 50), up99 = percentile(update_ms, 99);
  std::cout << "## Tasks at " << o.steps << " steps (machine load " << loadavg() << ")\n\n"
            << "| what | figure |\n| --- | --- |\n"
            << "| `nodeha task show` (CLI process, end to end; " << lines << " lines printed; the task cancelled), p50 / p99 of " << o.runs
            << " | " << fixed(show50) << " / " << fixed(show99) << " ms |\n"
            << "| one step update (chunk + head written, event published), p50 / p99 of " << o.updates << " | "
            << fixed(up50, 2) << " / " << fixed(up99, 2) << " ms |\n"
            << "| before chunks: the whole record serialized per update (its write refused over 1 MiB), p50 | "
            << fixed(percentile(whole_ms, 50), 2) << " ms for " << fixed(whole_mib, 2) << " MiB |\n"
            << "| head record | " << fixed(head->value.size() / 1024.0, 2) << " KiB |\n"
            << "| chunks | " << chunks << " of " << task_steps::kChunkSteps << " steps; largest "
            << fixed(largest / 1024.0) << " KiB, all " << fixed(all / 1048576.0, 2) << " MiB |\n"
            << "| dead node's drain waiting (" << o.steps << " steps, retry 2 s): controller CPU | " << fixed(cpu_pct)
            << " % of a core |\n"
            << "| its reads of the node's record over " << fixed(window_s) << " s | " << reads << " (for " << waited
            << " step waits) |\n\n";
  std::cout << "figure: tasks.show_10k_steps_ms " << fixed(show50) << "\n"
            << "figure: tasks.show_10k_steps_p99_ms " << fixed(show99) << "\n"
            << "figure: tasks.step_update_10k_steps_ms " << fixed(up50, 2) << "\n"
            << "figure: tasks.step_update_10k_steps_p99_ms " << fixed(up99, 2) << "\n"
            << "figure: tasks.head_record_kib " << fixed(head->value.size() / 1024.0, 2) << "\n"
            << "figure: tasks.chunk_record_max_kib " << fixed(largest / 1024.0) << "\n"
            << "figure: tasks.whole_task_mib " << fixed(whole_mib, 2) << "\n"
            << "figure: tasks.dead_drain_10k_cpu_pct " << fixed(cpu_pct) << "\n"
            << "figure: tasks.dead_drain_node_reads_per_s " << fixed(reads / window_s, 2) << "\n";
  return 0;
}

}  // namespace
}  // namespace nodeha::bench

int main(int argc, char** argv) {
  nodeha::bench::Options o;
  CLI::App app{"tasks at 10,000 steps: task show and a step update (docs/performance.md)"};
  app.add_option("--steps", o.steps, "steps of the task (VMs of the dead node)")->check(CLI::Range(1, 100000));
  app.add_option("--runs", o.runs, "runs of `nodeha task show`")->check(CLI::Range(1, 1000));
  app.add_option("--updates", o.updates, "step updates timed")->check(CLI::Range(1, 100000));
  CLI11_PARSE(app, argc, argv);
  return nodeha::bench::run(o);
}
