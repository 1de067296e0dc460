// The agent's weight: an agent `nodeha-host` beside 100 VMs, in a normal cluster, measured from
// /proc at heartbeat interval 15 s and 1 s.
//
// Starts nats-server -js (free loopback port, temp store) and a controller `nodeha-host` with the
// test harness's controller plugins (heartbeat, scheduler, vms, tasks, migrate, drain, rebuild).
// Then, for each interval, a fresh agent `nodeha-host` (role agent, node-1) with the plugins
// config/agent.toml ships, at their shipped defaults where the machine allows: heartbeat at the
// interval, netcheck (every 30 s; link of `lo` and a TCP connect to nats-server, since the
// business network here is loopback), vms (sync every 2 s, supervising), migrate. Its libvirt is
// the test driver on a node file of --vms running domains (64 MiB, 1 vCPU, an rbd disk each): the
// driver lives in the agent's own process, so its memory and CPU are counted in the agent's.
//
// Once the controller lists node-1 `normal` at the agent's interval and the vms bucket holds all
// its VMs, it waits --warmup s more, then reads the agent's utime + stime from /proc/<pid>/stat
// at the start and the end of the window (--window-15s, default 60 s; --window-1s, default 30 s),
// samples VmRSS every second, and reads VmHWM (peak RSS since start), RssAnon / RssFile (private
// memory / mapped files, mostly shared libraries), the thread count and the context switches of
// all its threads (voluntary: wakeups; the six threads that woke most are named) at the end; it
// counts the heartbeats seen on the bus in the window. Prints a Markdown table and one line per figure for bench/run-all:
//   figure: agent.cpu_pct_15s, agent.rss_mib_15s, agent.peak_rss_mib_15s (and the same for 1s)
// RSS is the last sample of the window. Exits non-zero only when it could not measure.
#include "host_process.h"
#include "measure.h"
#include "nats_server.h"
#include "test_nodes.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

namespace nodeha::bench {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using test::wait_until;

struct Options {
  int vms = 100;
  int window_15s = 60;
  int window_1s = 30;
  int warmup_s = 10;
  std::string only;  // "15s" or "1s": one interval only
};

const std::string kNode = "node-1";

void say(const std::string& s) { std::cerr << "[agent_load] " << s << std::endl; }

// Context switches of each thread of `pid` by thread id, with the thread's name (each thread's
// own count is in its task's status).
struct ThreadSwitches {
  std::string name;
  double voluntary = 0, involuntary = 0;
};
std::map<std::string, ThreadSwitches> thread_switches(pid_t pid) {
  std::map<std::string, ThreadSwitches> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::string status = task.path().string() + "/status";
    ThreadSwitches& t = out[task.path().filename().string()];
    std::string comm = test::read_file(task.path().string() + "/comm");
    t.name = comm.substr(0, comm.find('\n'));
    t.voluntary = status_field(status, "voluntary_ctxt_switches");
    t.involuntary = status_field(status, "nonvoluntary_ctxt_switches");
  }
  return out;
}

std::string agent_config(const std::string& nats_url, int nats_port, const std::string& node_file,
                         const std::string& interval) {
  return test::host_tables("agent", kNode, nats_url) + "[libvirt]\nuri = \"test://" + node_file + "\"\n" +
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"" + interval +
         "\"\naddresses = { management = \"127.0.0.1\", business = \"127.0.0.1\" }\ndisk_path = \"/\"\n"
         "[[plugin]]\nlibrary = \"netcheck\"\ninterfaces = [\"lo\"]\ntargets = [\"tcp:127.0.0.1:" +
         std::to_string(nats_port) + "\"]\n"
         "[[plugin]]\nlibrary = \"vms\"\n"
         "[[plugin]]\nlibrary = \"migrate\"\naddresses = { management = \"127.0.0.1\", business = \"127.0.0.1\" }\n";
}

struct Window {
  std::string interval;
  double seconds = 0, cpu_pct = NAN, rss_mib = NAN, rss_max_mib = NAN, peak_mib = NAN;
  double anon_mib = NAN, file_mib = NAN;  // of the RSS at the end: private memory, mapped files (libraries)
  double threads = NAN, wakeups_per_s = NAN, involuntary_per_s = NAN;
  std::string busiest;  // the threads that woke most, "name wakeups/s"
  int heartbeats = 0;
};

// node-1 is normal on the controller, at this agent's interval (the second agent is the same
// node back with another one), and every VM of its node file is in the vms bucket.
bool in_cluster(host::Bus& bus, int vms, int64_t interval_ms) {
  auto r = bus.request("nodeha.cmd.node.list", "{}", 1s);
  if (!r) return false;
  auto j = json::parse(r.value(), nullptr, false);
  if (!j.is_object() || !j.value("ok", false)) return false;
  bool normal = false;
  for (const auto& n : j["result"]["nodes"])
    if (n.value("node", "") == kNode && n.value("monitor", "") == "normal" && n.value("interval_ms", int64_t{0}) == interval_ms)
      normal = true;
  if (!normal) return false;
  auto all = bus.kv_list("vms");
  if (!all) return false;
  int mine = 0;
  for (const auto& e : all.value()) {
    auto v = json::parse(e.value, nullptr, false);
    if (v.is_object() && v.value("node", "") == kNode) ++mine;
  }
  return mine == vms;
}

std::optional<Window> measure(const Options& opt, test::NatsServer& nats, host::Bus& bus, const std::string& interval,
                              int window_s) {
  test::TempDir dir;
  std::string file = dir.write("node-1.xml", test::node_xml(test::vms_of(1, opt.vms), 65536));
  test::HostProcess agent(agent_config(nats.url(), nats.port(), file, interval));
  if (!agent.wait_ready(20s)) {
    say("the agent did not come up:\n" + agent.log());
    return std::nullopt;
  }
  auto joined = SteadyClock::now();
  const int64_t interval_ms = std::stoll(interval) * 1000;  // "15s", "1s"
  if (!wait_until([&] { return in_cluster(bus, opt.vms, interval_ms); }, 60s)) {
    say("node-1 never became normal with its " + std::to_string(opt.vms) + " VMs:\n" + agent.log().substr(0, 4000));
    return std::nullopt;
  }
  say("interval " + interval + ": in the cluster after " +
      fixed(std::chrono::duration<double>(SteadyClock::now() - joined).count()) + " s; warm-up " +
      std::to_string(opt.warmup_s) + " s, window " + std::to_string(window_s) + " s");
  std::this_thread::sleep_for(std::chrono::seconds(opt.warmup_s));  // a measuring window, not a wait for a condition

  std::atomic<int> heartbeats{0};
  auto sub = bus.subscribe("nodeha.hb." + kNode, "", [&](Message) { ++heartbeats; });
  const pid_t pid = agent.process().pid();
  Window w;
  w.interval = interval;
  auto t0 = SteadyClock::now();
  double cpu0 = cpu_seconds(pid);
  auto switches0 = thread_switches(pid);
  w.rss_max_mib = 0;
  for (int s = 0; s < window_s; ++s) {
    std::this_thread::sleep_until(t0 + std::chrono::seconds(s + 1));
    w.rss_mib = status_mib(pid, "VmRSS");
    w.rss_max_mib = std::max(w.rss_max_mib, w.rss_mib);
  }
  w.seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  w.cpu_pct = (cpu_seconds(pid) - cpu0) / w.seconds * 100;
  std::vector<std::pair<double, std::string>> woke;  // per thread alive at both ends
  w.wakeups_per_s = w.involuntary_per_s = 0;
  for (const auto& [tid, t] : thread_switches(pid)) {
    auto before = switches0.find(tid);
    if (before == switches0.end()) continue;
    double vol = (t.voluntary - before->second.voluntary) / w.seconds;
    w.wakeups_per_s += vol;
    w.involuntary_per_s += (t.involuntary - before->second.involuntary) / w.seconds;
    woke.emplace_back(vol, t.name);
  }
  std::sort(woke.rbegin(), woke.rend());
  for (size_t i = 0; i < woke.size() && i < 6; ++i)
    w.busiest += (i ? ", " : "") + woke[i].second + " " + fixed(woke[i].first, 1);
  w.peak_mib = status_mib(pid, "VmHWM");
  w.anon_mib = status_mib(pid, "RssAnon");
  w.file_mib = status_mib(pid, "RssFile");
  w.threads = status_field("/proc/" + std::to_string(pid) + "/status", "Threads");
  w.heartbeats = heartbeats.load();
  if (sub) bus.unsubscribe(sub.value());
  if (!agent.process().running()) {
    say("the agent exited during the window:\n" + agent.log().substr(0, 4000));
    return std::nullopt;
  }
  return w;
}

int run(const Options& opt) {
  say("load average at start: " + loadavg());
  test::NatsServer nats;
  auto bus = nats.client();
  if (!bus || !bus->wait_connected(10s)) {
    say("cannot reach nats-server");
    return 2;
  }
  test::HostProcess ctl(test::host_tables("controller", "ctl-1", nats.url()) + test::controller_plugin_tables());
  if (!ctl.wait_ready(20s)) {
    say("the controller did not come up:\n" + ctl.log());
    return 2;
  }
  std::vector<Window> windows;
  for (auto [interval, window_s] : {std::pair<std::string, int>{"15s", opt.window_15s}, {"1s", opt.window_1s}}) {
    if (!opt.only.empty() && opt.only != interval) continue;
    auto w = measure(opt, nats, *bus, interval, window_s);
    if (!w) return 3;
    windows.push_back(*w);
  }

  std::cout << "| heartbeat interval | VMs | window s | heartbeats seen | CPU % of one core | RSS MiB (end) | of it anon / "
               "files MiB | RSS max MiB (1 s samples) | peak RSS MiB (VmHWM) | threads | wakeups/s (voluntary switches) | "
               "involuntary/s |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& w : windows)
    std::cout << "| " << w.interval << " | " << opt.vms << " | " << fixed(w.seconds, 0) << " | " << w.heartbeats << " | "
              << fixed(w.cpu_pct, 2) << " | " << fixed(w.rss_mib, 1) << " | " << fixed(w.anon_mib, 1) << " / "
              << fixed(w.file_mib, 1) << " | " << fixed(w.rss_max_mib, 1) << " | "
              << fixed(w.peak_mib, 1) << " | " << fixed(w.threads, 0) << " | " << fixed(w.wakeups_per_s, 1) << " | "
              << fixed(w.involuntary_per_s, 1) << " |\n";
  for (const auto& w : windows) std::cout << "\n- " << w.interval << ": threads that woke most (wakeups/s): " << w.busiest;
  std::cout << "\n- agent: heartbeat, netcheck (lo, TCP to nats-server), vms (sync 2 s), migrate; libvirt test driver "
               "in-process; load average at the end: "
            << loadavg() << "\n\n";
  for (const auto& w : windows) {
    std::cout << "figure: agent.cpu_pct_" << w.interval << " " << fixed(w.cpu_pct, 3) << "\n";
    std::cout << "figure: agent.rss_mib_" << w.interval << " " << fixed(w.rss_mib, 1) << "\n";
    std::cout << "figure: agent.peak_rss_mib_" << w.interval << " " << fixed(w.peak_mib, 1) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace nodeha::bench

int main(int argc, char** argv) {
  nodeha::bench::Options opt;
  CLI::App app{"An agent's CPU and memory beside its VMs, at heartbeat interval 15 s and 1 s"};
  app.add_option("--vms", opt.vms, "running test-driver domains on the agent's node")->check(CLI::Range(0, 10000));
  app.add_option("--window-15s", opt.window_15s, "seconds measured at interval 15 s")->check(CLI::Range(15, 3600));
  app.add_option("--window-1s", opt.window_1s, "seconds measured at interval 1 s")->check(CLI::Range(5, 3600));
  app.add_option("--warmup", opt.warmup_s, "seconds between joining the cluster and the window")->check(CLI::Range(0, 600));
  app.add_option("--only", opt.only, "measure one interval only")->check(CLI::IsMember({"15s", "1s"}));
  CLI11_PARSE(app, argc, argv);
  return nodeha::bench::run(opt);
}
