// The demo cluster: three nats-servers (a JetStream cluster), two controllers (one leads), three agents (node-a, node-b, node-c)
// each on its own hypervisor with small guests, Prometheus and Alertmanager. scripts/demo tells
// the story with the `nodeha` CLI; this class builds the cluster, breaks and repairs nodes, and
// checks, independently of the CLI, that each step reached the state it should (reading the
// KV buckets, the events and the hypervisors themselves).
//
// Every method returns whether it held, and says what it saw through `say` (one line per call,
// for a person). Waits poll a condition with a deadline; they give up early once `interrupted`
// returns true (Ctrl-C).
//
// Thread contract: one thread calls everything; the event subscription runs on a NATS thread.
#pragma once

#include "bus.h"
#include "bus_security.h"
#include "monitoring.h"
#include "nats_cluster.h"
#include "node.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace nodeha::demo {

struct Options {
  std::string dir;            // configs, state and logs of the demo (the caller removes it)
  int guests_per_node = 3;
  bool force_test_driver = false;
};

class Cluster {
 public:
  using Say = std::function<void(const std::string&)>;
  Cluster(Options options, Say say, std::function<bool()> interrupted);
  ~Cluster();  // monitoring, agents, controller, hypervisors, nats-server: everything it started

  // Makes the bus's CA and credentials (`nodeha auth init`, into <dir>/bus), starts everything
  // with TLS and a credential per process, and waits until every node is normal, every guest
  // recorded on its node and Prometheus scrapes every host; then writes <dir>/cluster.env (the
  // operator's NODEHA_* variables, logged in as `admin`).
  bool start();

  bool kill_node(const std::string& node);
  // Power back: the hypervisor and the guests it ran (QEMU), not the agent yet.
  bool power_on_node(const std::string& node);
  // The node's agent, with its old state dir.
  bool start_agent(const std::string& node);
  // The node record's `key` (monitor, management) equals `value`; key "lock" with value "free":
  // no task holds the node.
  bool wait_node(const std::string& node, const std::string& key, const std::string& value, int seconds);
  // No VM record names the node, and (when its hypervisor answers) it runs no guest.
  bool wait_empty(const std::string& node, int seconds);
  // Every guest's record says it runs (the owner's agent saw it running since the last move).
  bool wait_running(int seconds);
  // A stale_copy_removed event from `node` for every guest it ran at its last power loss.
  bool wait_stale(const std::string& node, int seconds);
  // Every guest runs on exactly one node, the one its record names (read from the hypervisors).
  bool check();
  // After maintenance of `node` and the rebuild of `lost`: `node` is still disabled and no guest
  // `lost` ran at its power loss is recorded on it (nothing was put on the node being serviced).
  bool kept_off(const std::string& node, const std::string& lost);
  // Which controller leads (its /metrics says so), -1: none.
  int leader();
  // kill -9 of the leading controller and of the nats-server it is connected to; holds once the
  // other leads and runs its plugins, then starts both again (the controller follows).
  bool kill_leader();
  // Every plugin of controller c runs (its /metrics: each nodeha_plugin_up is 1).
  bool plugins_running(size_t c);

 private:
  Node* node(const std::string& name);
  bool wait(const std::function<bool()>& cond, int seconds);
  bool start_nodes(Backend backend);
  bool start_controller(size_t i);
  std::string controller_address(size_t i) const;  // its /metrics
  // The web plugin's table of controller i (HTTPS with the bus's server certificate).
  std::string web_table(size_t i);
  // Says the page's address, and a link that signs in as the demo's admin.
  void say_web_page();
  // The `[nats]` keys of a host logged in as `identity`: the three servers, buckets replicated x3,
  // a fast reconnect, TLS.
  std::string nats_keys(const std::string& identity) const;
  nlohmann::json record(const std::string& bucket, const std::string& key);
  // A connection that may ask agents their vm.list; null when it cannot connect.
  host::Bus* agent_asker();
  // uuid -> nodes running it; false when a node cannot be read.
  bool running_guests(std::map<std::string, std::vector<std::string>>* out, std::string* error);
  void write_env();

  Options options_;
  Say say_;
  std::function<bool()> interrupted_;
  Backend backend_ = Backend::Qemu;
  std::unique_ptr<test::BusSecurity> security_;
  std::unique_ptr<test::NatsCluster> nats_;
  std::unique_ptr<host::Bus> bus_;
  std::unique_ptr<host::Bus> asker_;  // see agent_asker()
  std::unique_ptr<test::Process> controllers_[2];
  int controller_ports_[2] = {0, 0};
  int web_ports_[2] = {0, 0};  // each controller's web page (plugin web, HTTPS)
  std::vector<std::unique_ptr<Node>> nodes_;
  std::map<std::string, std::vector<Guest>> lost_;  // node -> the guests it ran at its power loss
  std::unique_ptr<Monitoring> monitoring_;

  std::mutex events_mu_;
  std::vector<nlohmann::json> events_;  // evt.vm.* as received, on the NATS thread
};

}  // namespace nodeha::demo
