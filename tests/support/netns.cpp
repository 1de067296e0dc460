#include "netns.h"

#include "process.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <iterator>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

namespace nodeha::test {

namespace {

constexpr auto kCommandTimeout = 10s;

std::string random_tag() {
  std::random_device rd;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%06x", rd() & 0xffffffu);
  return buf;
}

std::string role_of(int node) { return "n" + std::to_string(node); }
// The first controller keeps the name it had before there could be several.
std::string controller_role(int controller) { return controller == 1 ? "ctl" : "ctl" + std::to_string(controller); }

bool process_alive(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// What names and numbers a network, indexed by Network.
struct NetworkNames {
  const char* name;       // as `--network` takes it
  const char* bridge;     // the role of its bridge's namespace
  const char* interface;  // a member's link inside its namespace
  const char* subnet;     // the first three octets of its /24
};
constexpr NetworkNames kNames[] = {{"management", "mgmt", "mgmt0", "10.88.1."},
                                   {"business", "biz", "biz0", "10.88.2."},
                                   {"storage", "stor", "stor0", "10.88.3."}};
static_assert(std::size(kNames) == std::size(kNodeNetworks));

const NetworkNames& names(Network net) { return kNames[static_cast<size_t>(net)]; }

}  // namespace

const char* name(Network net) { return names(net).name; }

TestNetwork::TestNetwork(int nodes, int controllers) : nodes_(nodes), controllers_(controllers), tag_(random_tag()) {
  prefix_ = std::string(kNamePrefix) + std::to_string(getpid()) + "-" + tag_ + "-";
  if (nodes < 1 || nodes > kMaxNodes) {
    error_ = "TestNetwork: " + std::to_string(nodes) + " nodes, expected 1.." + std::to_string(kMaxNodes);
    return;
  }
  if (controllers < 1 || controllers > kMaxControllers) {
    error_ = "TestNetwork: " + std::to_string(controllers) + " controllers, expected 1.." +
             std::to_string(kMaxControllers);
    controllers_ = 0;
    return;
  }
  if (geteuid() != 0) {
    error_ = "TestNetwork: network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN); euid is " +
             std::to_string(geteuid());
    return;
  }
  if (!ip({"-V"})) {
    error_ = "TestNetwork: cannot run `ip` (iproute2): " + error_;
    return;
  }
  remove_leftovers();
  ready_ = build();
  if (!ready_) {
    std::string why = error_;
    teardown();
    error_ = "TestNetwork: " + why;
  }
}

TestNetwork::~TestNetwork() {
  teardown();
  if (!created_.empty()) ADD_FAILURE() << "TestNetwork: could not remove " << joined(created_) << ": " << error_;
}

std::string TestNetwork::control_ns() const { return prefix_ + "cp"; }
std::string TestNetwork::controller_ns(int controller) const { return prefix_ + controller_role(controller); }
std::string TestNetwork::node_ns(int node) const { return prefix_ + role_of(node); }
std::string TestNetwork::bridge_ns(Network net) const { return prefix_ + names(net).bridge; }
std::string TestNetwork::bridge_port(const std::string& role) const { return "nh" + tag_ + "-" + role; }

std::string TestNetwork::bmc_ns(int node) const { return prefix_ + "bmc" + std::to_string(node); }
std::string TestNetwork::bmc_address(int node) const { return "10.88.1." + std::to_string(100 + node); }
bool TestNetwork::add_bmc(int node) {
  if (!ready_ || node < 1 || node > nodes_) {
    error_ = ready_ ? "TestNetwork: no node " + std::to_string(node) : "TestNetwork: not ready";
    return false;
  }
  return add_ns(bmc_ns(node)) && attach(bmc_ns(node), "bmc" + std::to_string(node), Network::kManagement, bmc_address(node));
}
bool TestNetwork::cut_bmc(int node) { return set_role_port("bmc" + std::to_string(node), Network::kManagement, "down"); }
bool TestNetwork::restore_bmc(int node) { return set_role_port("bmc" + std::to_string(node), Network::kManagement, "up"); }

std::vector<std::string> TestNetwork::namespaces() const {
  std::vector<std::string> all;
  for (Network net : kNodeNetworks) all.push_back(bridge_ns(net));
  all.push_back(control_ns());
  for (int c = 1; c <= controllers_; ++c) all.push_back(controller_ns(c));
  for (int i = 1; i <= nodes_; ++i) all.push_back(node_ns(i));
  return all;
}

std::string TestNetwork::interface(Network net) { return names(net).interface; }
std::string TestNetwork::control_address() const { return "10.88.1.254"; }
std::string TestNetwork::controller_address(int controller) const {
  return "10.88.1." + std::to_string(254 - controller);
}
std::string TestNetwork::node_address(int node, Network net) const {
  return names(net).subnet + std::to_string(node);
}

std::optional<LinkCounters> TestNetwork::counters(int node, Network net) {
  if (!ready_ || node < 1 || node > nodes_) {
    error_ = ready_ ? "TestNetwork: no node " + std::to_string(node) : "TestNetwork: not ready";
    return std::nullopt;
  }
  std::string out;
  if (!ip({"-n", node_ns(node), "-s", "-j", "link", "show", "dev", interface(net)}, &out)) return std::nullopt;
  // [{"ifname": ..., "stats64": {"rx": {"bytes": N, ...}, "tx": {"bytes": N, ...}}}]
  auto doc = nlohmann::json::parse(out, nullptr, false);
  const nlohmann::json* stats = doc.is_array() && doc.size() == 1 && doc[0].is_object() && doc[0].contains("stats64")
                                    ? &doc[0]["stats64"]
                                    : nullptr;
  auto bytes = [&](const char* dir) -> std::optional<uint64_t> {
    if (!stats || !stats->is_object() || !stats->contains(dir) || !(*stats)[dir].is_object()) return std::nullopt;
    const auto& b = (*stats)[dir].value("bytes", nlohmann::json());
    if (!b.is_number_unsigned()) return std::nullopt;
    return b.get<uint64_t>();
  };
  auto rx = bytes("rx"), tx = bytes("tx");
  if (!rx || !tx) {
    error_ = "TestNetwork: no byte counters for " + interface(net) + " in " + node_ns(node) + ": " + out;
    return std::nullopt;
  }
  return LinkCounters{*rx, *tx};
}

bool TestNetwork::cut(int node, Network net) { return set_port(node, net, "down"); }
bool TestNetwork::restore(int node, Network net) { return set_port(node, net, "up"); }
bool TestNetwork::cut_controller(int controller) {
  return set_role_port(controller_role(controller), Network::kManagement, "down");
}
bool TestNetwork::restore_controller(int controller) {
  return set_role_port(controller_role(controller), Network::kManagement, "up");
}
bool TestNetwork::cut_all(int node) {
  for (Network net : kNodeNetworks)
    if (!cut(node, net)) return false;
  return true;
}
bool TestNetwork::restore_all(int node) {
  for (Network net : kNodeNetworks)
    if (!restore(node, net)) return false;
  return true;
}

std::vector<std::string> TestNetwork::argv_in(const std::string& ns, std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
  return argv;
}

bool TestNetwork::build() {
  for (const auto& ns : namespaces()) {
    if (!add_ns(ns)) return false;
  }
  for (Network net : kNodeNetworks) {
    // forward_delay 0: a port that comes up forwards at once (STP is off anyway).
    std::string br = bridge_port("br");
    if (!ip({"-n", bridge_ns(net), "link", "add", br, "type", "bridge", "forward_delay", "0"}) ||
        !ip({"-n", bridge_ns(net), "link", "set", br, "up"}))
      return false;
  }
  if (!attach(control_ns(), "cp", Network::kManagement, control_address())) return false;
  for (int c = 1; c <= controllers_; ++c)
    if (!attach(controller_ns(c), controller_role(c), Network::kManagement, controller_address(c))) return false;
  for (int i = 1; i <= nodes_; ++i) {
    for (Network net : kNodeNetworks) {
      if (!attach(node_ns(i), role_of(i), net, node_address(i, net))) return false;
    }
  }
  return true;
}

bool TestNetwork::add_ns(const std::string& name) {
  if (!ip({"netns", "add", name})) return false;
  created_.push_back(name);
  return ip({"-n", name, "link", "set", "lo", "up"});
}

bool TestNetwork::attach(const std::string& ns, const std::string& role, Network net, const std::string& address) {
  // Created in the bridge's namespace with its peer straight in `ns`: nothing passes through root.
  std::string bns = bridge_ns(net);
  std::string port = bridge_port(role);
  std::string inner = interface(net);
  return ip({"-n", bns, "link", "add", port, "type", "veth", "peer", "name", inner, "netns", ns}) &&
         ip({"-n", bns, "link", "set", port, "master", bridge_port("br")}) &&
         ip({"-n", bns, "link", "set", port, "up"}) && ip({"-n", ns, "addr", "add", address + "/24", "dev", inner}) &&
         ip({"-n", ns, "link", "set", inner, "up"});
}

bool TestNetwork::set_port(int node, Network net, const char* state) {
  if (!ready_ || node < 1 || node > nodes_) {
    error_ = ready_ ? "TestNetwork: no node " + std::to_string(node) : "TestNetwork: not ready";
    return false;
  }
  return set_role_port(role_of(node), net, state);
}

bool TestNetwork::set_role_port(const std::string& role, Network net, const char* state) {
  if (!ready_) {
    error_ = "TestNetwork: not ready";
    return false;
  }
  return ip({"-n", bridge_ns(net), "link", "set", bridge_port(role), state});
}

bool TestNetwork::ip(const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, dir_.file("ip-" + std::to_string(++commands_) + ".log"));
  auto status = p.wait_exit(kCommandTimeout);
  std::string output = p.output();
  if (out) *out = output;
  if (status == 0) return true;
  error_ = "`" + joined(argv) + "` " +
           (status ? (*status == 127 ? "could not be run" : "exited with " + std::to_string(*status))
                   : "did not finish in time") +
           (output.empty() ? "" : ": " + output);
  return false;
}

bool TestNetwork::remove_ns(const std::string& ns) {
  auto pids = [&] {
    std::string out;
    std::vector<pid_t> found;
    if (!ip({"netns", "pids", ns}, &out)) return found;
    std::istringstream in(out);
    for (long pid; in >> pid;) found.push_back(static_cast<pid_t>(pid));
    return found;
  };
  // A namespace outlives its name while a process is still in it: kill them first.
  if (!wait_until(
          [&] {
            auto left = pids();
            for (pid_t pid : left) kill(pid, SIGKILL);
            return left.empty();
          },
          5s)) {
    error_ = "processes stay in " + ns;
    return false;
  }
  return ip({"netns", "delete", ns});
}

void TestNetwork::remove_leftovers() {
  std::string out;
  if (!ip({"netns", "list"}, &out)) return;
  // Lines are "name" or "name (id: N)"; ours are nhnet-<pid>-<tag>-<role>.
  static const std::regex ours("^" + std::string(kNamePrefix) + "([0-9]+)-[0-9a-f]+-[a-z0-9]+");
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, ours)) continue;
    pid_t creator = static_cast<pid_t>(std::stol(m[1]));
    if (creator == getpid() || process_alive(creator)) continue;
    remove_ns(m[0]);  // best effort: another test may be removing it at the same time
  }
  error_.clear();
}

void TestNetwork::teardown() {
  // Nodes and the control plane first (their veths vanish with them), the bridges last.
  std::vector<std::string> left;
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    if (!remove_ns(*it)) left.push_back(*it);
  }
  created_ = left;
  ready_ = false;
}

TrafficMeter::TrafficMeter(TestNetwork& net) : net_(net), started_(Clock::now()), stopped_(started_) { read(&start_); }

bool TrafficMeter::stop() {
  stopped_ = Clock::now();
  return read(&end_);
}

bool TrafficMeter::read(Reading* out) {
  for (int node = 1; node <= net_.nodes(); ++node)
    for (Network net : kNodeNetworks) {
      auto c = net_.counters(node, net);
      if (!c) {
        error_ = net_.error();
        return false;
      }
      (*out)[{node, net}] = *c;
    }
  return true;
}

LinkCounters TrafficMeter::carried(int node, Network net) const {
  auto a = start_.find({node, net}), b = end_.find({node, net});
  if (a == start_.end() || b == end_.end()) return {};
  return {b->second.rx - a->second.rx, b->second.tx - a->second.tx};
}

double TrafficMeter::seconds() const { return std::chrono::duration<double>(stopped_ - started_).count(); }

std::string TrafficMeter::text() const {
  std::string out;
  for (const auto& [link, _] : end_) {
    auto c = carried(link.first, link.second);
    out += "node-" + std::to_string(link.first) + " " + TestNetwork::interface(link.second) + " rx " +
           std::to_string(c.rx) + " tx " + std::to_string(c.tx) + "\n";
  }
  return out;
}

bool run_in(const std::string& ns, const std::function<void()>& fn) {
  if (ns.empty()) {
    fn();
    return true;
  }
  bool entered = false;
  // setns moves only the calling thread; a thread of its own leaves the caller where it was.
  std::thread([&] {
    int nsfd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) return;
    entered = setns(nsfd, CLONE_NEWNET) == 0;
    close(nsfd);
    if (entered) fn();
  }).join();
  return entered;
}

int socket_in(const std::string& ns, int type) {
  int fd = -1;
  run_in(ns, [&] { fd = socket(AF_INET, type | SOCK_CLOEXEC, 0); });
  return fd;
}

}  // namespace nodeha::test
