// A private network for one system test, built from network namespaces (needs root and `ip`).
//
// Namespaces: one for the control plane (nats-server, monitoring), one for the controller, one
// per node, and one per bridge, so that the root namespace is never touched (no interface of the
// test ever appears in the root `ip link`). Three bridges: management (every node's `mgmt0`, the
// control plane's and the controller's `mgmt0`), business (every node's `biz0`) and storage
// (every node's `stor0`). Each link is a veth pair whose bridge side sits in the bridge's
// namespace; cutting a node (or the controller) from a network sets that bridge side down.
//
// Addresses: management 10.88.1.0/24 (node i: .i, controller: .253, control plane: .254),
// business 10.88.2.0/24 and storage 10.88.3.0/24 (node i: .i). Each test's bridges are its own,
// so two tests may use the same addresses.
//
// Names: every namespace is `nhnet-<creator pid>-<random tag>-<role>`; the bridges and bridge
// ports carry `nh<tag>` (interface names have at most 15 characters). Two tests running at once
// never share a name. The constructor first removes leftovers of crashed runs: namespaces named
// `nhnet-<pid>-...` whose creating process is gone (processes inside them are killed).
//
// Thread contract: one test thread uses the object; nothing here is thread-safe.
#pragma once

#include "wait.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace nodeha::test {

enum class Network { kManagement, kBusiness, kStorage };
// Every network a node has a link on.
inline constexpr Network kNodeNetworks[] = {Network::kManagement, Network::kBusiness, Network::kStorage};
const char* name(Network net);  // "management", "business", "storage": as `--network` takes them

// An interface's byte counters (the kernel's 64-bit stats): what it received and sent so far.
struct LinkCounters {
  uint64_t rx = 0;
  uint64_t tx = 0;
};

class TestNetwork {
 public:
  static constexpr int kMaxNodes = 8;
  static constexpr int kMaxControllers = 3;
  static constexpr const char* kNamePrefix = "nhnet-";

  // Builds everything; on failure (not root, no `ip`, a kernel refusal) ready() is false,
  // error() says why, and whatever was built is already gone.
  // `controllers` (1..kMaxControllers): controller c has its own namespace and address.
  explicit TestNetwork(int nodes, int controllers = 1);
  // Kills the processes left in its namespaces and deletes them (links and bridges go with them);
  // the test fails (ADD_FAILURE) if something cannot be removed.
  ~TestNetwork();
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  bool ready() const { return ready_; }
  // Why construction, or the last cut/restore, failed.
  const std::string& error() const { return error_; }

  int nodes() const { return nodes_; }
  int controllers() const { return controllers_; }
  // The random tag in every name this object creates (namespaces and interfaces).
  const std::string& tag() const { return tag_; }
  std::string control_ns() const;
  std::string controller_ns(int controller = 1) const;  // controller: 1..controllers()
  std::string node_ns(int node) const;  // node: 1..nodes()
  // Every namespace this object created (control plane, nodes, bridges).
  std::vector<std::string> namespaces() const;

  // The interface's name inside a node's namespace ("mgmt0", "biz0", "stor0").
  static std::string interface(Network net);
  std::string control_address() const;     // on management
  std::string controller_address(int controller = 1) const;  // on management: .253, .252, ...
  std::string node_address(int node, Network net) const;

  // Node i's interface on `net`, its byte counters as its own namespace counts them (`ip -s -j
  // link`: /sys/class/net shows the namespace that mounted sysfs, not the reader's); nullopt with
  // error() set when `ip` fails or says something else.
  std::optional<LinkCounters> counters(int node, Network net);

  // Takes a node's link on `net` down at the bridge (cut) or up again (restore); false with
  // error() set when `ip` refuses.
  bool cut(int node, Network net);
  bool restore(int node, Network net);
  bool cut_all(int node);  // every network of kNodeNetworks
  bool restore_all(int node);
  // A controller's one link (management), cut at the bridge or restored.
  bool cut_controller(int controller = 1);
  bool restore_controller(int controller = 1);

  // Node i's BMC: a namespace of its own on the management network at 10.88.1.(100+i), made by
  // add_bmc. A BMC is hardware of its own with standby power: a node's power loss (its links cut,
  // its processes killed) leaves it answering. cut_bmc / restore_bmc take its link down or up.
  std::string bmc_ns(int node) const;
  std::string bmc_address(int node) const;
  bool add_bmc(int node);
  bool cut_bmc(int node);
  bool restore_bmc(int node);

  // `ip netns exec <ns> argv...`: the argv for a Process that runs inside `ns`.
  static std::vector<std::string> argv_in(const std::string& ns, std::vector<std::string> argv);

 private:
  std::string bridge_ns(Network net) const;
  std::string bridge_port(const std::string& role) const;  // bridge side of a veth pair
  bool build();
  bool add_ns(const std::string& name);
  bool attach(const std::string& ns, const std::string& role, Network net, const std::string& address);
  bool set_port(int node, Network net, const char* state);
  bool set_role_port(const std::string& role, Network net, const char* state);
  // Runs `ip args...`; false with error_ set on a non-zero exit. `out` gets its output.
  bool ip(const std::vector<std::string>& args, std::string* out = nullptr);
  // Kills the processes in `ns` and deletes it; false with error_ set if it stays.
  bool remove_ns(const std::string& ns);
  void remove_leftovers();
  void teardown();

  TempDir dir_;  // logs of the `ip` commands
  int nodes_ = 0;
  int controllers_ = 1;
  std::string tag_;
  std::string prefix_;  // nhnet-<pid>-<tag>-
  std::vector<std::string> created_;
  bool ready_ = false;
  std::string error_;
  int commands_ = 0;
};

// What every node's links (each network of kNodeNetworks) carried between two readings of their
// counters: for a test that checks which network some traffic took.
class TrafficMeter {
 public:
  using Clock = std::chrono::steady_clock;
  // The first reading, now; ok() is false (error() says why) when a counter cannot be read.
  explicit TrafficMeter(TestNetwork& net);
  // The second reading, now; false when a counter cannot be read.
  bool stop();
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // The bytes node's link on `net` received and sent between the readings (zero before stop()).
  LinkCounters carried(int node, Network net) const;
  double seconds() const;  // between the readings
  // Every link's figures, one per line ("node-1 stor0 rx 1234 tx 5678"): for messages and logs.
  std::string text() const;

 private:
  using Reading = std::map<std::pair<int, Network>, LinkCounters>;
  bool read(Reading* out);

  TestNetwork& net_;
  Reading start_, end_;
  Clock::time_point started_, stopped_;
  std::string error_;
};

// Runs `fn` on a thread of its own inside network namespace `ns` ("" for the caller's own) and
// waits for it; false (fn not run) when the namespace cannot be entered. Sockets that fn makes,
// and threads that fn starts, stay in that namespace.
bool run_in(const std::string& ns, const std::function<void()>& fn);

// A socket of `type` (SOCK_STREAM, ...) in network namespace `ns` ("" for the caller's own), or
// -1. The socket stays in that namespace, so the caller can bind or connect it from any thread.
int socket_in(const std::string& ns, int type);

}  // namespace nodeha::test
