// Three real nats-servers (NatsServer each) with JetStream, clustered as config/nats/cluster/
// deploys them: one cluster name, routes from every server to the two others, a server name and
// a store dir of its own each, loopback ports picked free (client, route, monitoring). Made
// once JetStream has a meta leader that every server agrees on, or the test fails.
//
// Any one server can be stopped (SIGTERM) or killed (SIGKILL) and started again on the same
// ports with the same store: the others keep their routes to it and it rejoins. Clients are
// given every URL (urls()), also of a stopped server, as an operator's config would.
//
// With `netns` the servers run inside a test network's namespace (tests/system/cluster.h).
//
// Auth/TLS: `include` is passed to every server (the nats-auth.conf of `nodeha auth init`, see
// bus_security.h); it secures the client port only, the routes stay plain loopback. The cluster's
// own checks (wait_meta_leader, stream_info) read the monitoring port and need no login; client()
// cannot log in to such a cluster: the test brings its own settings.
//
// Thread contract: made and driven from the test's thread; the getters are const.
#pragma once

#include "nats_server.h"

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace nodeha::test {

struct NatsClusterOptions {
  size_t servers = 3;
  std::string config;   // more config lines for every server; empty: none
  std::string include;  // as NatsServerOptions::include
  // Where the servers run (NatsServerOptions::netns, ::address): all in one namespace on one
  // address, told apart by their ports. The cluster's own checks read the monitoring ports from
  // inside that namespace.
  std::string netns;
  std::string address = "127.0.0.1";
  // 0: free loopback ports. Otherwise server i's client port is first_port + i, its route port
  // first_port + 10 + i and its monitoring port first_port + 20 + i (a namespace of the test's
  // own has every port free).
  int first_port = 0;
  // Set both: every server also listens for websocket clients (the web page's browsers) on a
  // free port of its own, with TLS from these files and the include's users; websocket_urls().
  std::string websocket_cert, websocket_key;
};

class NatsCluster {
 public:
  NatsCluster() : NatsCluster(NatsClusterOptions{}) {}
  explicit NatsCluster(NatsClusterOptions options);

  size_t size() const { return servers_.size(); }
  NatsServer& server(size_t i) { return *servers_.at(i); }
  // Every server's client URL, in order, stopped ones included.
  std::vector<std::string> urls() const;
  // The same, comma-separated: `nodeha --server` and $NODEHA_SERVER.
  std::string urls_csv() const;
  // Every server's wss:// URL, in order; empty without NatsClusterOptions::websocket_cert.
  const std::vector<std::string>& websocket_urls() const { return websocket_urls_; }
  // "s1", "s2", ...: the server_name of server i, as /jsz and stream infos name it.
  static std::string name(size_t i) { return "s" + std::to_string(i + 1); }

  // Stops server i (SIGTERM: a clean shutdown; SIGKILL: a crash), keeping its store.
  void stop(size_t i, int sig = SIGTERM) { servers_.at(i)->stop(sig); }
  // Starts server i again on its ports and store; returns once it accepts clients.
  void start(size_t i) { servers_.at(i)->start(); }

  // The meta leader every running server names, once they agree (within `timeout`); empty when
  // they did not (no quorum, or still electing).
  std::string wait_meta_leader(std::chrono::milliseconds timeout = 20s) const;
  // GET /<path> from server i's monitoring port, as JSON (null when it does not answer).
  nlohmann::json monitor(size_t i, const std::string& path) const;
  // Stream `name` as the running servers' /jsz reports it, with "config" and "cluster" (leader,
  // replicas): the report of the server that leads it, else the first that has it; null when
  // none has it.
  nlohmann::json stream_info(const std::string& name) const;
  // The index of the server that leads stream `name` (its Raft group), by stream_info().
  std::optional<size_t> stream_leader(const std::string& name) const;
  // What server i leads now, by its own /jsz: "the meta group" when it is the meta leader, then
  // each stream it leads. These are the groups that stop answering for one election (4-9 s) when
  // it dies: a KV write to a stream it led, and any consumer's creation (a KV list or watch)
  // when it led the meta group.
  std::vector<std::string> groups_led_by(size_t i) const;
  // Whether every Raft group has a running leader again: the running servers agree on a meta
  // leader that runs, and each stream any of them holds is led by a running server that says so.
  bool all_groups_led() const;
  // The index of the server client `client_name` (natsOptions_SetName) is connected to, from
  // /connz of every running server.
  std::optional<size_t> serving(const std::string& client_name) const;

  // The test client's settings: every URL, reconnecting every 100 ms, kv_replicas = size().
  host::NatsSettings settings() const;
  std::unique_ptr<host::Bus> client() const;

 private:
  using Reports = std::vector<std::pair<size_t, nlohmann::json>>;
  // The meta leader every running server's /jsz report (`query`) names; empty when one does not
  // answer or they disagree. With `reports`, each running server's report, by index.
  std::string agreed_meta_leader(const std::string& query, Reports* reports) const;
  // The streams a /jsz report lists into `all` (when given), those `server` leads into `led`.
  static void streams_in(const nlohmann::json& jsz, const std::string& server, std::set<std::string>* all,
                         std::vector<std::string>* led);

  std::string netns_;
  std::string address_;
  std::vector<int> monitor_ports_;
  std::vector<std::string> websocket_urls_;
  std::vector<std::unique_ptr<NatsServer>> servers_;
};

}  // namespace nodeha::test
