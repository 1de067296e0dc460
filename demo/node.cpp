#include "node.h"

#include "wait.h"


#include <csignal>
#include <filesystem>
#include <fstream>

namespace nodeha::demo {

namespace {

using namespace std::chrono_literals;

// The last `n` lines of a log, for a message.
std::string tail_lines(const std::string& text, int n) {
  size_t pos = text.size();
  while (n-- > 0 && pos > 0) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos + 1);
}

}  // namespace

Node::Node(std::string name, std::string dir, Backend backend, std::vector<Guest> guests)
    : name_(std::move(name)), dir_(std::move(dir)), backend_(backend), guests_(std::move(guests)),
      metrics_port_(test::free_port()) {
  std::filesystem::create_directories(dir_ + "/state");
}

Node::~Node() {
  for (auto& agent : agents_)
    if (agent->running()) {
      agent->signal(SIGTERM);
      if (!agent->wait_exit(10s)) agent->signal(SIGKILL);
    }
  agents_.clear();
  libvirtd_.reset();
}

std::string Node::uri() const {
  if (backend_ == Backend::TestDriver) return "test://" + dir_ + "/node.xml";
  return libvirtd_ ? libvirtd_->uri() : std::string();
}

std::string Node::agent_log() const { return dir_ + "/agent-" + std::to_string(agent_starts_) + ".log"; }

bool Node::start_hypervisor(std::string* error) {
  if (backend_ == Backend::TestDriver) {
    std::ofstream(dir_ + "/node.xml") << node_xml();
    return true;
  }
  libvirtd_ = std::make_unique<test::Libvirtd>(60s);
  if (!libvirtd_->running() || !libvirtd_->answers()) {
    *error = "libvirtd for " + name_ + " did not start:\n" + tail_lines(libvirtd_->log(), 10);
    libvirtd_.reset();
    return false;
  }
  return true;
}

bool Node::start_guests(std::string* error) {
  if (backend_ == Backend::TestDriver) return true;
  for (const auto& g : guests_)
    if (!libvirtd_->define_and_start(g.name, g.uuid, 64, error)) return false;
  return true;
}

bool Node::start_agent(const std::string& nats_keys, std::string* error) {
  std::ofstream(dir_ + "/agent.toml") << agent_config(nats_keys);
  ++agent_starts_;
  agents_.push_back(std::make_unique<test::Process>(
      std::vector<std::string>{NODEHA_HOST_BIN, "--config", dir_ + "/agent.toml"}, agent_log()));
  auto& agent = *agents_.back();
  bool up = test::wait_until(
      [&] { return !agent.running() || test::http_fetch(metrics_address(), "/metrics").status == 200; }, 15s);
  if (up && agent.running()) return true;
  *error = "the agent of " + name_ + (agent.running() ? " did not serve /metrics within 15 s" : " exited") +
           "; the end of its log (" + agent_log() + "):\n" + tail_lines(agent.output(), 15);
  return false;
}

std::vector<Guest> Node::power_off() {
  auto& running = lost_;
  running.clear();
  if (libvirtd_)
    for (const auto& d : libvirtd_->domains())
      if (d.state == "running") running.push_back({d.name, d.uuid});
  if (backend_ == Backend::TestDriver) running = guests_;
  if (!agents_.empty() && agents_.back()->running()) {
    agents_.back()->signal(SIGKILL);
    agents_.back()->wait_exit(5s);
  }
  if (!libvirtd_) return running;
  libvirtd_->kill();
  // qemu runs with -uuid <uuid>: that names the guest's process.
  for (const auto& [name, uuid] : running) {
    for (pid_t pid : test::Libvirtd::processes_with(uuid)) ::kill(pid, SIGKILL);
    test::wait_until([&] { return test::Libvirtd::processes_with(uuid).empty(); }, 10s);
  }
  return running;
}

bool Node::power_on(std::vector<std::string>* back, std::string* error) {
  if (libvirtd_) {
    if (!libvirtd_->start(60s)) {
      *error = "libvirtd of " + name_ + " did not come back:\n" + tail_lines(libvirtd_->log(), 10);
      return false;
    }
    // The daemon reconnects to its guests in the background: a guest whose qemu is gone still
    // shows running until that attempt failed, and only then can it be started again.
    bool settled = test::wait_until([&] {
      for (const auto& g : lost_)
        if (libvirtd_->domain_state(g.uuid) == "running") return false;
      return true;
    }, 30s);
    if (!settled) {
      *error = "libvirtd of " + name_ + " still shows guests running whose qemu was killed, after 30 s";
      return false;
    }
    // A node that lost power comes back with its guests defined and shut off: nodeha keeps
    // autostart off, so nothing starts before the agent has checked where each VM belongs.
    for (const auto& g : lost_) back->push_back(g.name);
  } else {
    for (const auto& g : guests_) back->push_back(g.name);
  }
  return true;
}

std::string Node::agent_config(const std::string& nats_keys) const {
  return "[host]\nrole = \"agent\"\nnode_id = \"" + name_ + "\"\n"
         "plugin_path = [\"" NODEHA_PLUGIN_DIR "\"]\nstate_dir = \"" + dir_ + "/state\"\n"
         "[nats]\n" + nats_keys +
         "[metrics]\nlisten = \"" + metrics_address() + "\"\n" +
         test::libvirt_agent_tables(uri(), "[[plugin]]\nlibrary = \"vms\"\nsync_every = \"500ms\"\nstop_timeout = \"5s\"\n");
}

// A test-driver node: 8 CPUs, 16 GiB, the guests running (64 MiB, diskless).
std::string Node::node_xml() const {
  std::string x =
      "<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>"
      "<threads>1</threads><active>8</active></cpu><memory>16777216</memory>\n";
  for (const auto& g : guests_)
    x += "<domain type='test'><name>" + g.name + "</name><uuid>" + g.uuid +
         "</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>\n";
  return x + "</node>\n";
}

}  // namespace nodeha::demo
