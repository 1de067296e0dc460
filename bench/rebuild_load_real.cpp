// Evacuation, real mode: nodeha's rebuild and drain side by side with an operator's virsh loops,
// on one isolated real libvirtd (see rebuild_load.cpp for the scenario).
#include "rebuild_load.h"

#include "host_process.h"
#include "libvirt.h"
#include "libvirtd.h"

#include <unistd.h>

#include <csignal>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>

namespace nodeha::bench {
namespace {

std::string guest_name(size_t i) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "rl-%03zu", i);
  return buf;
}
std::string guest_uuid(size_t i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "5eb1e000-0000-4000-8000-%012zx", i);
  return buf;
}

// The guest of Libvirtd::define_and_start (tests/support/libvirtd.cpp): 64 MiB, 1 vCPU, diskless;
// KVM when /dev/kvm is usable, TCG otherwise.
std::string guest_xml(const std::string& name, const std::string& uuid) {
  bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
  return std::string("<domain type='") + (kvm ? "kvm" : "qemu") + "'>\n  <name>" + name + "</name>\n  <uuid>" + uuid +
         "</uuid>\n  <memory unit='MiB'>64</memory>\n  <vcpu>1</vcpu>\n"
         "  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n  <clock offset='utc'/>\n"
         "  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>\n"
         "  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
         "    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n  </devices>\n</domain>\n";
}

void quiet(void*, virErrorPtr) {}

// The benchmark's own libvirt connection to the daemon: setup, checks and cleanup, never timed.
class Daemon {
 public:
  explicit Daemon(const std::string& uri) {
    virSetErrorFunc(nullptr, &quiet);
    conn_.reset(virConnectOpen(uri.c_str()));
  }
  explicit operator bool() const { return conn_ != nullptr; }

  // uuid -> state of every domain.
  std::map<std::string, std::string> domains() {
    std::map<std::string, std::string> out;
    virDomainPtr* list = nullptr;
    int count = virConnectListAllDomains(conn_.get(), &list, 0);
    for (int i = 0; i < count; ++i) {
      libvirt::Domain dom(list[i]);
      char uuid[VIR_UUID_STRING_BUFLEN];
      int state = 0, reason = 0;
      if (virDomainGetUUIDString(dom.get(), uuid) == 0 && virDomainGetState(dom.get(), &state, &reason, 0) == 0)
        out[uuid] = libvirt::state_name(state);
    }
    free(list);
    return out;
  }
  size_t running(size_t n) {
    auto all = domains();
    size_t count = 0;
    for (size_t i = 0; i < n; ++i) count += all.count(guest_uuid(i)) && all[guest_uuid(i)] == "running";
    return count;
  }
  // Destroys and undefines every domain; true when none is left.
  bool clean() {
    virDomainPtr* list = nullptr;
    int count = virConnectListAllDomains(conn_.get(), &list, 0);
    for (int i = 0; i < count; ++i) {
      libvirt::Domain dom(list[i]);
      if (virDomainIsActive(dom.get()) == 1) virDomainDestroy(dom.get());
      virDomainUndefine(dom.get());
    }
    free(list);
    return domains().empty();
  }
  bool start(const std::string& xml, std::string* error) {
    libvirt::Domain dom(virDomainDefineXML(conn_.get(), xml.c_str()));
    if (!dom || virDomainCreate(dom.get()) < 0) {
      *error = libvirt::last_error();
      return false;
    }
    return true;
  }

 private:
  libvirt::Connection conn_;
};

// Every guest gone when the benchmark ends, also halfway: through the daemon, then by pid.
struct GuestSweeper {
  Daemon& daemon;
  size_t n;
  ~GuestSweeper() {
    daemon.clean();
    for (size_t i = 0; i < n; ++i)
      for (pid_t p : test::Libvirtd::processes_with(guest_uuid(i))) ::kill(p, SIGKILL);
  }
};

std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

// An operator's loop as a shell script: `virsh define && virsh start` (or `virsh destroy`) of
// every guest, one after another (parallel 1) or `parallel` at a time with xargs -P.
std::string loop_script(bool start, size_t parallel, const std::string& uri, const std::string& dir, size_t n) {
  std::string names;
  for (size_t i = 0; i < n; ++i) names += " " + guest_name(i);
  std::string one = start ? R"(virsh -q -c "$URI" define "$DIR/$1.xml" >/dev/null && virsh -q -c "$URI" start "$1" >/dev/null)"
                          : R"(virsh -q -c "$URI" destroy "$1" >/dev/null)";
  std::string s = "export URI=" + sh_quote(uri) + " DIR=" + sh_quote(dir) + "\n";
  if (parallel == 1)
    return s + "for n in" + names + "; do set -- \"$n\"; " + one + " || exit 1; done\n";
  return s + "printf '%s\\n'" + names + " | xargs -P" + std::to_string(parallel) + " -n1 sh -c '" + one + "' sh\n";
}

struct Method {
  std::string label;
  std::vector<double> totals;  // s, one per run
  double median() const { return percentile(totals, 50); }
};

// Runs a loop script; its wall time in s, or NaN when it failed.
double run_loop(const test::TempDir& files, const std::string& name, const std::string& script, int deadline_s) {
  std::string path = files.write(name + ".sh", script);
  auto t0 = SteadyClock::now();
  test::Process sh({"/bin/sh", path}, files.file(name + ".log"));
  wait_until([&] { return !sh.running(); }, std::chrono::seconds(deadline_s));
  auto status = sh.wait_exit(0ms);
  double s = s_since(t0);
  if (!status || *status != 0) {
    say(name + " failed (" + (status ? "exit " + std::to_string(*status) : std::string("timeout")) + "): " +
        tail(sh.output(), 1000));
    return std::nan("");
  }
  return s;
}

json vm_record_for(size_t i, const std::string& node) {
  return {{"uuid", guest_uuid(i)}, {"name", guest_name(i)}, {"node", node},     {"generation", 1},
          {"state", "running"},    {"desired", "running"},  {"vcpus", 1},       {"memory_mib", 64},
          {"disk_gib", 0},         {"local_disk", false},   {"local_disks", json::array()}, {"group", ""},
          {"xml", guest_xml(guest_name(i), guest_uuid(i))}, {"updated", unix_ms()}};
}

}  // namespace

int run_real(const Options& opt) {
  const size_t n = opt.vms ? opt.vms : 10;
  const auto deadline = std::chrono::seconds(opt.deadline_s);
  say("real mode: " + std::to_string(n) + " guests, " + std::to_string(opt.repeat) + " runs of each; /dev/kvm " +
      (access("/dev/kvm", R_OK | W_OK) == 0 ? "usable" : "absent: TCG") + "; load average " + loadavg());
  test::TempDir files;
  for (size_t i = 0; i < n; ++i) files.write(guest_name(i) + ".xml", guest_xml(guest_name(i), guest_uuid(i)));
  test::Libvirtd libvirtd(120s);
  if (!libvirtd.answers()) {
    say("the isolated libvirtd does not answer:\n" + tail(libvirtd.log()));
    return 2;
  }
  if (opt.max_client_requests > 0) {
    // libvirtd's limit of RPC calls in flight per client connection: the agent uses one
    // connection, each virsh its own.
    std::string conf = libvirtd.dir().file("libvirtd.conf");
    libvirtd.dir().write("libvirtd.conf", test::read_file(conf) + "max_client_requests = " +
                                              std::to_string(opt.max_client_requests) + "\n");
    libvirtd.kill();  // no guest yet: nothing to clean up
    if (!libvirtd.start(60s)) {
      say("libvirtd did not come back with max_client_requests:\n" + tail(libvirtd.log()));
      return 2;
    }
  }
  Daemon daemon(libvirtd.uri());
  if (!daemon || !daemon.clean()) {
    say("cannot connect to or clean " + libvirtd.uri());
    return 2;
  }
  GuestSweeper sweeper{daemon, n};
  Nats nats;
  Client c(nats.url());
  if (!c) {
    say("cannot connect to " + nats.url());
    return 2;
  }
  test::HostProcess ctl(controller_config(opt, nats.url()));
  if (!ctl.wait_ready(30s)) {
    say("the controller did not come up:\n" + tail(ctl.log()));
    return 2;
  }

  Method seq_start{"sequential `virsh define && virsh start`"}, par_start{"4 at a time (`xargs -P4`)"},
      nodeha_rebuild{"nodeha rebuild (`cmd.node.rebuild`, parallel " + (opt.parallel ? std::to_string(opt.parallel) : "default") + ")"},
      seq_destroy{"sequential `virsh destroy`"}, par_destroy{"10 at a time (`xargs -P10`)"},
      nodeha_drain{"nodeha drain (`cmd.node.drain`, stop_timeout 0s)"};
  std::vector<TaskTiming> rebuild_timings, drain_timings;
  std::map<std::string, json> last_task;  // label -> the last run's record, for its timeline
  std::string error;
  auto fail = [&](const std::string& what) {
    error = what;
    return false;
  };
  auto start_all = [&] {
    std::string e;
    for (size_t i = 0; i < n; ++i)
      if (!daemon.start(guest_xml(guest_name(i), guest_uuid(i)), &e)) return fail("setup start of " + guest_name(i) + ": " + e);
    return true;
  };
  auto timed_loop = [&](Method& m, bool start, size_t parallel, size_t run) {
    double s = run_loop(files, (start ? "start-" : "destroy-") + std::to_string(parallel) + "-" + std::to_string(run),
                        loop_script(start, parallel, libvirtd.uri(), files.path(), n), opt.deadline_s);
    if (std::isnan(s)) return fail(m.label + " failed");
    size_t up = daemon.running(n);
    if (up != (start ? n : 0)) return fail(m.label + ": " + std::to_string(up) + " of " + std::to_string(n) + " running after it");
    m.totals.push_back(s);
    say(m.label + ": " + fixed(s, 2) + " s");
    return daemon.clean() || fail("cannot clean the daemon");
  };

  // The loops, with no agent on the daemon.
  for (size_t run = 0; run < opt.repeat && error.empty() && !opt.no_loops; ++run)
    (void)(timed_loop(seq_start, true, 1, run) && timed_loop(par_start, true, 4, run));
  for (size_t run = 0; run < opt.repeat && error.empty() && !opt.no_loops; ++run)
    (void)(start_all() && timed_loop(seq_destroy, false, 1, run) && start_all() && timed_loop(par_destroy, false, 10, run));
  if (!error.empty()) {
    say(error);
    return 2;
  }

  // nodeha: node-a is dead and drained with N records; node-b is the daemon's agent.
  json node_a = {{"node", "node-a"}, {"management", "drained"}, {"monitor", "unreachable"}, {"reason", "no agent (benchmark)"},
                 {"lock", nullptr}};
  if (auto put = c.bus().kv_put("nodes", "node-a", node_a.dump()); !put) {
    say("kv_put node-a: " + put.status().message());
    return 2;
  }
  auto agent = std::make_unique<test::HostProcess>(agent_config(opt, "node-b", nats.url(), libvirtd.uri()));
  if (!agent->wait_ready(60s) || !wait_until([&] { return c.normal("node-b"); }, 30s)) {
    say("node-b's agent did not come up:\n" + tail(agent->log()) + "\n" + tail(ctl.log()));
    return 2;
  }
  size_t swept_by_hand = 0;
  // Records name node-a, node-b has none of the guests and is enabled, and a dry run places all
  // of them on node-b.
  auto reset = [&] {
    for (size_t i = 0; i < n; ++i)
      if (auto put = c.bus().kv_put("vms", guest_uuid(i), vm_record_for(i, "node-a").dump()); !put)
        return fail("kv_put vms: " + put.status().message());
    // The agent removes its copies now stale; by hand if it does not.
    if (!wait_until([&] { return daemon.domains().empty(); }, 30s)) {
      ++swept_by_hand;
      if (!daemon.clean()) return fail("node-b's guests could not be removed");
    }
    if (!wait_until([&] { return c.domains("node-b").empty() && c.get("nodes", "node-b")["lock"].is_null(); }, 30s))
      return fail("node-b's agent still lists guests, or node-b is locked");
    if (c.get("nodes", "node-b").value("management", "") != "enabled") {
      auto e = c.request("cmd.node.enable", {{"node", "node-b"}});
      if (!e.value("ok", false)) return fail("node.enable node-b: " + e.dump());
    }
    bool placed = wait_until(
        [&] {
          auto dry = c.request("cmd.node.rebuild", {{"node", "node-a"}, {"target", "node-b"}, {"dry_run", true}});
          if (!dry.value("ok", false)) return false;
          size_t to_b = 0;
          for (const auto& p : dry["result"]["plan"]) to_b += p.value("action", "") == "rebuild" && p["target"] == "node-b";
          return to_b == n;
        },
        30s);
    return placed || fail("a dry run never placed every VM on node-b");
  };
  auto timed_task = [&](Method& m, std::vector<TaskTiming>& timings, const std::string& subject, const json& body,
                        const std::function<bool()>& settled) {
    auto t0 = SteadyClock::now();
    int64_t requested = unix_ms();
    auto r = c.request(subject, body, 60s);
    if (!r.value("ok", false)) return fail(subject + " refused: " + r.dump());
    json task = wait_task(c, r["result"]["task"], 10ms, deadline);
    if (task.is_null() || task.value("state", "") != "succeeded")
      return fail(m.label + ": task " + (task.is_null() ? "unfinished" : task.value("state", "")) + step_errors(task));
    if (!wait_until(settled, deadline)) return fail(m.label + ": the guests are not where the task says");
    double s = s_since(t0);
    m.totals.push_back(s);
    timings.push_back(timing_of(task, requested));
    last_task[m.label] = task;
    say(m.label + ": " + fixed(s, 2) + " s (task record: " + fixed(timings.back().total_ms / 1000.0, 2) + " s)");
    return true;
  };
  auto records_on_b = [&] {
    for (size_t i = 0; i < n; ++i) {
      auto rec = c.get("vms", guest_uuid(i));
      if (rec.value("node", "") != "node-b" || rec.value("generation", 0) != 2) return fail(guest_name(i) + ": record " + without_xml(rec).dump());
    }
    return true;
  };
  for (size_t run = 0; run < opt.repeat && error.empty(); ++run) {
    if (!reset()) break;
    if (!timed_task(nodeha_rebuild, rebuild_timings, "cmd.node.rebuild", {{"node", "node-a"}, {"target", "node-b"}},
                    [&] { return daemon.running(n) == n; }))
      break;
    if (!records_on_b()) break;
    if (!wait_until([&] { return c.domains("node-b").size() == n; }, 30s)) {
      fail("node-b's agent does not list the rebuilt guests");
      break;
    }
    if (!timed_task(nodeha_drain, drain_timings, "cmd.node.drain", {{"node", "node-b"}}, [&] { return daemon.running(n) == 0; }))
      break;
  }
  agent.reset();
  if (!error.empty()) {
    say(error + "\n" + tail(ctl.log()));
    return 2;
  }

  // The table: medians, ratios to the best parallel loop of the group.
  auto row = [&](const Method& m, double best) {
    std::string runs;
    for (double t : m.totals) runs += (runs.empty() ? "" : ", ") + fixed(t, 2);
    std::cout << "| " << m.label << " | " << fixed(m.median(), 2) << " | " << fixed(m.median() / static_cast<double>(n), 3)
              << " | " << fixed(m.median() / best, 2) << " | " << runs << " |\n";
  };
  std::cout << "| method (" << n << " guests) | total s (median) | per VM s | ratio to the best parallel loop | runs s |\n"
               "|---|---:|---:|---:|---|\n";
  row(seq_start, par_start.median());
  row(par_start, par_start.median());
  row(nodeha_rebuild, par_start.median());
  row(seq_destroy, par_destroy.median());
  row(par_destroy, par_destroy.median());
  row(nodeha_drain, par_destroy.median());
  std::cout << "figure: evacuation_real.rebuild_to_best_loop_ratio " << fixed(nodeha_rebuild.median() / par_start.median(), 2) << "\n"
            << "figure: evacuation_real.drain_to_best_loop_ratio " << fixed(nodeha_drain.median() / par_destroy.median(), 2) << "\n"
            << "figure: evacuation_real.rebuild_to_sequential_ratio " << fixed(nodeha_rebuild.median() / seq_start.median(), 2) << "\n"
            << "figure: evacuation_real.drain_to_sequential_ratio " << fixed(nodeha_drain.median() / seq_destroy.median(), 2) << "\n";
  auto detail = [&](const char* what, const std::vector<TaskTiming>& ts) {
    std::vector<double> plan, run, p50, p99;
    for (const auto& t : ts) {
      plan.push_back(t.plan_ms);
      run.push_back(t.run_ms);
      p50.push_back(percentile(t.steps_ms, 50));
      p99.push_back(percentile(t.steps_ms, 100));
    }
    std::cout << "- " << what << " (medians over runs, from the task records): request -> task started " << fixed(percentile(plan, 50), 0)
              << " ms; task run " << fixed(percentile(run, 50), 0) << " ms; step p50 " << fixed(percentile(p50, 50), 0)
              << " ms, slowest step " << fixed(percentile(p99, 50), 0) << " ms\n";
  };
  std::cout << "\n";
  detail("rebuild", rebuild_timings);
  detail("drain", drain_timings);
  for (const auto& [label, task] : last_task) {
    std::cout << "- steps of the last run of " << label << " (ms from the task's start, started-finished):";
    double t0 = task.value("started", 0.0);
    for (const auto& st : task.value("steps", json::array()))
      std::cout << " " << st.value("name", "") << " " << fixed(st.value("started", 0.0) - t0, 0) << "-"
                << fixed(st.value("finished", 0.0) - t0, 0);
    std::cout << "\n";
  }
  std::cout << "- the shell loops ran with node-b's agent stopped; nodeha's runs with it; guests left by a run were "
               "removed by the agent as stale copies"
            << (swept_by_hand ? " (by hand " + std::to_string(swept_by_hand) + " time(s): the agent did not)" : std::string())
            << "\n- load average at the end: " << loadavg() << "\n";
  return 0;
}

}  // namespace nodeha::bench
