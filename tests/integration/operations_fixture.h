// The Operations fixture: a real nats-server, controllers and agents on the libvirt test driver,
// each agent's domains defined by a node file of its own, and the helpers the node-operation
// tests share (commands, records, where each VM runs, a sampled invariant). Used by
// operations_test.cpp and leadership_test.cpp.
//
// The test-driver nodes themselves are tests/support/test_nodes.h.
#pragma once

#include "bus.h"
#include "cli_run.h"
#include "host_process.h"
#include "nats_server.h"
#include "task_read.h"
#include "test_nodes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <optional>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace nodeha::test {

using json = nlohmann::json;

class Operations : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    ASSERT_TRUE(bus_->subscribe("nodeha.evt.>", "", [this](Message m) {
      auto j = json::parse(m.data, nullptr, false);
      if (!j.is_object()) return;
      j["subject"] = m.subject;
      std::lock_guard lock(mu_);
      events_.push_back(std::move(j));
    }).is_ok());
  }

  std::string controller_config(const std::string& extra = "", const std::string& id = "ctl",
                                const std::string& url = "") const {
    return host_tables("controller", id, url.empty() ? nats_.url() : url) +
           "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 2\nping_timeout = \"300ms\"\n"
           "[[plugin]]\nlibrary = \"scheduler\"\nreserve_vcpus = 0\nreserve_memory_mib = 0\ncpu_ratio = 32.0\n"
           "[[plugin]]\nlibrary = \"tasks\"\n"
           "[[plugin]]\nlibrary = \"vms\"\n"
           "[[plugin]]\nlibrary = \"drain\"\nstop_timeout = \"0s\"\nretry_every = \"300ms\"\n"
           "[[plugin]]\nlibrary = \"migrate\"\n" + extra;
  }

  // Writes the node's file once; later starts reuse it (the node "returns" with its domains).
  std::unique_ptr<HostProcess> start_agent(const std::string& node, const std::vector<Vm>& vms = {}, int memory_mib = 16384) {
    std::string path = nodes_.path(node, vms, memory_mib);
    auto a = std::make_unique<HostProcess>(test_agent_config(node, path, {nats_.url()}));
    EXPECT_TRUE(a->wait_ready()) << a->log();
    return a;
  }

  std::string rebuild_config() const { return controller_config("[[plugin]]\nlibrary = \"rebuild\"\nparallel = 1\n"); }
  // A controller (rebuild_config()) and node-b, empty; node-a with `vms` recorded, then lost
  // and drained: a rebuild of node-a may start.
  // `overrides` go to the controller's command line.
  void lose_and_drain_node_a(const std::vector<Vm>& vms, std::unique_ptr<HostProcess>& ctl,
                             std::unique_ptr<HostProcess>& b, const std::string& config = "",
                             std::vector<std::string> overrides = {}) {
    ctl = std::make_unique<HostProcess>(config.empty() ? rebuild_config() : config, std::move(overrides));
    ASSERT_TRUE(ctl->wait_ready()) << ctl->log();
    auto a = start_agent("node-a", vms);
    b = start_agent("node-b");
    ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") && recorded(vms, "node-a"); }, 20s))
        << ctl->log() << a->log();
    a.reset();
    ASSERT_TRUE(wait_until([&] { return unreachable("node-a"); }, 10s));
    ASSERT_TRUE(command("node.drain", {{"node", "node-a"}})["ok"]);
    ASSERT_TRUE(wait_until([&] { return node_record("node-a")["lock"].is_null(); }));
  }

  // Starts the rebuild of node-a onto node-b; its task id.
  std::string rebuild_node_a() {
    auto r = command("node.rebuild", {{"node", "node-a"}, {"target", "node-b"}});
    EXPECT_TRUE(r["ok"]) << r;
    return r["ok"] ? r["result"]["task"].get<std::string>() : "";
  }
  int succeeded_steps(const std::string& id) {
    int n = 0;
    for (const auto& s : task(id).value("steps", json::array())) n += s["state"] == "succeeded";
    return n;
  }

  json command(const std::string& op, const json& body) {
    auto r = bus_->request("nodeha.cmd." + op, body.dump(), 10s);
    EXPECT_TRUE(r.is_ok()) << op << ": " << r.status().message();
    return r ? json::parse(r.value()) : json();
  }
  std::string refusal(const std::string& op, const std::string& body) {
    auto r = bus_->request("nodeha.cmd." + op, body, 10s);
    if (!r) return "no answer: " + r.status().message();
    auto j = json::parse(r.value());
    EXPECT_FALSE(j["ok"]) << op << " " << body << " -> " << j;
    return j["ok"] ? "accepted" : j["error"]["code"].get<std::string>();
  }
  json node_record(const std::string& node) {
    auto e = bus_->kv_get("nodes", node);
    return e ? json::parse(e->value) : json::object();
  }
  json vm_record(const std::string& uuid) {
    auto e = bus_->kv_get("vms", uuid);
    return e ? json::parse(e->value) : json::object();
  }
  json task(const std::string& id) { return read_task(*bus_, id); }
  std::string task_state(const std::string& id) { return task(id).value("state", ""); }
  // The agent's domains as it reports them: uuid -> state; nothing when it does not answer (a lost
  // node, or a slow one on a loaded machine).
  std::optional<std::map<std::string, std::string>> listed(const std::string& node) {
    auto r = bus_->request("nodeha.agent." + node + ".vm.list", "{}", 2s);
    if (!r) return std::nullopt;
    auto j = json::parse(r.value());
    if (!j["ok"]) return std::nullopt;
    std::map<std::string, std::string> out;
    for (const auto& v : j["result"]["vms"]) out[v["uuid"]] = v["state"];
    return out;
  }
  // The same, empty when it does not answer.
  std::map<std::string, std::string> domains(const std::string& node) { return listed(node).value_or(std::map<std::string, std::string>{}); }
  // Normal in the controller's stored record, which the commands read.
  bool normal(const std::string& node) { return node_record(node).value("monitor", "") == "normal"; }
  bool recorded(const std::vector<Vm>& vms, const std::string& node) {
    for (const auto& v : vms)
      if (vm_record(v.uuid).value("node", "") != node) return false;
    return true;
  }
  bool unreachable(const std::string& node) { return node_record(node).value("monitor", "") == "unreachable"; }

  // Samples every agent's domains until stopped: a VM running on two nodes at once is recorded.
  class Invariant {
   public:
    Invariant(Operations* t, std::vector<std::string> nodes) : t_(t), nodes_(std::move(nodes)) {
      thread_ = std::thread([this] {
        while (!stop_) {
          std::map<std::string, std::vector<std::string>> where;
          for (const auto& n : nodes_)
            for (const auto& [uuid, state] : t_->domains(n))
              if (state == "running") where[uuid].push_back(n);
          std::lock_guard lock(mu_);
          ++samples_;
          for (const auto& [uuid, nodes] : where)
            if (nodes.size() > 1) violations_.push_back(uuid + " runs on " + nodes[0] + " and " + nodes[1]);
        }
      });
    }
    ~Invariant() { finish(); }
    std::vector<std::string> finish() {
      stop_ = true;
      if (thread_.joinable()) thread_.join();
      std::lock_guard lock(mu_);
      EXPECT_GT(samples_, 3) << "the invariant was hardly sampled";
      return violations_;
    }

   private:
    Operations* t_;
    std::vector<std::string> nodes_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    int samples_ = 0;
    std::vector<std::string> violations_;
    std::thread thread_;
  };

  // Where each VM runs now (uuid -> nodes).
  std::map<std::string, std::set<std::string>> running_on(const std::vector<std::string>& nodes) {
    std::map<std::string, std::set<std::string>> out;
    for (const auto& n : nodes)
      for (const auto& [uuid, state] : domains(n))
        if (state == "running") out[uuid].insert(n);
    return out;
  }

  NatsServer nats_;
  std::unique_ptr<host::Bus> bus_;
  TempDir files_;
  NodeFiles nodes_{files_};
  std::mutex mu_;
  std::vector<json> events_;
};


}  // namespace nodeha::test
