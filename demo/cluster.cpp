#include "cluster.h"

#include "browser.h"
#include "credential.h"
#include "host_process.h"
#include "wait.h"

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace nodeha::demo {

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

const char* const kNodes[] = {"node-a", "node-b", "node-c"};
const char* const kRoles[] = {"web", "db", "app"};  // guests' names on node-a, node-b, node-c
// Their node_ids and bus identities: one leads (the lease), the other waits to take over.
const char* const kControllers[] = {"controller-1", "controller-2"};
const char* const kAdmin = "admin";  // the operator's CLI and this program's own reads
const char* const kViewer = "viewer";  // an operator who may list and show only: scripts/demo shows a refusal

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out.empty() ? "none" : out;
}

}  // namespace

Cluster::Cluster(Options options, Say say, std::function<bool()> interrupted)
    : options_(std::move(options)), say_(std::move(say)), interrupted_(std::move(interrupted)) {}

Cluster::~Cluster() {
  monitoring_.reset();
  if (bus_) bus_->close(1s);
  bus_.reset();
  // Agents before the controller, so that no node turns unreachable on the way; side by side,
  // since a libvirtd takes seconds to stop.
  std::vector<std::thread> stopping;
  for (auto& n : nodes_) stopping.emplace_back([&n] { n.reset(); });
  for (auto& t : stopping) t.join();
  nodes_.clear();
  for (auto& c : controllers_) {
    if (c && c->running()) {
      c->signal(SIGTERM);
      if (!c->wait_exit(10s)) c->signal(SIGKILL);
    }
    c.reset();
  }
  nats_.reset();
}

bool Cluster::wait(const std::function<bool()>& cond, int seconds) {
  bool interrupted = false;
  bool held = test::wait_until([&] { return (interrupted = interrupted_()) || cond(); }, std::chrono::seconds(seconds));
  return held && !interrupted;
}

Node* Cluster::node(const std::string& name) {
  for (auto& n : nodes_)
    if (n->name() == name) return n.get();
  say_("no node " + name);
  return nullptr;
}

json Cluster::record(const std::string& bucket, const std::string& key) {
  auto e = bus_->kv_get(bucket, key);
  auto j = e ? json::parse(e->value, nullptr, false) : json::object();
  return j.is_object() ? j : json::object();
}

bool Cluster::start_nodes(Backend backend) {
  nodes_.clear();
  for (int i = 0; i < 3; ++i) {
    std::vector<Guest> guests;
    for (int g = 1; g <= options_.guests_per_node; ++g) {
      char uuid[64];
      std::snprintf(uuid, sizeof uuid, "de300000-0000-4000-8000-%06d%06d", i + 1, g);
      guests.push_back({std::string(kRoles[i]) + "-" + std::to_string(g), uuid});
    }
    nodes_.push_back(std::make_unique<Node>(kNodes[i], options_.dir + "/" + kNodes[i], backend, guests));
  }
  // The three daemons probe QEMU at their first start (seconds each): side by side.
  std::vector<std::string> errors(nodes_.size());
  std::vector<std::thread> starting;
  for (size_t i = 0; i < nodes_.size(); ++i)
    starting.emplace_back([&, i] { nodes_[i]->start_hypervisor(&errors[i]); });
  for (auto& t : starting) t.join();
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (errors[i].empty() && !nodes_[i]->start_guests(&errors[i])) errors[i] = "guest: " + errors[i];
    if (!errors[i].empty()) {
      say_(nodes_[i]->name() + ": " + errors[i]);
      return false;
    }
  }
  return true;
}

bool Cluster::start_controller(size_t i) {
  const std::string name = kControllers[i];
  if (controller_ports_[i] == 0) controller_ports_[i] = test::free_port();  // the same after a restart
  const std::string dir = options_.dir + "/" + name;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/controller.toml")
      << "[host]\nrole = \"controller\"\nnode_id = \"" + name + "\"\nplugin_path = [\"" NODEHA_PLUGIN_DIR "\"]\n"
         "state_dir = \"" + dir + "/state\"\n"
         "[nats]\n" + nats_keys(name) +
         "[metrics]\nlisten = \"" + controller_address(i) + "\"\n" +
         test::controller_plugin_tables() + web_table(i);
  auto& c = controllers_[i];
  c = std::make_unique<test::Process>(std::vector<std::string>{NODEHA_HOST_BIN, "--config", dir + "/controller.toml"},
                                      dir + "/controller.log");
  if (wait([&] { return !c->running() || test::http_fetch(controller_address(i), "/metrics").status == 200; }, 15) &&
      c->running())
    return true;
  say_(name + (c->running() ? " did not serve /metrics within 15 s" : " exited") + "; its log: " + c->log_path());
  return false;
}

std::string Cluster::web_table(size_t i) {
  if (web_ports_[i] == 0) web_ports_[i] = test::free_port();
  std::string servers;
  for (const auto& url : nats_->websocket_urls()) servers += (servers.empty() ? "\"" : ", \"") + url + "\"";
  return "[[plugin]]\nlibrary = \"web\"\nlisten = \"127.0.0.1:" + std::to_string(web_ports_[i]) +
         "\"\ntls_cert = \"" + options_.dir + "/bus/server-cert.pem\"\ntls_key = \"" + options_.dir +
         "/bus/server-key.pem\"\nfiles = \"" NODEHA_SOURCE_DIR "/web\"\nservers = [" + servers + "]\n";
}

void Cluster::say_web_page() {
  std::string page = "https://127.0.0.1:" + std::to_string(web_ports_[0]) + "/";
  auto cred = auth::parse_credential(test::read_file(security_->credential(kAdmin)));
  say_("web page (follow the story live): " + page + " (controller-2 serves it too, on port " +
       std::to_string(web_ports_[1]) + "); its certificate is the bus's: trust " + security_->ca() +
       " in your browser, or start chromium with --ignore-certificate-errors-spki-list=" +
       test::spki_pin(options_.dir + "/bus/server-cert.pem"));
  if (cred)
    say_("DEMO CONVENIENCE ONLY (it puts the admin's secret seed in a link; never do this with a real identity): " +
         page + "#servers=" + nats_->websocket_urls().front() + "&user=" + kAdmin + "&seed=" + cred->seed + "&connect=1");
}

std::string Cluster::controller_address(size_t i) const { return "127.0.0.1:" + std::to_string(controller_ports_[i]); }

int Cluster::leader() {
  for (size_t i = 0; i < std::size(controllers_); ++i) {
    if (!controllers_[i] || !controllers_[i]->running()) continue;
    auto r = test::http_fetch(controller_address(i), "/metrics");
    if (r.status == 200 && test::metric_value(r.body, "nodeha_controller_leader") == 1) return static_cast<int>(i);
  }
  return -1;
}

bool Cluster::plugins_running(size_t c) {
  auto r = test::http_fetch(controller_address(c), "/metrics");
  if (r.status != 200) return false;
  std::istringstream lines(r.body);
  int up = 0;
  for (std::string l; std::getline(lines, l);) {
    if (l.rfind("nodeha_plugin_up{", 0) != 0) continue;
    if (l.substr(l.rfind(' ') + 1) != "1") return false;
    ++up;
  }
  return up > 0;
}

bool Cluster::kill_leader() {
  int was = leader();
  if (was < 0) {
    say_("no controller leads now");
    return false;
  }
  // As when the leader's machine loses power: the nats-server it is connected to dies with it.
  auto server = nats_->serving("nodeha-controller-" + std::string(kControllers[was]));
  std::vector<std::string> groups;  // the Raft groups that lose their leader with the server
  if (server) groups = nats_->groups_led_by(*server);
  controllers_[was]->signal(SIGKILL);
  auto killed = std::chrono::steady_clock::now();
  if (server) nats_->stop(*server, SIGKILL);
  controllers_[was]->wait_exit(5s);
  auto since_kill = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count(); };
  // When the dead server led the lease's stream, JetStream elects another leader for it first:
  // nobody can take the lease before. Elections took 4-19 s in the demo on this 2-core machine,
  // over 30 s beside a busy loop: each wait below allows 60 s.
  int now = -1;
  if (!wait([&] { return (now = leader()) >= 0; }, 60)) {
    say_(std::string(kControllers[was]) + " killed; no other controller leads within 60 s");
    return false;
  }
  double led = since_kill();
  // Until each group the dead server led has a new leader, what needs that group (a KV list needs
  // the meta group, a write the stream's leader) gets no answer: commands say `unavailable` and
  // change nothing, the new leader's plugins retry their start. The story goes on once all are led.
  double elected = 0;
  if (server) {
    if (!wait([&] { return nats_->all_groups_led(); }, 60)) {
      say_("the two nats-servers left did not elect a leader for every JetStream group within 60 s");
      return false;
    }
    elected = since_kill();
  }
  // The new leader's plugins start once it leads and can read the buckets; commands are answered
  // from then on.
  if (!wait([&] { return plugins_running(static_cast<size_t>(now)); }, 60)) {
    say_(std::string(kControllers[now]) + " leads, but its plugins do not all run within 60 s");
    return false;
  }
  auto m = test::http_fetch(controller_address(now), "/metrics");
  char line[640];
  std::snprintf(line, sizeof line,
                "%s%s killed (kill -9); %s leads %.1f s later, epoch %.0f; its plugins run %.1f s after the kill and "
                "resume the unfinished tasks from the bucket",
                kControllers[was], server ? (" and the nats-server it was connected to, " + test::NatsCluster::name(*server) + ",").c_str() : "",
                kControllers[now], led, test::metric_value(m.body, "nodeha_controller_epoch"), since_kill());
  say_(line);
  if (server) {
    std::string name = test::NatsCluster::name(*server), listed;
    for (const auto& g : groups) listed += (listed.empty() ? "" : ", ") + g;
    if (groups.empty())
      say_(name + " led no JetStream group: nothing had to be elected again");
    else {
      std::snprintf(line, sizeof line,
                    "%s led %s: the two servers left elected new leaders %.1f s after the kill (Raft; until then a "
                    "command that needs one answers `unavailable`, changes nothing, and the controller retries)",
                    name.c_str(), listed.c_str(), elected);
      say_(line);
    }
    nats_->start(*server);
    if (!wait([&] { return nats_->all_groups_led(); }, 60)) {
      say_("nats-server " + name + " started again but did not rejoin the JetStream cluster within 60 s");
      return false;
    }
    say_("nats-server " + name + " started again: it rejoins the cluster and catches up");
  }
  if (!start_controller(static_cast<size_t>(was))) return false;
  say_(std::string(kControllers[was]) + " started again: it follows (log " + controllers_[was]->log_path() + ")");
  return true;
}

std::string Cluster::nats_keys(const std::string& identity) const {
  std::string servers;
  for (const auto& url : nats_->urls()) servers += (servers.empty() ? "\"" : ", \"") + url + "\"";
  return "servers = [" + servers + "]\nkv_replicas = " + std::to_string(nats_->size()) +
         "\nreconnect_wait = \"100ms\"\n" + security_->host_keys(identity);
}

bool Cluster::start() {
  std::filesystem::create_directories(options_.dir);
  test::BusIdentities ids{.controllers = {kControllers[0], kControllers[1]}, .admins = {kAdmin}, .viewers = {kViewer}};
  for (const char* n : kNodes) ids.nodes.push_back(n);
  security_ = std::make_unique<test::BusSecurity>(options_.dir + "/bus", ids);
  if (!security_->ok()) {
    say_("the bus's CA and credentials could not be made: " + security_->error());
    return false;
  }
  // Three servers clustered as config/nats/cluster/ deploys them: one may die and nothing stops.
  // Each server also serves the web page's browsers over wss, with the bus's certificate.
  nats_ = std::make_unique<test::NatsCluster>(test::NatsClusterOptions{
      .include = security_->server_config(), .websocket_cert = options_.dir + "/bus/server-cert.pem",
      .websocket_key = options_.dir + "/bus/server-key.pem"});
  if (nats_->wait_meta_leader(5s).empty()) {
    say_("the three nats-servers did not form a JetStream cluster (Debian package nats-server; first server's log: " +
         nats_->server(0).log() + ")");
    return false;
  }
  bus_ = nats_->server(0).client(security_->settings(nats_->settings(), kAdmin));
  if (!bus_) {
    say_("nats-server did not take a connection (its log: " + nats_->server(0).log() + ")");
    return false;
  }
  say_("3 nats-servers -js, clustered (JetStream, Raft; buckets and the event stream replicated x3) on " +
       nats_->urls_csv() + " (stores in a temp dir), config/nats/nats-server.conf as shipped");
  say_("bus: TLS with a CA made by `" + security_->init_command() +
       "`; every process logs in with its own credential and is held to its role (agent node-a may speak only for "
       "node-a, hears only requests for node-a and writes no bucket; only the controller sends to agents and writes "
       "records; the operator `admin` may run every command, `viewer` only list and show): docs/security.md");

  backend_ = options_.force_test_driver ? Backend::TestDriver : Backend::Qemu;
  if (backend_ == Backend::Qemu && !start_nodes(Backend::Qemu)) {
    if (interrupted_()) return false;  // Ctrl-C reached the daemons too: no fallback
    say_("QEMU guests cannot run here (above): FALLING BACK TO THE LIBVIRT TEST DRIVER (guests live inside each "
         "agent; no live migration)");
    backend_ = Backend::TestDriver;
  }
  if (backend_ == Backend::TestDriver && !start_nodes(Backend::TestDriver)) return false;
  for (auto& n : nodes_) {
    std::vector<std::string> names;
    for (const auto& g : n->guests()) names.push_back(g.name);
    say_(n->name() + ": " + (backend_ == Backend::Qemu ? "isolated libvirtd " : "libvirt test driver ") + n->uri() +
         ", guests " + join(names) + (backend_ == Backend::Qemu ? " (QEMU, 64 MiB, diskless)" : ""));
  }

  // The first leads (it finds no lease), the second waits to take over.
  if (interrupted_() || !start_controller(0) || !start_controller(1)) return false;
  say_("controllers controller-1 (leads) and controller-2 (follows, ready to take over): heartbeat, scheduler, vms, "
       "tasks, migrate, drain, rebuild, web; logs " + options_.dir + "/controller-*/controller.log");
  say_web_page();
  bus_->subscribe("nodeha.evt.vm.>", "", [this](Message m) {
    auto event = json::parse(m.data, nullptr, false);
    if (!event.is_object()) return;
    if (!event.contains("uuid")) event["uuid"] = m.subject.substr(m.subject.rfind('.') + 1);  // evt.vm.<uuid>
    std::lock_guard lock(events_mu_);
    events_.push_back(event);
    std::ofstream(options_.dir + "/events.jsonl", std::ios::app) << m.subject << " " << m.data << "\n";
  });
  for (auto& n : nodes_) {
    std::string error;
    if (interrupted_()) return false;
    if (!n->start_agent(nats_keys(n->name()), &error)) {
      say_(error);
      return false;
    }
    say_("agent " + n->name() + ": heartbeat, vms, migrate; log " + n->agent_log());
  }
  bool settled = wait([&] {
    for (auto& n : nodes_) {
      if (record("nodes", n->name()).value("monitor", "") != "normal") return false;
      for (const auto& g : n->guests())
        if (record("vms", g.uuid).value("node", "") != n->name()) return false;
    }
    return true;
  }, 60);
  if (!settled) {
    if (!interrupted_()) say_("the nodes were not all normal with their guests recorded within 60 s");
    return false;
  }

  if (interrupted_()) return false;
  monitoring_ = std::make_unique<Monitoring>(options_.dir);
  std::vector<std::string> agents;
  for (auto& n : nodes_) agents.push_back(n->metrics_address());
  std::string error;
  if (!monitoring_->start({controller_address(0), controller_address(1)}, agents, &error)) {
    say_(error);
    return false;
  }
  if (!wait([&] { return monitoring_->targets_up(2 + nodes_.size()); }, 30)) {
    if (!interrupted_()) say_("Prometheus did not scrape all " + std::to_string(2 + nodes_.size()) + " hosts within 30 s");
    return false;
  }
  say_("Prometheus on http://" + monitoring_->prometheus_address() + " (shipped rules), Alertmanager on http://" +
       monitoring_->alertmanager_address());
  write_env();
  return true;
}

void Cluster::write_env() {
  std::ofstream env(options_.dir + "/cluster.env");
  env << "NODEHA_SERVER=" << nats_->urls_csv() << "\n"
      << "NODEHA_CREDS=" << security_->credential(kAdmin) << "\n"
      << "NODEHA_TLS_CA=" << security_->ca() << "\n"
      << "DEMO_VIEWER_CREDS=" << security_->credential(kViewer) << "\n"
      << "DEMO_WEB_PAGE=https://127.0.0.1:" << web_ports_[0] << "/\n"
      << "DEMO_BACKEND=" << (backend_ == Backend::Qemu ? "qemu" : "test") << "\n"
      << "DEMO_PROMETHEUS=http://" << monitoring_->prometheus_address() << "\n"
      << "DEMO_ALERTMANAGER=http://" << monitoring_->alertmanager_address() << "\n"
      << "DEMO_NOTIFICATIONS=" << monitoring_->notifications_path() << "\n";
  for (auto& n : nodes_) {
    std::string var = "DEMO_URI_" + n->name().substr(5);  // DEMO_URI_a, ...
    env << var << "='" << n->uri() << "'\n";
  }
}

bool Cluster::kill_node(const std::string& name) {
  Node* n = node(name);
  if (!n) return false;
  lost_[name] = n->power_off();
  std::vector<std::string> names;
  for (const auto& g : lost_[name]) names.push_back(g.name);
  say_(name + " lost power: its agent" + (backend_ == Backend::Qemu ? ", its libvirtd" : "") +
       " and its guests (" + join(names) + ") were killed (SIGKILL)");
  return true;
}

bool Cluster::power_on_node(const std::string& name) {
  Node* n = node(name);
  if (!n) return false;
  std::vector<std::string> started;
  std::string error;
  if (!n->power_on(&started, &error)) {
    say_(error);
    return false;
  }
  if (backend_ == Backend::Qemu)
    say_(name + " is back: its libvirtd restarted with its old guests still defined, shut off (" + join(started) +
         "): nodeha keeps autostart off, so nothing starts them before the agent has looked");
  else
    say_(name + " is back: its test driver will hold its old guests again, running (" + join(started) +
         "), as soon as its agent starts");
  return true;
}

bool Cluster::start_agent(const std::string& name) {
  Node* n = node(name);
  if (!n) return false;
  std::string error;
  if (!n->start_agent(nats_keys(n->name()), &error)) {
    say_(error);
    return false;
  }
  say_("the agent of " + name + " started (log " + n->agent_log() + ")");
  return true;
}

bool Cluster::wait_node(const std::string& name, const std::string& key, const std::string& value, int seconds) {
  json last;
  bool held = wait([&] {
    last = record("nodes", name);
    if (key == "lock") {
      bool free = !last.contains("lock") || last["lock"].is_null();
      return !last.empty() && free == (value == "free");
    }
    return last.value(key, "") == value;
  }, seconds);
  if (!held && !interrupted_())
    say_(name + ": " + key + " did not become " + value + " within " + std::to_string(seconds) + " s; its record: " +
         last.dump());
  return held;
}

bool Cluster::wait_empty(const std::string& name, int seconds) {
  Node* n = node(name);
  if (!n) return false;
  std::vector<std::string> left;
  bool held = wait([&] {
    left.clear();
    auto keys = bus_->kv_list("vms");
    if (!keys) return false;
    for (const auto& e : keys.value()) {
      auto r = json::parse(e.value, nullptr, false);
      if (!e.deleted && r.is_object() && r.value("node", "") == name) left.push_back(r.value("name", e.key) + " (record)");
    }
    if (n->libvirtd() && n->libvirtd()->running())
      for (const auto& d : n->libvirtd()->domains())
        if (d.state == "running") left.push_back(d.name + " (running)");
    return left.empty();
  }, seconds);
  if (!held && !interrupted_()) say_(name + " still has " + join(left) + " after " + std::to_string(seconds) + " s");
  return held;
}

bool Cluster::wait_running(int seconds) {
  std::vector<std::string> other;
  bool held = wait([&] {
    other.clear();
    for (auto& n : nodes_)
      for (const auto& g : n->guests()) {
        auto r = record("vms", g.uuid);
        if (r.value("state", "") != "running") other.push_back(g.name + " " + r.value("state", "unrecorded"));
      }
    return other.empty();
  }, seconds);
  if (!held && !interrupted_())
    say_("not every VM is recorded running after " + std::to_string(seconds) + " s: " + join(other));
  return held;
}

bool Cluster::wait_stale(const std::string& name, int seconds) {
  std::vector<std::string> missing;
  bool held = wait([&] {
    std::lock_guard lock(events_mu_);
    missing.clear();
    for (const auto& g : lost_[name]) {
      bool seen = false;
      for (const auto& e : events_)
        seen = seen || (e.value("event", "") == "stale_copy_removed" && e.value("node", "") == name &&
                        e.value("uuid", "") == g.uuid);
      if (!seen) missing.push_back(g.name);
    }
    return missing.empty();
  }, seconds);
  if (!held && !interrupted_())
    say_("no stale_copy_removed event from " + name + " within " + std::to_string(seconds) + " s for " + join(missing));
  return held;
}

bool Cluster::kept_off(const std::string& name, const std::string& lost) {
  std::string management = record("nodes", name).value("management", "?");
  std::vector<std::string> landed;
  for (const auto& g : lost_[lost])
    if (record("vms", g.uuid).value("node", "") == name) landed.push_back(g.name);
  if (management != "disabled") say_(name + " is " + management + ", not disabled");
  if (!landed.empty()) say_(join(landed) + " of " + lost + " were put on " + name + ", the node under maintenance");
  if (management == "disabled" && landed.empty())
    say_(name + " is still disabled, and none of " + lost + "'s " + std::to_string(lost_[lost].size()) +
         " VM(s) is recorded on it");
  return management == "disabled" && landed.empty() && !lost_[lost].empty();
}

// The operator may not ask agents (docs/security.md); an agent may ask another for its vm.list
// (a VM's previous owner, before a claim). The test driver's guests live in the agents: they are
// asked with node-c's credential, that read-only right and no other.
host::Bus* Cluster::agent_asker() {
  if (!asker_) asker_ = nats_->server(0).client(security_->settings(nats_->settings(), kNodes[2]));
  return asker_.get();
}

bool Cluster::running_guests(std::map<std::string, std::vector<std::string>>* out, std::string* error) {
  for (auto& n : nodes_) {
    if (n->libvirtd()) {
      if (!n->libvirtd()->answers()) {
        *error = "the libvirtd of " + n->name() + " does not answer";
        return false;
      }
      for (const auto& d : n->libvirtd()->domains())
        if (d.state == "running") (*out)[d.uuid].push_back(n->name());
      continue;
    }
    // Test driver: the guests live in the agent; ask it.
    host::Bus* asker = agent_asker();
    if (!asker) {
      *error = "cannot connect to NATS as " + std::string(kNodes[2]) + " to ask the agents";
      return false;
    }
    auto r = asker->request("nodeha.agent." + n->name() + ".vm.list", "{}", 5s);
    auto reply = r ? json::parse(r.value(), nullptr, false) : json();
    if (!reply.is_object() || !reply.value("ok", false)) {
      *error = "the agent of " + n->name() + " does not answer vm.list (" + (r ? r.value() : r.status().message()) + ")";
      return false;
    }
    for (const auto& vm : reply["result"]["vms"])
      if (vm.value("state", "") == "running") (*out)[vm.value("uuid", "")].push_back(n->name());
  }
  return true;
}

bool Cluster::check() {
  std::map<std::string, std::vector<std::string>> running;
  std::string error;
  if (!running_guests(&running, &error)) {
    say_(error);
    return false;
  }
  bool ok = true;
  for (auto& n : nodes_)
    for (const auto& g : n->guests()) {
      const auto& where = running[g.uuid];
      std::string recorded = record("vms", g.uuid).value("node", "?");
      bool good = where.size() == 1 && where[0] == recorded;
      ok = ok && good;
      const char* verdict = good ? "ok     " : where.size() > 1 ? "TWICE  " : where.empty() ? "NOWHERE" : "WRONG  ";
      say_(std::string(verdict) + " " + g.name + " runs on " + join(where) + ", recorded on " + recorded);
    }
  return ok;
}

}  // namespace nodeha::demo
