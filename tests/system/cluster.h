// The failure-scenario test cluster (issue 7): a whole nodeha installation on real parts inside
// network namespaces, built and torn down by one object per test.
//
//   control-plane namespace   nats-server (JetStream) on 10.88.1.254:4222 with the shipped
//                             config and the include of `nodeha auth init`: TLS with the
//                             cluster's own CA (its certificate names 10.88.1.254), one
//                             credential per process (controller `ctl`, agents node-i, the
//                             operator `admin`), each held to its role's permissions; Prometheus +
//                             Alertmanager with the shipped rules and a webhook receiver
//                             (tests/support/alert_stack.h). With `nats_servers` = 3 a
//                             cluster of three (nats_cluster.h) on ports 4222..4224, every
//                             bucket and stream replicated x3; every process is given the three
//                             URLs
//   controller namespace(s)   the controller on 10.88.1.253 (heartbeat 1 s / 3 misses,
//                             scheduler, vms, tasks, migrate, drain, rebuild): its link can be
//                             cut apart from nats-server's. With `controllers` = 2 a second one
//                             on 10.88.1.252 in a namespace of its own, with its own credential;
//                             one leads (the lease in KV, 2 s), the other follows
//   node-i namespace          an isolated libvirtd (QEMU, TCP on 16509 for its peers) with tiny
//                             diskless guests, and node-i's agent (heartbeat 1 s, netcheck 1 s on
//                             biz0, vms, migrate, file_check "storage")
//   networks                  management 10.88.1.0/24 (NATS, libvirt, migrations by default),
//                             business 10.88.2.0/24 (what netcheck watches) and storage
//                             10.88.3.0/24; every agent's heartbeat and migrate `addresses` name
//                             all three, so `--network` may pick any; one call cuts a node's
//                             link on one or all (tests/support/netns.h), another reads its byte
//                             counters on one (TestNetwork::counters)
//
// An InvariantMonitor samples every node's libvirt (over unix sockets, so cuts do not blind it)
// from start() to the end of the test. The test thread talks to NATS from the control plane as
// the operator's CLI does, as `admin`: `cli(...)` runs `nodeha --json ...` there (with `--creds`
// and `--tls-ca`); `local(i, ...)` runs `nodeha local ...` on node i (the agent's socket, no
// credential). Every process, namespace and mount is gone after the destructor.
//
// Thread contract: one test thread; the event recorder and the monitor have threads of their own
// and are safe to read from the test thread.
#pragma once

#include "alert_stack.h"
#include "bmc_sim.h"
#include "bus.h"
#include "bus_security.h"
#include "disk_guest.h"
#include "cli_run.h"
#include "host_process.h"
#include "invariant.h"
#include "libvirtd.h"
#include "nats_cluster.h"
#include "nats_server.h"
#include "netns.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace nodeha::test {

struct ClusterOptions {
  int nodes = 3;
  // Guests per node at the start, by node number (1-based); every guest is 64 MiB.
  std::map<int, int> guests = {{1, 2}};
  // Guests with a local disk per node, after those above: the disk writer (disk_guest.h) booted
  // from a 64 MiB raw image full of data at disk_guest_path(uuid), in the node's own /var.
  std::map<int, int> disk_guests;
  bool alerting = true;  // Prometheus + Alertmanager + webhook receiver
  std::string migrate_extra;  // more keys for every agent's migrate plugin table
  // Controllers, each in its own namespace with its own credential; controller 1 starts first
  // and leads (start() waits for it), then the others follow.
  int controllers = 1;
  std::string drain_extra;  // more keys for every controller's drain plugin table
  int nats_servers = 1;  // 1, or 3: a NATS cluster
  // Every node gets a BMC: ipmi_sim (bmc_sim.h) in a namespace of its own on the management network
  // (TestNetwork::add_bmc), whose power-off kills every process of the node's namespace; and the
  // controllers the fence_ipmi plugin naming each node's BMC (method "ipmi").
  bool bmcs = false;
  // More plugin tables for every controller (the recovery plugin's), appended as written.
  std::string controller_extra;
  // Every agent gets the selffence plugin: its witness on its business address, its watchdog a
  // FIFO read by a stand-in process (tests/fixtures/watchdog_standin.cpp: no hardware watchdog can
  // run here) that, unfed for kWatchdogTimeout, kills every process of the node's namespace as a
  // reset would. Add a lease rung to the recovery plugin in controller_extra to use it.
  bool self_fence = false;
};

class Cluster {
 public:
  using Clock = std::chrono::steady_clock;
  struct Event {
    Clock::time_point at;
    std::string subject;
    nlohmann::json body;
  };

  explicit Cluster(ClusterOptions options = {});
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Builds everything and waits until every node is `normal` and every guest has a record on its
  // node; fatal test failures (ASSERT) when a part does not come up. Call from SetUp or the test.
  void start();

  int nodes() const { return options_.nodes; }
  static std::string node(int i) { return "node-" + std::to_string(i); }
  TestNetwork& net() { return net_; }
  // NATS server i (0-based; 0 when there is one).
  NatsServer& nats(size_t i = 0) { return nats_cluster_ ? nats_cluster_->server(i) : *nats_; }
  NatsCluster& nats_cluster() { return *nats_cluster_; }  // with `nats_servers` = 3 only
  Libvirtd& libvirtd(int i) const { return *daemons_.at(i - 1); }
  HostProcess* agent(int i) { return agents_.at(i - 1).get(); }
  // Controller c (1-based); nullptr while it is killed.
  HostProcess* controller(int c = 1) { return controllers_.at(c - 1).get(); }
  int controllers() const { return options_.controllers; }
  static std::string controller_id(int c) { return c == 1 ? "ctl" : "ctl-" + std::to_string(c); }
  AlertStack& alerts() { return *alerts_; }  // with `alerting` only
  BmcSim& bmc(int i) { return *bmcs_.at(i - 1); }  // with `bmcs` only
  // With `self_fence`. Not shorter: an agent's own fence (libvirt's destroy: SIGTERM, then a wait)
  // took over 2 s once with the machine loaded, and the reset came first.
  static constexpr int kWatchdogTimeoutMs = 4000;
  // Whether node i's watchdog stand-in reset it (with `self_fence`); its output.
  bool watchdog_fired(int i);
  std::string watchdog_log(int i);
  bool alerting() const { return options_.alerting; }
  InvariantMonitor& monitor() { return *monitor_; }
  // Where a disk guest's image is, on every node (each node's /var is its own).
  static std::string disk_guest_path(const std::string& uuid) { return "/var/lib/libvirt/images/" + uuid + ".raw"; }
  // The guests started on node i at the start (uuids; disk guests last), and all of them.
  const std::vector<std::string>& guests_of(int i) const { return guests_.at(i); }
  std::set<std::string> all_guests() const;

  // ---- the operator's view
  // `nodeha --creds <admin> --tls-ca <ca> --server <nats> --json args...` in the control plane.
  CliRun cli(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 180s);
  // `nodeha --socket <agent's local.sock> --json local args...` on node i.
  CliRun local(int i, const std::vector<std::string>& args, std::chrono::milliseconds timeout = 180s);
  // A record from the KV store ({} when absent or unreadable).
  nlohmann::json record(const std::string& bucket, const std::string& key);
  std::string monitor_state(int i) { return record("nodes", node(i)).value("monitor", ""); }
  std::string vm_node(const std::string& uuid) { return record("vms", uuid).value("node", ""); }
  // Waits until node i's record shows monitor `state`; the time it took, or nullopt.
  std::optional<std::chrono::milliseconds> wait_monitor(int i, const std::string& state, std::chrono::milliseconds timeout);
  // Waits until task `id` is finished (succeeded, failed, partial, cancelled); its record.
  nlohmann::json wait_task(const std::string& id, std::chrono::milliseconds timeout = 180s);
  // Every event recorded so far on <prefix>.evt.> whose subject starts with `prefix`.
  std::vector<Event> events(const std::string& subject_prefix = "nodeha.evt.") const;
  // The node's `monitor` events as "from->to" strings, in order.
  std::vector<std::string> monitor_changes(int i) const;

  // ---- failures
  // Power loss: every process in node i's namespace (agent, libvirtd, QEMU) killed, both links cut;
  // with `bmcs`, its chassis reads off at its BMC, which goes on answering (standby power), unless
  // `chassis_off` is false: then the node is as good as dead (its OS crashed or hung) but its
  // chassis still reads on, and a fence must power it off.
  void power_off(int i, bool chassis_off = true);
  // Links back, libvirtd and the agent started again (a reboot: guests are defined, shut off).
  void power_on(int i);
  void kill_agent(int i);   // SIGKILL, as a crash
  void start_agent(int i);  // as systemd would restart it
  void kill_controller(int c = 1);   // SIGKILL, as a crash
  void start_controller(int c = 1);  // as systemd would restart it
  // Controller c's link (management) cut at the bridge, or restored (netns.h).
  bool cut_controller(int c = 1);
  bool restore_controller(int c = 1);

  // ---- leadership
  // The controller whose /metrics (read inside its namespace) says nodeha_controller_leader 1,
  // or -1 when none does (a killed or unreadable controller counts as not leading).
  int leader() const;
  // Controller c's gauge `series` (-1 when unreadable), and the two of the lease.
  double controller_gauge(int c, const std::string& series) const;
  double leader_gauge(int c) const { return controller_gauge(c, "nodeha_controller_leader"); }
  double epoch_gauge(int c) const { return controller_gauge(c, "nodeha_controller_epoch"); }
  // Waits until controller c leads (and no other does); the time it took, or nullopt.
  std::optional<std::chrono::milliseconds> wait_leader(int c, std::chrono::milliseconds timeout);
  // Node i's "storage" health check (file_check) passes or fails from its next round on.
  void set_storage_ok(int i, bool ok);

  // ---- the end of a test
  // Stops the monitor and checks the invariants: no violation, every guest of the start runs on
  // exactly one node unless `allowed_missing` says why not, and every record names the node that
  // runs the VM. Non-fatal failures.
  void expect_invariants(const std::map<std::string, std::string>& allowed_missing = {});
  // nats-server's "Publish Violation" and "Subscription Violation" log lines so far: what a
  // process of the cluster tried beyond its role's permissions (docs/security.md). Refused logins
  // ("Authorization Violation") are not counted: cnats now and then sends a CONNECT without its
  // signature, and retries.
  std::vector<std::string> auth_violations() const;
  // Logs of every part, for a failing test.
  std::string logs() const;

  static constexpr int kMetricsPort = 9464;
  std::string agent_metrics(int i) const;  // host:port on the management network

 private:
  std::string controller_config(int c) const;
  std::string controller_metrics(int c) const;  // host:port on the management network
  std::string agent_config(int i) const;
  std::string storage_marker(int i) const;
  // The [nats] lines every host's config shares: the servers, and the replicas on a cluster.
  std::string nats_keys() const;
  std::vector<std::string> nats_urls() const;

  ClusterOptions options_;
  TempDir dir_;  // first: removed last
  TestNetwork net_;
  std::unique_ptr<BusSecurity> security_;  // the CA, the server's files and every credential
  std::vector<std::unique_ptr<BmcSim>> bmcs_;  // with `bmcs`: node i's is [i - 1]
  std::vector<std::unique_ptr<Process>> watchdogs_;  // with `self_fence`: node i's is [i - 1]
  std::vector<std::unique_ptr<Process>> old_watchdogs_;
  void start_watchdog(int i);
  std::unique_ptr<NatsServer> nats_;            // one server, or
  std::unique_ptr<NatsCluster> nats_cluster_;   // three
  std::vector<std::unique_ptr<Libvirtd>> daemons_;
  std::map<int, std::vector<std::string>> guests_;
  std::vector<std::unique_ptr<HostProcess>> controllers_;
  std::vector<std::unique_ptr<HostProcess>> agents_;
  std::vector<std::unique_ptr<HostProcess>> old_hosts_;  // dead incarnations, kept for their logs
  std::unique_ptr<AlertStack> alerts_;
  std::unique_ptr<InvariantMonitor> monitor_;
  std::unique_ptr<host::Bus> bus_;
  mutable std::mutex events_mu_;
  std::vector<Event> events_;
};

}  // namespace nodeha::test
