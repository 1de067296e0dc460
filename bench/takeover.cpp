// Controller takeover: how long after a leader's death another controller acts.
//
// Starts nats-server -js (free loopback port, temp store), --controllers controllers with every
// controller plugin (heartbeat 1 s, 3 misses) and `[host] lease = --lease`, and --agents agents
// (heartbeat only, 1 s). Then --kills times: finds the leader from the lease record, kills it
// with SIGKILL, and times, from the kill:
//   - lease: until the lease record names another holder (a KV watch on controllers/leader);
//   - acting: until `nodeha.cmd.node.enable` (of a node that does not exist: refused, nothing
//     changes) is answered again. Only the leader's plugins serve commands that change something
//     (followers answer read-only ones), and a killed process's subscriptions go with its
//     connection, so an answer means the new leader's plugins run (they resumed from the buckets).
// With --nats-cluster the bus is three clustered nats-servers (buckets x3) and each kill also
// kills (SIGKILL) the server that leads the lease's stream, KV_controllers, as when the leader's
// machine runs it: nobody can take the lease until JetStream elects another stream leader. The
// server is started again, and the stream whole, before the next kill.
// The killed controller is started again (it follows) before the next kill, so the leader
// alternates. The lease figure comes from the bench's own KV watch, which learns late when its
// connection was on the killed server; the acting figure is polled on its own. Every node's monitor events are recorded from the start: a node reported
// `unreachable` at any time is a false alarm (every agent runs throughout).
// Prints Markdown tables; exits non-zero only when it could not measure.
#include "bus.h"
#include "host_process.h"
#include "measure.h"
#include "nats_cluster.h"
#include "nats_server.h"
#include "wait.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <functional>
#include <mutex>
#include <thread>

namespace nodeha::bench {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using test::HostProcess;
using test::wait_until;

struct Options {
  int controllers = 2;
  int agents = 3;
  int kills = 20;
  std::string lease = "2s";
  bool nats_cluster = false;
};

// Polls every 5 ms: the figures are in tens of milliseconds.
bool poll_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto end = SteadyClock::now() + timeout;
  while (!cond()) {
    if (SteadyClock::now() >= end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

double ms_since(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

// Every server of the stream's Raft group is current again (after a server's return).
bool stream_whole(const test::NatsCluster& cluster, const std::string& stream) {
  auto info = cluster.stream_info(stream);
  if (!info.is_object() || info.value("/cluster/leader"_json_pointer, std::string()).empty()) return false;
  auto replicas = info.value("/cluster/replicas"_json_pointer, json::array());
  if (replicas.size() + 1 != cluster.size()) return false;
  for (const auto& r : replicas)
    if (!r.value("current", false)) return false;
  return true;
}

int run(const Options& o) {
  std::unique_ptr<test::NatsServer> single;
  std::unique_ptr<test::NatsCluster> cluster;
  std::vector<std::string> urls;
  std::vector<std::string> overrides{"host.lease=\"" + o.lease + "\""};
  if (o.nats_cluster) {
    cluster = std::make_unique<test::NatsCluster>();
    urls = cluster->urls();
    overrides.push_back("nats.kv_replicas=3");
  } else {
    single = std::make_unique<test::NatsServer>();
    urls = {single->url()};
  }
  auto bus = cluster ? cluster->client() : single->client();
  if (!bus || !bus->wait_connected(10s)) {
    std::fprintf(stderr, "cannot reach nats-server\n");
    return 1;
  }
  std::mutex mu;
  std::string holder;
  SteadyClock::time_point holder_changed;
  int false_unreachable = 0;
  (void)bus->subscribe("nodeha.evt.node.>", "", [&](Message m) {
    auto j = json::parse(m.data, nullptr, false);
    if (j.is_object() && j.value("event", "") == "monitor" && j.value("to", "") == "unreachable") {
      std::lock_guard lock(mu);
      ++false_unreachable;
    }
  });

  auto config = [&](int i) {
    return test::host_tables("controller", "ctl-" + std::to_string(i), urls) + test::controller_plugin_tables();
  };
  std::vector<std::unique_ptr<HostProcess>> ctl(o.controllers);
  for (int i = 0; i < o.controllers; ++i) {
    ctl[i] = std::make_unique<HostProcess>(config(i), overrides);
    if (!ctl[i]->wait_ready()) {
      std::fprintf(stderr, "controller %d did not start:\n%s\n", i, ctl[i]->log().c_str());
      return 1;
    }
  }
  auto watch = bus->kv_watch("controllers", "leader", [&](KvEntry e) {
    auto j = json::parse(e.value, nullptr, false);
    if (!j.is_object()) return;
    std::lock_guard lock(mu);
    std::string h = j.value("holder", "");
    if (h != holder) {
      holder = h;
      holder_changed = SteadyClock::now();
    }
  });
  std::vector<std::unique_ptr<HostProcess>> agents;
  for (int i = 0; i < o.agents; ++i) {
    agents.push_back(std::make_unique<HostProcess>(test::host_tables("agent", "node-" + std::to_string(i), urls) +
                                                       "[libvirt]\nuri = \"test:///default\"\n"
                                                       "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\ndisk_path = \"/\"\n",
                                                   std::vector<std::string>(overrides.begin() + 1, overrides.end())));
    if (!agents.back()->wait_ready()) return 1;
  }
  auto answered = [&] {
    return static_cast<bool>(bus->request("nodeha.cmd.node.enable", R"({"node":"no-such-node"})", 200ms));
  };
  auto all_known = [&] {
    auto r = bus->request("nodeha.cmd.node.list", "{}", 1s);
    if (!r) return false;
    auto j = json::parse(r.value(), nullptr, false);
    return j.is_object() && j.value("ok", false) && j["result"]["nodes"].size() == static_cast<size_t>(o.agents);
  };
  if (!wait_until(all_known, 20s)) {
    std::fprintf(stderr, "the nodes did not register\n");
    return 1;
  }

  std::vector<double> lease_ms, acting_ms;
  for (int k = 0; k < o.kills; ++k) {
    std::string leader;
    {
      std::lock_guard lock(mu);
      leader = holder;
    }
    int victim = -1;
    for (int i = 0; i < o.controllers; ++i)
      if (leader == "ctl-" + std::to_string(i)) victim = i;
    if (victim < 0) {
      std::fprintf(stderr, "no leader before kill %d (holder '%s')\n", k, leader.c_str());
      return 1;
    }
    std::optional<size_t> server;
    if (cluster && !(server = cluster->stream_leader("KV_controllers"))) {
      std::fprintf(stderr, "no server leads KV_controllers before kill %d\n", k);
      return 1;
    }
    auto killed = SteadyClock::now();
    ctl[victim]->process().signal(SIGKILL);
    if (server) cluster->stop(*server, SIGKILL);
    ctl[victim]->process().wait_exit(5s);
    // Timed apart: the bench's own watch may have been on the killed server and learn late.
    bool acts = poll_until(answered, 60s);
    double acting = ms_since(killed);
    bool took = poll_until([&] {
      std::lock_guard lock(mu);
      return holder != leader && !holder.empty() && holder_changed > killed;
    }, 60s);
    SteadyClock::time_point changed;
    {
      std::lock_guard lock(mu);
      changed = holder_changed;
    }
    if (!took || !acts) {
      std::fprintf(stderr, "kill %d: no takeover within 60 s\n", k);
      return 1;
    }
    lease_ms.push_back(std::chrono::duration<double, std::milli>(changed - killed).count());
    acting_ms.push_back(acting);
    std::fprintf(stderr, "kill %d of %s%s: lease taken after %.0f ms, commands answered after %.0f ms\n", k + 1,
                 leader.c_str(), server ? (" and " + test::NatsCluster::name(*server)).c_str() : "", lease_ms.back(), acting);
    if (server) {
      cluster->start(*server);
      if (!wait_until([&] { return stream_whole(*cluster, "KV_controllers"); }, 60s)) {
        std::fprintf(stderr, "KV_controllers not whole again within 60 s of %s's return: %s\n",
                     test::NatsCluster::name(*server).c_str(), cluster->stream_info("KV_controllers").dump().c_str());
        return 1;
      }
    }
    ctl[victim] = std::make_unique<HostProcess>(config(victim), overrides);
    if (!ctl[victim]->wait_ready()) return 1;
    // Following before the next kill: it saw the new epoch.
    if (!wait_until([&] { return ctl[victim]->metric("nodeha_controller_epoch") >= k + 2; }, 10s)) return 1;
  }
  if (watch) bus->kv_unwatch(watch.value());

  std::printf("| measure | kills | p50 ms | p90 ms | max ms |\n| --- | --- | --- | --- | --- |\n");
  std::printf("| leader killed → lease taken by another | %zu | %s | %s | %s |\n", lease_ms.size(),
              fixed(percentile(lease_ms, 50), 0).c_str(), fixed(percentile(lease_ms, 90), 0).c_str(),
              fixed(percentile(lease_ms, 100), 0).c_str());
  std::printf("| leader killed → commands answered by the new leader | %zu | %s | %s | %s |\n", acting_ms.size(),
              fixed(percentile(acting_ms, 50), 0).c_str(), fixed(percentile(acting_ms, 90), 0).c_str(),
              fixed(percentile(acting_ms, 100), 0).c_str());
  // For bench/run-all.
  const char* bus_kind = cluster ? "nats_cluster" : "one_nats";
  std::printf("figure: takeover.%s.acting_p50_ms %s\nfigure: takeover.%s.acting_max_ms %s\n", bus_kind,
              fixed(percentile(acting_ms, 50), 0).c_str(), bus_kind, fixed(percentile(acting_ms, 100), 0).c_str());
  std::lock_guard lock(mu);
  std::printf("figure: takeover.%s.false_alarms %d\n", bus_kind, false_unreachable);
  std::printf("\n%d controllers, %d agents (1 s heartbeats), lease %s, %s; nodes reported unreachable: %d; load %s\n",
              o.controllers, o.agents, o.lease.c_str(),
              cluster ? "3 nats-servers, the lease stream's leader killed with each leader" : "1 nats-server",
              false_unreachable, loadavg().c_str());
  return 0;
}

}  // namespace
}  // namespace nodeha::bench

int main(int argc, char** argv) {
  CLI::App app{"takeover: kill the leading controller again and again and time the next one's takeover"};
  nodeha::bench::Options o;
  app.add_option("--controllers", o.controllers, "controllers (2 or more)")->check(CLI::Range(2, 5));
  app.add_option("--agents", o.agents, "agents with 1 s heartbeats")->check(CLI::Range(0, 100));
  app.add_option("--kills", o.kills, "leaders killed")->check(CLI::Range(1, 1000));
  app.add_option("--lease", o.lease, "[host] lease of every controller");
  app.add_flag("--nats-cluster", o.nats_cluster,
               "three clustered nats-servers; each kill also kills the server leading the lease's stream");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  return nodeha::bench::run(o);
}
