#include "cluster.h"

#include "process.h"
#include "task_read.h"

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <sstream>
#include <thread>

namespace nodeha::test {

namespace {

using json = nlohmann::json;

constexpr int kNatsPort = 4222;
constexpr const char* kAdmin = "admin";     // the operator: the CLI and the test's own reads

bool finished(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "partial" || state == "cancelled";
}

// Every process in network namespace `ns` (`ip netns pids`).
std::vector<pid_t> pids_in(const std::string& ns, const TempDir& dir) {
  Process ip({"ip", "netns", "pids", ns}, dir.file("pids.out"));
  ip.wait_exit(10s);
  std::vector<pid_t> out;
  std::istringstream in(ip.output());
  for (pid_t p; in >> p;) out.push_back(p);
  return out;
}

}  // namespace

Cluster::Cluster(ClusterOptions options)
    : options_(std::move(options)), net_(options_.nodes, options_.controllers) {}

std::set<std::string> Cluster::all_guests() const {
  std::set<std::string> out;
  for (const auto& [node, uuids] : guests_) out.insert(uuids.begin(), uuids.end());
  return out;
}

std::string Cluster::storage_marker(int i) const { return dir_.file(node(i) + "/storage-ok"); }

std::string Cluster::agent_metrics(int i) const {
  return net_.node_address(i, Network::kManagement) + ":" + std::to_string(kMetricsPort);
}

std::string Cluster::controller_metrics(int c) const {
  return net_.controller_address(c) + ":" + std::to_string(kMetricsPort);
}

std::vector<std::string> Cluster::nats_urls() const {
  return nats_cluster_ ? nats_cluster_->urls() : std::vector<std::string>{nats_->url()};
}

std::string Cluster::nats_keys() const {
  std::string servers;
  for (const auto& url : nats_urls()) servers += (servers.empty() ? "\"" : ", \"") + url + "\"";
  std::string out = "servers = [" + servers + "]\nreconnect_wait = \"100ms\"\n";
  if (nats_cluster_) out += "kv_replicas = " + std::to_string(nats_cluster_->size()) + "\n";
  return out;
}

std::string Cluster::controller_config(int c) const {
  std::string plugins = controller_plugin_tables();
  const std::string drain = "library = \"drain\"\n";
  plugins.insert(plugins.find(drain) + drain.size(), options_.drain_extra);
  if (options_.bmcs) {
    plugins += "[[plugin]]\nlibrary = \"fence_ipmi\"\nmethod = \"ipmi\"\n";
    for (int i = 1; i <= options_.nodes; ++i)
      plugins += "[[plugin.bmc]]\nnode = \"" + node(i) + "\"\naddress = \"" + net_.bmc_address(i) + "\"\nport = " +
                 std::to_string(bmcs_.at(i - 1)->port()) + "\nuser = \"" + bmcs_.at(i - 1)->user() +
                 "\"\npassword_file = \"" + bmcs_.at(i - 1)->password_file() + "\"\ncipher_suite = 3\n";
  }
  return "[host]\nrole = \"controller\"\nnode_id = \"" + controller_id(c) + "\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\n" + nats_keys() + security_->host_keys(controller_id(c)) +
         "[metrics]\nlisten = \"" + controller_metrics(c) + "\"\n" + plugins + options_.controller_extra;
}

std::string Cluster::agent_config(int i) const {
  const std::string mgmt = net_.node_address(i, Network::kManagement);
  const std::string biz = net_.node_address(i, Network::kBusiness);
  const std::string stor = net_.node_address(i, Network::kStorage);
  const std::string addresses = "addresses = { management = \"" + mgmt + "\", business = \"" + biz +
                                "\", storage = \"" + stor + "\" }\n";
  return "[host]\nrole = \"agent\"\nnode_id = \"" + node(i) + "\"\nplugin_path = [\"{plugins}\", \"{fixtures}\"]\n"
         "[nats]\n" + nats_keys() + "ping_interval = \"1s\"\n" +
         security_->host_keys(node(i)) + "[metrics]\nlisten = \"" + agent_metrics(i) + "\"\n"
         "[libvirt]\nuri = \"" + libvirtd(i).uri() + "\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\ndisk_path = \"/\"\n" + addresses +
         "[[plugin]]\nlibrary = \"netcheck\"\ninterval = \"1s\"\ntimeout = \"200ms\"\nfail_after = 2\n"
         "interfaces = [\"" + TestNetwork::interface(Network::kBusiness) + "\"]\n"
         "[[plugin]]\nlibrary = \"file_check\"\nname = \"storage\"\ninterval = \"1s\"\npath = \"" + storage_marker(i) + "\"\n"
         "[[plugin]]\nlibrary = \"vms\"\nsync_every = \"500ms\"\nstop_timeout = \"5s\"\n"
         // Peers reach this node's libvirtd over TCP (qemu+tcp://{address}/system, the defaults).
         "[[plugin]]\nlibrary = \"migrate\"\n" + addresses + options_.migrate_extra +
         (options_.self_fence ? "[[plugin]]\nlibrary = \"selffence\"\naddress = \"" + biz + "\"\nwatchdog = \"" +
                                    dir_.file(node(i) + "/watchdog") + "\"\nwatchdog_timeout = \"" +
                                    std::to_string(kWatchdogTimeoutMs) + "ms\"\n"
                              : "");
}

void Cluster::start_watchdog(int i) {
  if (!options_.self_fence) return;
  if (watchdogs_.size() < static_cast<size_t>(i)) watchdogs_.resize(i);
  auto& w = watchdogs_[i - 1];
  if (w) old_watchdogs_.push_back(std::move(w));
  w = std::make_unique<Process>(
      std::vector<std::string>{NODEHA_FIXTURE_DIR "/watchdog_standin", dir_.file(node(i) + "/watchdog"),
                               std::to_string(kWatchdogTimeoutMs), "ip netns pids " + net_.node_ns(i) + " | xargs -r kill -9"},
      dir_.file(node(i) + "-watchdog-" + std::to_string(old_watchdogs_.size()) + ".log"));
  ASSERT_TRUE(wait_until([&] { return w->output().find("ready") != std::string::npos; }, 10s)) << w->output();
}

bool Cluster::watchdog_fired(int i) {
  return watchdogs_.size() >= static_cast<size_t>(i) && watchdogs_[i - 1] &&
         watchdogs_[i - 1]->output().find("fired") != std::string::npos;
}

std::string Cluster::watchdog_log(int i) {
  return watchdogs_.size() >= static_cast<size_t>(i) && watchdogs_[i - 1] ? watchdogs_[i - 1]->output() : "";
}

void Cluster::start() {
  // A machine without network namespaces, veth or bridges cannot run these tests: say so loudly.
  ASSERT_TRUE(net_.ready()) << "the failure scenarios need network namespaces, veth pairs and bridges (root, "
                               "iproute2, a kernel with CONFIG_NET_NS, CONFIG_VETH, CONFIG_BRIDGE): "
                            << net_.error();
  // The bus as deployed: TLS with the cluster's own CA, every process logged in with its own
  // credential and held to its role's permissions (docs/security.md).
  BusIdentities ids{.admins = {kAdmin}, .ips = {net_.control_address()}};
  for (int c = 1; c <= options_.controllers; ++c) ids.controllers.push_back(controller_id(c));
  for (int i = 1; i <= options_.nodes; ++i) ids.nodes.push_back(node(i));
  security_ = std::make_unique<BusSecurity>(dir_.file("bus"), ids);
  ASSERT_TRUE(security_->ok()) << security_->error();
  // The test reads records and events as the operator may; it writes nothing to KV.
  if (options_.nats_servers == 1) {
    nats_ = std::make_unique<NatsServer>(
        NatsServerOptions{net_.control_ns(), net_.control_address(), kNatsPort, "", security_->server_config()});
    bus_ = nats_->client(security_->settings(nats_->settings(), kAdmin));
  } else {
    ASSERT_EQ(options_.nats_servers, 3) << "a NATS cluster here has three servers";
    nats_cluster_ = std::make_unique<NatsCluster>(NatsClusterOptions{.servers = 3,
                                                                     .include = security_->server_config(),
                                                                     .netns = net_.control_ns(),
                                                                     .address = net_.control_address(),
                                                                     .first_port = kNatsPort});
    bus_ = nats(0).client(security_->settings(nats_cluster_->settings(), kAdmin));
  }
  ASSERT_TRUE(bus_) << "no NATS client in the control plane";
  auto sub = bus_->subscribe("nodeha.evt.>", "", [this](Message m) {
    Event e{Clock::now(), m.subject, json::parse(m.data, nullptr, false)};
    std::lock_guard lock(events_mu_);
    events_.push_back(std::move(e));
  });
  ASSERT_TRUE(sub) << sub.status().message();

  // The daemons start side by side, each probing QEMU (seconds) before the test begins: a
  // long-running daemon did that long ago, and the figures must not include it.
  daemons_.resize(static_cast<size_t>(options_.nodes));
  std::vector<std::string> probe_errors(static_cast<size_t>(options_.nodes));
  {
    std::vector<std::thread> starting;
    for (int i = 1; i <= options_.nodes; ++i)
      starting.emplace_back([this, i, &probe_errors] {
        daemons_[i - 1] = std::make_unique<Libvirtd>(LibvirtdOptions{net_.node_ns(i)}, 60s);
        if (daemons_[i - 1]->running()) daemons_[i - 1]->probe_qemu(&probe_errors[i - 1]);
      });
    for (auto& t : starting) t.join();
  }
  for (int i = 1; i <= options_.nodes; ++i) {
    ASSERT_TRUE(libvirtd(i).running()) << node(i) << ":\n" << libvirtd(i).log();
    ASSERT_EQ(probe_errors[i - 1], "") << node(i);
  }
  std::vector<InvariantMonitor::Node> watched;
  for (int i = 1; i <= options_.nodes; ++i) {
    watched.push_back({node(i), libvirtd(i).uri()});
    guests_[i];
    for (int k = 1; k <= (options_.guests.count(i) ? options_.guests.at(i) : 0); ++k) {
      std::string uuid = Libvirtd::guest_uuid(i * 100 + k), error;
      ASSERT_TRUE(libvirtd(i).define_and_start("vm-" + std::to_string(i) + "-" + std::to_string(k), uuid, 64, &error))
          << error;
      guests_[i].push_back(uuid);
    }
    for (int k = 1; k <= (options_.disk_guests.count(i) ? options_.disk_guests.at(i) : 0); ++k) {
      std::string uuid = Libvirtd::guest_uuid(i * 100 + 50 + k), error;
      ASSERT_TRUE(make_raw_disk(libvirtd(i), disk_guest_path(uuid), 64, true, &error)) << error;
      ASSERT_TRUE(libvirtd(i).define_and_start_with_disk("disk-" + std::to_string(i) + "-" + std::to_string(k), uuid, 64,
                                                         {disk_guest_path(uuid), "raw"}, &error))
          << error;
      guests_[i].push_back(uuid);
    }
    std::filesystem::create_directories(dir_.file(node(i) + "/state"));
    dir_.write(node(i) + "/storage-ok", "");
  }
  monitor_ = std::make_unique<InvariantMonitor>(watched);
  for (int i = 1; options_.bmcs && i <= options_.nodes; ++i) {
    ASSERT_TRUE(net_.add_bmc(i)) << net_.error();
    // Powered off, the machine takes everything running in the node's namespace with it.
    bmcs_.push_back(std::make_unique<BmcSim>(BmcSimOptions{
        .netns = net_.bmc_ns(i), .address = net_.bmc_address(i), .port = 623,
        .on_power_off = "ip netns pids " + net_.node_ns(i) + " | xargs -r kill -9"}));
    ASSERT_TRUE(bmcs_.back()->ok()) << node(i) << "'s BMC: " << bmcs_.back()->error();
  }

  controllers_.resize(static_cast<size_t>(options_.controllers));
  start_controller(1);
  ASSERT_TRUE(controller(1)->process().running()) << controller(1)->log();
  if (options_.controllers > 1) {
    // Controller 1 leads before the others start: every test begins from the same leader.
    ASSERT_TRUE(wait_leader(1, 15s)) << "controller 1 did not lead\n" << logs();
    for (int c = 2; c <= options_.controllers; ++c) {
      start_controller(c);
      ASSERT_TRUE(controller(c)->process().running()) << controller(c)->log();
    }
  }
  agents_.resize(static_cast<size_t>(options_.nodes));
  for (int i = 1; i <= options_.nodes; ++i) {
    start_watchdog(i);
    start_agent(i);
  }
  for (int i = 1; i <= options_.nodes; ++i) ASSERT_TRUE(agent(i)->process().running()) << agent(i)->log();
  ASSERT_TRUE(wait_until([&] {
    for (int i = 1; i <= options_.nodes; ++i) {
      if (monitor_state(i) != "normal") return false;
      for (const auto& uuid : guests_of(i))
        if (vm_node(uuid) != node(i)) return false;
    }
    return true;
  }, 30s)) << "the cluster did not come up: every node normal, every guest recorded on its node\n" << logs();

  if (options_.alerting) {
    std::vector<std::string> agent_targets;
    for (int i = 1; i <= options_.nodes; ++i) agent_targets.push_back(agent_metrics(i));
    AlertStackOptions o;
    o.netns = net_.control_ns();
    std::vector<std::string> controller_targets;
    for (int c = 1; c <= options_.controllers; ++c) controller_targets.push_back(controller_metrics(c));
    o.jobs = {{"nodeha-controller", controller_targets}, {"nodeha-agent", agent_targets}};
    alerts_ = std::make_unique<AlertStack>(o);
    ASSERT_TRUE(alerts_->ready()) << alerts_->error();
    // Every target scraped and the rules evaluated for every node: from here on an alarm can fire.
    ASSERT_TRUE(wait_until([&] {
      auto up = alerts_->query("up == 1");
      if (up.size() != static_cast<size_t>(options_.nodes + options_.controllers)) return false;
      for (int i = 1; i <= options_.nodes; ++i)
        if (alerts_->query_value("nodeha:node_unreachable:in_service{node=\"" + node(i) + "\"}") != 0.0) return false;
      return true;
    }, 30s)) << alerts_->query("up").dump() << "\n" << alerts_->logs();
  }
  ASSERT_TRUE(monitor_->wait_rounds(2)) << "the invariant monitor cannot read every node";
}

Cluster::~Cluster() {
  if (monitor_) monitor_->stop();
  alerts_.reset();
  // Agents and controller first (they would act on what follows), then the daemons and guests.
  agents_.clear();
  controllers_.clear();
  if (bus_) bus_->close(2s);
  bus_.reset();
  daemons_.clear();
  nats_.reset();
  nats_cluster_.reset();
}

CliRun Cluster::cli(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = security_->cli_args(kAdmin);
  std::string servers;
  for (const auto& url : nats_urls()) servers += (servers.empty() ? "" : ",") + url;
  argv.insert(argv.end(), {"--server", servers, "--json"});
  argv.insert(argv.end(), args.begin(), args.end());
  return run_cli(argv, dir_, timeout, net_.control_ns());
}

// No credential: `nodeha local` speaks to the agent's unix socket only, never to NATS.
CliRun Cluster::local(int i, const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{"--socket", dir_.file(node(i) + "/state/local.sock"), "--json", "local"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_cli(argv, dir_, timeout, net_.node_ns(i));
}

json Cluster::record(const std::string& bucket, const std::string& key) {
  if (bucket == "tasks") return read_task(*bus_, key);
  auto e = bus_->kv_get(bucket, key);
  if (!e) return json::object();
  auto j = json::parse(e->value, nullptr, false);
  return j.is_object() ? j : json::object();
}

std::optional<std::chrono::milliseconds> Cluster::wait_monitor(int i, const std::string& state,
                                                               std::chrono::milliseconds timeout) {
  auto started = Clock::now();
  if (!wait_until([&] { return monitor_state(i) == state; }, timeout)) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
}

json Cluster::wait_task(const std::string& id, std::chrono::milliseconds timeout) {
  json t;
  wait_until([&] {
    t = record("tasks", id);
    return finished(t.value("state", ""));
  }, timeout);
  return t;
}

std::vector<Cluster::Event> Cluster::events(const std::string& subject_prefix) const {
  std::lock_guard lock(events_mu_);
  std::vector<Event> out;
  for (const auto& e : events_)
    if (e.subject.rfind(subject_prefix, 0) == 0) out.push_back(e);
  return out;
}

std::vector<std::string> Cluster::monitor_changes(int i) const {
  std::vector<std::string> out;
  for (const auto& e : events("nodeha.evt.node." + node(i)))
    if (e.body.is_object() && e.body.value("event", "") == "monitor")
      out.push_back(e.body.value("from", "") + "->" + e.body.value("to", ""));
  return out;
}

void Cluster::power_off(int i, bool chassis_off) {
  net_.cut_all(i);
  // The watchdog loses power with its node.
  if (watchdogs_.size() >= static_cast<size_t>(i) && watchdogs_[i - 1]) {
    watchdogs_[i - 1]->signal(SIGKILL);
    watchdogs_[i - 1]->wait_exit(10s);
  }
  if (!bmcs_.empty() && chassis_off) {
    EXPECT_TRUE(bmcs_.at(i - 1)->lose_power()) << bmcs_.at(i - 1)->log();
  }
  // Killed again each round: a process forked meanwhile (libvirtd starting a helper) dies too.
  std::vector<pid_t> left;
  bool gone = wait_until([&] {
    left.clear();
    for (pid_t p : pids_in(net_.node_ns(i), dir_))
      if (::kill(p, SIGKILL) == 0 && read_file("/proc/" + std::to_string(p) + "/stat").find(") Z ") == std::string::npos)
        left.push_back(p);
    return left.empty() && !libvirtd(i).running();
  }, 15s);
  std::string which;
  for (pid_t p : left) which += "\n  " + std::to_string(p) + ": " + read_file("/proc/" + std::to_string(p) + "/cmdline");
  EXPECT_TRUE(gone) << "processes of " << node(i) << " survived SIGKILL:" << which;
  if (gone) monitor_->set_down(node(i), true);
  if (!bmcs_.empty() && chassis_off) {
    EXPECT_TRUE(wait_until([&] { return bmcs_.at(i - 1)->power_status() == std::optional<bool>(false); }, 10s))
        << node(i) << "'s chassis still reads on\n" << bmcs_.at(i - 1)->log();
  }
  if (agents_[i - 1]) {
    agents_[i - 1]->process().wait_exit(10s);
    old_hosts_.push_back(std::move(agents_[i - 1]));
  }
}

void Cluster::power_on(int i) {
  EXPECT_TRUE(net_.restore_all(i)) << net_.error();
  monitor_->set_down(node(i), false);
  EXPECT_TRUE(libvirtd(i).start(60s)) << libvirtd(i).log();
  start_watchdog(i);
  start_agent(i);
}

void Cluster::kill_agent(int i) {
  auto& a = agents_[i - 1];
  if (!a) return;
  a->process().signal(SIGKILL);
  a->process().wait_exit(10s);
  old_hosts_.push_back(std::move(a));
}

void Cluster::start_agent(int i) {
  agents_[i - 1] = std::make_unique<HostProcess>(agent_config(i), std::vector<std::string>{}, net_.node_ns(i),
                                                 dir_.file(node(i) + "/state"));
  EXPECT_TRUE(agents_[i - 1]->wait_ready()) << agents_[i - 1]->log();
}

void Cluster::kill_controller(int c) {
  auto& ctl = controllers_.at(c - 1);
  if (!ctl) return;
  ctl->process().signal(SIGKILL);
  ctl->process().wait_exit(10s);
  old_hosts_.push_back(std::move(ctl));
}

void Cluster::start_controller(int c) {
  const std::string state = controller_id(c) + "/state";
  std::filesystem::create_directories(dir_.file(state));
  auto& ctl = controllers_.at(c - 1);
  ctl = std::make_unique<HostProcess>(controller_config(c), std::vector<std::string>{}, net_.controller_ns(c),
                                      dir_.file(state));
  EXPECT_TRUE(ctl->wait_ready()) << ctl->log();
}

bool Cluster::cut_controller(int c) { return net_.cut_controller(c); }
bool Cluster::restore_controller(int c) { return net_.restore_controller(c); }

double Cluster::controller_gauge(int c, const std::string& series) const {
  const auto& ctl = controllers_.at(c - 1);
  if (!ctl) return -1;
  const std::string text = ctl->metrics();
  return text.empty() ? -1 : metric_value(text, series);
}

int Cluster::leader() const {
  int found = -1;
  for (int c = 1; c <= options_.controllers; ++c)
    if (leader_gauge(c) == 1) {
      if (found != -1) return -1;  // two gauges at 1 for a moment: no single leader to name
      found = c;
    }
  return found;
}

std::optional<std::chrono::milliseconds> Cluster::wait_leader(int c, std::chrono::milliseconds timeout) {
  auto started = Clock::now();
  if (!wait_until([&] { return leader() == c; }, timeout)) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
}

void Cluster::set_storage_ok(int i, bool ok) {
  if (ok)
    dir_.write(node(i) + "/storage-ok", "");
  else
    std::filesystem::remove(storage_marker(i));
}

void Cluster::expect_invariants(const std::map<std::string, std::string>& allowed_missing) {
  monitor_->stop();
  EXPECT_EQ(monitor_->violations_text(), "") << "one and only one running copy of a VM, ever";
  monitor_->expect_all_running(all_guests(), allowed_missing);
  // Records agree with libvirt: each running guest's record names the node that runs it and says
  // it runs (records follow libvirt within a few syncs).
  std::map<std::string, std::string> runs_on;
  for (int i = 1; i <= options_.nodes; ++i)
    if (libvirtd(i).running())
      for (const auto& d : libvirtd(i).domains())
        if (d.state == "running") runs_on[d.uuid] = node(i);
  for (const auto& uuid : all_guests()) {
    if (!runs_on.count(uuid)) continue;
    auto agrees = [&] {
      auto r = record("vms", uuid);
      return r.value("node", "") == runs_on[uuid] && r.value("state", "") == "running";
    };
    if (wait_until(agrees, 15s)) continue;
    auto r = record("vms", uuid);
    r.erase("xml");
    ADD_FAILURE() << "libvirt runs " << uuid << " on " << runs_on[uuid] << ", its record says otherwise: " << r.dump();
  }
}

std::vector<std::string> Cluster::auth_violations() const {
  std::vector<std::string> out;
  std::string text = nats_ ? nats_->log() : "";
  if (nats_cluster_)
    for (size_t i = 0; i < nats_cluster_->size(); ++i) text += nats_cluster_->server(i).log();
  std::istringstream log(text);
  for (std::string line; std::getline(log, line);)
    if (line.find("Publish Violation") != std::string::npos || line.find("Subscription Violation") != std::string::npos)
      out.push_back(line);
  return out;
}

std::string Cluster::logs() const {
  std::string out;
  auto add = [&](const std::string& name, const std::string& text) {
    std::string t = text.size() > 20000 ? "...\n" + text.substr(text.size() - 20000) : text;
    out += "---------- " + name + " ----------\n" + t + "\n";
  };
  for (const auto& old : old_hosts_) add("earlier host " + old->config_path(), old->log());
  for (int c = 1; c <= static_cast<int>(controllers_.size()); ++c)
    if (controllers_[c - 1]) add("controller " + controller_id(c), controllers_[c - 1]->log());
  for (int i = 1; i <= static_cast<int>(agents_.size()); ++i)
    if (agents_[i - 1]) add(node(i) + " agent", agents_[i - 1]->log());
  if (alerts_) add("webhook", alerts_->webhook().text());
  // Where a permission the cluster lacks shows: "Permissions Violation for Publish to ...".
  if (nats_) add("nats-server", nats_->log());
  if (nats_cluster_)
    for (size_t i = 0; i < nats_cluster_->size(); ++i) add("nats-server " + NatsCluster::name(i), nats_cluster_->server(i).log());
  return out;
}

}  // namespace nodeha::test
