// Evacuation: a node's drain and rebuild, against real processes (docs/performance.md).
//
// --mode control (libvirt test driver): nats-server -js, a controller (heartbeat 1 s, scheduler
// with no reserve and cpu_ratio 32, tasks, drain with stop_timeout 0s, rebuild), a source agent
// node-a whose test-driver node file defines --vms running 64 MiB 1-vCPU guests on network (rbd)
// disks, and --targets empty agents with room for all of them. Once every VM is recorded in the
// vms bucket, node-a's agent is killed (power loss), the controller sees it unreachable, a drain
// is sent (it records `drained` and waits for the agent), and then cmd.node.rebuild is timed
// from the request to its task's `succeeded`. The task record's step timestamps give the steps'
// durations; /proc gives the CPU time the controller, the agents and nats-server used during the
// rebuild. Afterwards every VM must run on exactly one target (vm.list on each) and its record
// must name that target with generation 2; the exit status is 1 when not.
//
// --mode real (one isolated real libvirtd, QEMU, 64 MiB diskless guests): the same daemon is
// driven, each time from a clean state, by (a) a sequential `virsh define && virsh start` loop,
// (b) the same 4 at a time (xargs -P4), (c) nodeha's rebuild of a drained, dead node-a whose N
// VM records name it onto node-b (an agent with heartbeat + vms on the daemon), then (d) a
// sequential `virsh destroy` loop, (e) 10 at a time, (f) nodeha's drain of node-b (stop_timeout
// 0s: destroy at once). The shell loops run while node-b's agent is stopped: the daemon is
// theirs alone, as in the BRIEF's baseline, and no agent records, restarts or removes their
// guests. Each measurement is repeated --repeat times; the table has the medians.
//
// Knobs for finding where the time goes, not for the figures against the targets:
// --drain-by-record (no drain task beside the rebuild), --drain-retry, --parallel, --workers
// (every host's worker threads), --max-client-requests (libvirtd's limit per connection), --perf
// (a profile of the controller during the rebuild), --no-loops (nodeha's runs only).
//
// Threads: one; requests are synchronous, conditions are polled with deadlines (wait_until).
#include "rebuild_load.h"
#include "task_read.h"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

namespace nodeha::bench {
namespace {
std::atomic<bool> g_interrupted{false};
void on_signal(int) { g_interrupted = true; }
}  // namespace

bool interrupted() { return g_interrupted; }

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  bool held = test::wait_until([&] { return g_interrupted || cond(); }, timeout);
  if (g_interrupted) say("interrupted: cleaning up");
  return held && !g_interrupted;
}

void say(const std::string& s) { std::cerr << "[rebuild_load] " << s << std::endl; }

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
double s_since(SteadyClock::time_point t) { return std::chrono::duration<double>(SteadyClock::now() - t).count(); }

bool poll_until(const std::function<bool()>& cond, std::chrono::milliseconds period, std::chrono::milliseconds timeout) {
  auto next = SteadyClock::now();
  return wait_until(
      [&] {
        if (SteadyClock::now() < next) return false;
        next = SteadyClock::now() + period;
        return cond();
      },
      timeout);
}

// ---- the processes -------------------------------------------------------------------------

Nats::Nats() : port(test::free_port()) {
  std::filesystem::create_directories(dir.file("js"));
  proc = std::make_unique<test::Process>(
      std::vector<std::string>{"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port), "-js", "-sd", dir.file("js")},
      dir.file("nats.log"));
}
Nats::~Nats() {
  proc->signal(SIGTERM);
  if (!proc->wait_exit(10s)) proc->signal(SIGKILL);
}

namespace {
std::string host_head(const Options& opt, const std::string& role, const std::string& node, const std::string& url) {
  return "[host]\nrole = \"" + role + "\"\nnode_id = \"" + node + "\"\nplugin_path = [\"{plugins}\"]\n" +
         (opt.workers > 0 ? "workers = " + std::to_string(opt.workers) + "\n" : std::string()) + "[nats]\nservers = [\"" +
         url + "\"]\nreconnect_wait = \"100ms\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
}

}  // namespace

std::string controller_config(const Options& opt, const std::string& url) {
  std::string c = host_head(opt, "controller", "bench-ctl", url) +
                  "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\nping_timeout = \"500ms\"\n"
                  "[[plugin]]\nlibrary = \"scheduler\"\nreserve_vcpus = 0\nreserve_memory_mib = 0\ncpu_ratio = 32.0\n"
                  "[[plugin]]\nlibrary = \"tasks\"\n"
                  // The agents' record desk: an agent writes its VMs' records through it.
                  "[[plugin]]\nlibrary = \"vms\"\n"
                  "[[plugin]]\nlibrary = \"drain\"\nstop_timeout = \"0s\"\n";
  if (!opt.drain_retry.empty()) c += "retry_every = \"" + opt.drain_retry + "\"\n";
  c += "[[plugin]]\nlibrary = \"rebuild\"\n";
  if (opt.parallel > 0) c += "parallel = " + std::to_string(opt.parallel) + "\n";
  return c;
}

std::string agent_config(const Options& opt, const std::string& node, const std::string& url, const std::string& libvirt_uri) {
  return host_head(opt, "agent", node, url) + "[libvirt]\nuri = \"" + libvirt_uri + "\"\n" +
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\ndisk_path = \"/\"\n"
         "[[plugin]]\nlibrary = \"vms\"\n";
}

std::string tail(const std::string& log, size_t n) { return log.size() > n ? "..." + log.substr(log.size() - n) : log; }

Client::Client(const std::string& url) {
  host::NatsSettings s;
  s.servers = {url};
  s.reconnect_wait_ms = 100;
  auto created = host::Bus::create(s, "rebuild_load", nullptr);
  if (created && created.value()->wait_connected(10s)) bus_ = std::move(created.value());
}

json Client::request(const std::string& subject, const json& body, std::chrono::milliseconds timeout) {
  auto r = bus_->request("nodeha." + subject, body.dump(), timeout);
  if (!r) return {{"ok", false}, {"error", {{"code", "no_answer"}, {"message", r.status().message()}}}};
  auto j = json::parse(r.value(), nullptr, false);
  return j.is_object() ? j : json{{"ok", false}, {"error", {{"code", "bad_reply"}, {"message", r.value()}}}};
}

json Client::get(const std::string& bucket, const std::string& key) {
  if (bucket == "tasks") {
    json t = test::read_task(*bus_, key);
    return t.empty() ? json() : t;
  }
  auto e = bus_->kv_get(bucket, key);
  if (!e) return json();
  auto j = json::parse(e->value, nullptr, false);
  return j.is_discarded() ? json() : j;
}

std::vector<json> Client::list(const std::string& bucket) {
  std::vector<json> out;
  auto all = bus_->kv_list(bucket);
  if (!all) return out;
  for (const auto& e : all.value())
    if (auto j = json::parse(e.value, nullptr, false); j.is_object()) out.push_back(std::move(j));
  return out;
}

bool Client::normal(const std::string& node) {
  auto r = get("nodes", node);
  return r.is_object() && r.value("monitor", "") == "normal" && r.contains("capacity");
}

std::map<std::string, std::string> Client::domains(const std::string& node) {
  std::map<std::string, std::string> out;
  auto j = request("agent." + node + ".vm.list", json::object(), 10s);
  if (!j.value("ok", false)) return out;
  for (const auto& v : j["result"].value("vms", json::array())) out[v.value("uuid", "")] = v.value("state", "");
  return out;
}

// ---- task records ----------------------------------------------------------------------------

TaskTiming timing_of(const json& task, int64_t requested_ms) {
  TaskTiming t;
  double started = task.value("started", 0.0), finished = task.value("finished", 0.0);
  t.plan_ms = started - static_cast<double>(requested_ms);
  t.run_ms = finished - started;
  t.total_ms = finished - static_cast<double>(requested_ms);
  double first = finished, last = started, sum = 0;
  for (const auto& s : task.value("steps", json::array())) {
    if (s.value("state", "") != "succeeded") continue;
    ++t.succeeded;
    double a = s.value("started", 0.0), b = s.value("finished", 0.0);
    t.steps_ms.push_back(b - a);
    sum += b - a;
    first = std::min(first, a);
    last = std::max(last, b);
  }
  t.first_step_ms = first - started;
  t.last_step_ms = finished - last;
  t.busy = t.run_ms > 0 ? sum / t.run_ms : 0;
  return t;
}

json wait_task(Client& c, const std::string& id, std::chrono::milliseconds period, std::chrono::milliseconds timeout,
               std::pair<uint64_t, uint64_t>* revisions) {
  json task;
  uint64_t first = 0, last = 0;
  size_t bytes = 0;
  bool done = poll_until(
      [&] {
        auto e = c.bus().kv_get("tasks", id);
        if (!e) return false;
        if (!first) first = e->revision;
        last = e->revision;
        bytes = e->value.size();
        task = json::parse(e->value, nullptr, false);
        std::string st = task.is_object() ? task.value("state", "") : "";
        return st == "succeeded" || st == "failed" || st == "partial";
      },
      period, timeout);
  if (revisions) *revisions = {first, last};
  if (!done) return json();
  task = test::read_task(c.bus(), id);  // the head polled; the steps, in chunks, read once
  task["bench_record_bytes"] = bytes;
  return task;
}

json without_xml(json record) {
  if (record.is_object()) record.erase("xml");
  return record;
}

std::string step_errors(const json& task, size_t max) {
  std::string out;
  if (!task.is_object()) return out;
  size_t n = 0;
  for (const auto& s : task.value("steps", json::array()))
    if (s.value("state", "") != "succeeded" && s.value("state", "") != "skipped" && n++ < max)
      out += "\n  " + s.value("name", "") + " " + s.value("state", "") + ": " + s.value("error", "");
  return out;
}

}  // namespace nodeha::bench

int main(int argc, char** argv) {
  nodeha::bench::Options opt;
  CLI::App app{"Evacuation: a node's drain and rebuild against real nodeha processes"};
  app.add_option("--mode", opt.mode, "control: test driver, control-plane cost; real: one libvirtd, side by side with virsh loops")
      ->check(CLI::IsMember({"control", "real"}));
  app.add_option("--vms", opt.vms, "VMs on the node (default 1000 in control mode, 10 in real mode)")->check(CLI::Range(1, 100000));
  app.add_option("--targets", opt.targets, "control mode: target agents")->check(CLI::Range(1, 64));
  app.add_option("--parallel", opt.parallel, "the rebuild plugin's `parallel` (default: the plugin's)")->check(CLI::Range(1, 1024));
  app.add_option("--drain-retry", opt.drain_retry, "the drain plugin's `retry_every`, e.g. 2s (default: the plugin's)");
  app.add_option("--repeat", opt.repeat, "real mode: runs of each measurement (the median is reported)")->check(CLI::Range(1, 100));
  app.add_option("--deadline", opt.deadline_s, "s to wait for a task or a setup step")->check(CLI::Range(1, 86400));
  app.add_flag("--drain-by-record", opt.drain_by_record,
               "control mode: set node-a drained in its record instead of cmd.node.drain (no drain task beside the rebuild)");
  app.add_option("--workers", opt.workers, "every host's [host] workers (default: the host's)")->check(CLI::Range(1, 256));
  app.add_flag("--no-loops", opt.no_loops, "real mode: nodeha's runs only, no shell loops (for exploring)");
  app.add_option("--max-client-requests", opt.max_client_requests,
                 "real mode: set libvirtd's max_client_requests (default: libvirt's, 5)")->check(CLI::Range(1, 1000));
  app.add_option("--perf", opt.perf, "control mode: `perf record --call-graph dwarf` the controller during the rebuild into this file");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, nodeha::bench::on_signal);
  std::signal(SIGTERM, nodeha::bench::on_signal);
  return opt.mode == "control" ? nodeha::bench::run_control(opt) : nodeha::bench::run_real(opt);
}
