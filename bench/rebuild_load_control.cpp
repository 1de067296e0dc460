// Evacuation, control mode: the control plane's cost of rebuilding a dead node's VMs, on the
// libvirt test driver (see rebuild_load.cpp for the scenario).
#include "rebuild_load.h"

#include "host_process.h"

#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <set>

namespace nodeha::bench {
namespace {

std::string vm_uuid(size_t i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "5eb1d000-0000-4000-8000-%012zx", i);
  return buf;
}
std::string vm_name(size_t i) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "vm-%05zu", i);
  return buf;
}

// A test-driver node file: `cores` CPUs, `memory_gib`, `vms` running 64 MiB 1-vCPU guests with
// one rbd disk each.
std::string node_file(size_t cores, size_t memory_gib, size_t vms) {
  std::string x = "<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>" +
                  std::to_string(cores) + "</cores><threads>1</threads><active>" + std::to_string(cores) +
                  "</active></cpu><memory>" + std::to_string(memory_gib * 1024 * 1024) + "</memory>\n";
  for (size_t i = 0; i < vms; ++i)
    x += "<domain type='test'><name>" + vm_name(i) + "</name><uuid>" + vm_uuid(i) +
         "</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>"
         "<disk type='network' device='disk'><source protocol='rbd' name='pool/" + vm_name(i) +
         "'><host name='10.0.0.1' port='6789'/></source><target dev='vda' bus='virtio'/></disk></devices></domain>\n";
  return x + "</node>\n";
}

// `perf record` of one process while it lives (started and stopped by the caller).
class Perf {
 public:
  Perf(const std::string& out, pid_t pid, const std::string& log)
      : proc_({"perf", "record", "-F", "199", "--call-graph", "dwarf,8192", "-o", out, "-p", std::to_string(pid)}, log) {}
  ~Perf() {
    proc_.signal(SIGINT);
    if (!proc_.wait_exit(30s)) proc_.signal(SIGKILL);
  }

 private:
  test::Process proc_;
};

}  // namespace

int run_control(const Options& opt) {
  const size_t n = opt.vms ? opt.vms : 1000;
  say("control mode: " + std::to_string(n) + " VMs, " + std::to_string(opt.targets) + " targets; load average " + loadavg());
  test::TempDir files;
  Nats nats;
  Client c(nats.url());
  if (!c) {
    say("cannot connect to " + nats.url() + "\n" + nats.proc->output());
    return 2;
  }
  test::HostProcess ctl(controller_config(opt, nats.url()));
  if (!ctl.wait_ready(30s)) {
    say("the controller did not come up:\n" + tail(ctl.log()));
    return 2;
  }
  // Targets: 256 CPUs and 1 TiB each, room for every VM at cpu_ratio 32.
  std::vector<std::string> targets;
  std::map<std::string, std::unique_ptr<test::HostProcess>> agents;
  auto start_agent = [&](const std::string& node, const std::string& file_text) {
    std::string path = files.write(node + ".xml", file_text);
    agents[node] = std::make_unique<test::HostProcess>(agent_config(opt, node, nats.url(), "test://" + path));
    return agents[node]->wait_ready(60s);
  };
  auto setup_start = SteadyClock::now();
  if (!start_agent("node-a", node_file(64, 256, n))) {
    say("node-a's agent did not come up:\n" + tail(agents["node-a"]->log()));
    return 2;
  }
  for (size_t t = 0; t < opt.targets; ++t) {
    targets.push_back("node-t" + std::to_string(t + 1));
    if (!start_agent(targets.back(), node_file(256, 1024, 0))) {
      say(targets.back() + "'s agent did not come up:\n" + tail(agents[targets.back()]->log()));
      return 2;
    }
  }
  size_t recorded = 0;
  bool ready = poll_until(
      [&] {
        recorded = 0;
        for (const auto& r : c.list("vms")) recorded += r.value("node", "") == "node-a";
        if (recorded < n) return false;
        for (const auto& t : targets)
          if (!c.normal(t)) return false;
        return c.normal("node-a");
      },
      500ms, std::chrono::seconds(opt.deadline_s));
  if (!ready) {
    say("only " + std::to_string(recorded) + " of " + std::to_string(n) + " VMs recorded on node-a (or a node not normal)\n" +
        tail(agents["node-a"]->log()) + "\n" + tail(ctl.log()));
    return 2;
  }
  say("every VM recorded and every node normal after " + fixed(s_since(setup_start)) + " s");

  // Power loss, then the drain that records `drained` and waits for the agent.
  agents["node-a"]->process().signal(SIGKILL);
  agents["node-a"]->process().wait_exit(10s);
  auto lost = SteadyClock::now();
  if (!wait_until([&] { return c.get("nodes", "node-a").value("monitor", "") == "unreachable"; }, 30s)) {
    say("node-a never became unreachable\n" + tail(ctl.log()));
    return 2;
  }
  say("node-a unreachable " + fixed(s_since(lost)) + " s after its agent was killed");
  std::string drain_id;
  if (opt.drain_by_record) {
    // For attribution only: `drained` without a drain task waiting beside the rebuild.
    bool set = wait_until([&] {
      auto e = c.bus().kv_get("nodes", "node-a");
      if (!e) return false;
      auto r = json::parse(e->value);
      r["management"] = "drained";
      return c.bus().kv_update("nodes", "node-a", r.dump(), e->revision).is_ok();
    }, 10s);
    if (!set) {
      say("cannot write node-a's record");
      return 2;
    }
  } else {
    auto d = c.request("cmd.node.drain", {{"node", "node-a"}}, 60s);
    if (!d.value("ok", false)) {
      say("drain refused: " + d.dump());
      return 2;
    }
    drain_id = d["result"]["task"];
  }
  if (!wait_until(
          [&] {
            auto r = c.get("nodes", "node-a");
            return r.value("management", "") == "drained" && r.contains("lock") && r["lock"].is_null();
          },
          60s)) {
    say("node-a is not drained and unlocked: " + c.get("nodes", "node-a").dump() + "\n" + tail(ctl.log()));
    return 2;
  }

  // What the drain costs while it only waits for the dead agent: the controller's CPU and the
  // writes to the tasks bucket over a fixed window (a measurement window, not a wait).
  double idle_cpu = std::nan(""), idle_writes = std::nan("");
  const auto window = 10s;
  if (!drain_id.empty()) {
    auto before = c.bus().kv_get("tasks", drain_id);
    double cpu0 = cpu_seconds(ctl.process().pid());
    auto t = SteadyClock::now();
    wait_until([] { return false; }, window);
    if (interrupted()) return 2;
    auto after = c.bus().kv_get("tasks", drain_id);
    idle_cpu = (cpu_seconds(ctl.process().pid()) - cpu0) / s_since(t);
    if (before && after) idle_writes = static_cast<double>(after->revision - before->revision) / s_since(t);
  }

  // The rebuild, timed.
  std::map<std::string, double> cpu_before;
  auto cpu_of = [&](std::map<std::string, double>& into) {
    into["controller"] = cpu_seconds(ctl.process().pid());
    into["nats-server"] = cpu_seconds(nats.proc->pid());
    for (const auto& t : targets) into[t] = cpu_seconds(agents[t]->process().pid());
  };
  std::string load_before = loadavg();
  std::unique_ptr<Perf> perf;
  if (!opt.perf.empty()) perf = std::make_unique<Perf>(opt.perf, ctl.process().pid(), files.file("perf.log"));
  cpu_of(cpu_before);
  auto t0 = SteadyClock::now();
  int64_t requested = unix_ms();
  auto r = c.request("cmd.node.rebuild", {{"node", "node-a"}}, 120s);
  double reply_s = s_since(t0);
  if (!r.value("ok", false)) {
    say("rebuild refused: " + r.dump().substr(0, 2000));
    return 2;
  }
  std::string id = r["result"]["task"];
  std::pair<uint64_t, uint64_t> revisions;
  json task = wait_task(c, id, 100ms, std::chrono::seconds(opt.deadline_s), &revisions);
  double observed_s = s_since(t0);
  std::map<std::string, double> cpu_after;
  cpu_of(cpu_after);
  perf.reset();
  std::string load_after = loadavg();
  if (task.is_null()) {
    say("the rebuild did not finish within " + std::to_string(opt.deadline_s) + " s\n" + tail(ctl.log()));
    return 3;
  }

  // Every VM on exactly one target, its record there with generation 2.
  std::map<std::string, std::set<std::string>> where;
  for (const auto& t : targets)
    for (const auto& [uuid, state] : c.domains(t))
      if (state == "running") where[uuid].insert(t);
  std::map<std::string, json> records;
  for (auto& rec : c.list("vms")) records[rec.value("uuid", "")] = rec;
  size_t bad = 0;
  std::map<std::string, size_t> per_target;
  for (size_t i = 0; i < n; ++i) {
    const auto& rec = records[vm_uuid(i)];
    std::string node = rec.is_object() ? rec.value("node", "") : "";
    bool ok = where[vm_uuid(i)].size() == 1 && where[vm_uuid(i)].count(node) && rec.value("generation", 0) == 2;
    if (!ok && bad++ < 5)
      say(vm_name(i) + ": runs on " + std::to_string(where[vm_uuid(i)].size()) + " target(s), record " +
          (rec.is_object() ? without_xml(rec).dump() : std::string("missing")));
    per_target[node]++;
  }
  json drain = drain_id.empty() ? json{{"state", "none: node-a set drained in its record (--drain-by-record)"}}
                                 : c.get("tasks", drain_id);

  TaskTiming tt = timing_of(task, requested);
  double ctl_cpu = cpu_after["controller"] - cpu_before["controller"];
  double agents_cpu = 0;
  std::string agent_cells;
  for (const auto& t : targets) {
    double used = cpu_after[t] - cpu_before[t];
    agents_cpu += used;
    agent_cells += (agent_cells.empty() ? "" : ", ") + fixed(used, 2);
  }
  double nats_cpu = cpu_after["nats-server"] - cpu_before["nats-server"];
  auto nd = static_cast<double>(n);

  std::cout << "| VMs | targets | parallel | task | total s | per VM ms | reply ms | plan ms | run s | step p50 ms | step p99 ms "
               "| step max ms | steps at once | controller CPU s | per VM ms | agents CPU s | nats-server CPU s |\n"
               "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  std::cout << "| " << n << " | " << targets.size() << " | " << (opt.parallel ? std::to_string(opt.parallel) : "default")
            << " | " << task.value("state", "") << " | " << fixed(tt.total_ms / 1000.0, 2) << " | " << fixed(tt.total_ms / nd, 2)
            << " | " << fixed(reply_s * 1000.0, 0) << " | " << fixed(tt.plan_ms, 0) << " | " << fixed(tt.run_ms / 1000.0, 2)
            << " | " << fixed(percentile(tt.steps_ms, 50)) << " | " << fixed(percentile(tt.steps_ms, 99)) << " | "
            << fixed(percentile(tt.steps_ms, 100)) << " | " << fixed(tt.busy, 2) << " | " << fixed(ctl_cpu, 2) << " | "
            << fixed(ctl_cpu * 1000.0 / nd, 2) << " | " << fixed(agents_cpu, 2) << " (" << agent_cells << ") | "
            << fixed(nats_cpu, 2) << " |\n\n";
  std::cout << "figure: evacuation.control_" << n << "_vms_ms_per_vm " << fixed(tt.total_ms / nd, 2) << "\n"
            << "figure: evacuation.control_" << n << "_vms_controller_cpu_ms_per_vm " << fixed(ctl_cpu * 1000.0 / nd, 2) << "\n\n";
  std::cout << "- total: request sent -> the task record's `finished` (controller clock = this machine's); seen by polling "
               "its record every 100 ms after "
            << fixed(observed_s, 2) << " s\n"
            << "- plan: request -> task `started` (vms bucket read, placement, lock, task stored); reply with the task id after "
            << fixed(reply_s * 1000.0, 0) << " ms\n"
            << "- run: task started -> finished; first step started " << fixed(tt.first_step_ms, 0)
            << " ms after the task, task finished " << fixed(tt.last_step_ms, 0) << " ms after the last step; " << tt.succeeded
            << " of " << n << " steps succeeded" << step_errors(task) << "\n"
            << "- steps: started -> finished of each VM's step (record move, define, start on the target)\n"
            << "- the task's head record at the end: " << fixed(task.value("bench_record_bytes", 0.0) / 1024.0) << " KiB; writes to the "
            << "tasks bucket while it ran (both tasks): " << (revisions.second - revisions.first) << "\n"
            << "- VMs per target:";
  for (const auto& [node, count] : per_target) std::cout << " " << (node.empty() ? "?" : node) << "=" << count;
  if (!drain_id.empty())
    std::cout << "\n- before the rebuild, the drain task alone (waiting for node-a's agent), over " << window.count()
              << " s: controller " << fixed(idle_cpu * 100.0, 0) << " % of a core, " << fixed(idle_writes, 0)
              << " writes/s to the tasks bucket";
  std::cout << "\n- the drain task of node-a: " << drain.value("state", "?") << " (it waits for node-a's agent; steps of "
            << "VMs rebuilt elsewhere succeed)\n"
            << "- load average before / after: " << load_before << " / " << load_after << "\n"
            << "- verification: " << (bad == 0 ? "every VM runs on exactly one target and its record names it, generation 2"
                                                : std::to_string(bad) + " VM(s) wrong")
            << "\n";
  if (!opt.perf.empty()) std::cout << "- perf profile of the controller during the rebuild: " << opt.perf << "\n";
  return bad == 0 && task.value("state", "") == "succeeded" ? 0 : 1;
}

}  // namespace nodeha::bench
