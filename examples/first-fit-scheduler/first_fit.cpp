// A second scheduler, built out of tree against the installed SDK: it answers the same subject
// as the shipped one (<prefix>.cmd.sched.place) with first-fit placements: nodes in id order,
// the first enabled and normal one with room takes the VM. No overcommit, no groups, no
// reservations: an example of swapping a plugin, not a production scheduler.
#include <nodeha/plugin.hpp>

#include <map>
#include <set>

namespace {

struct Node {
  std::string management, monitor;
  int64_t free_vcpus = 0, free_memory_mib = 0;
};

std::string fail(const std::string& code, const std::string& message) {
  return nlohmann::json{{"ok", false}, {"error", {{"code", code}, {"message", message}}}}.dump();
}

class FirstFit : public nodeha::Plugin {
 public:
  using Plugin::Plugin;

  nodeha::Status start() override {
    auto w = host().kv_watch("nodes", ">", [this](const nodeha::KvEntry& e) {
      auto j = nlohmann::json::parse(e.value, nullptr, false);
      if (e.deleted || !j.is_object()) {
        nodes_.erase(e.key);
        return;
      }
      auto cap = j.value("capacity", nlohmann::json::object());
      auto use = j.value("use", nlohmann::json::object());
      nodes_[e.key] = Node{j.value("management", "enabled"), j.value("monitor", "normal"),
                           cap.value("vcpus", int64_t{0}) - use.value("vcpus", int64_t{0}),
                           cap.value("memory_mib", int64_t{0}) - use.value("memory_mib", int64_t{0})};
    });
    if (!w) return w.status();
    auto s = host().subscribe(host().subject("cmd.sched.place"), [this](const nodeha::Message& m) { place(m); },
                              "nodeha-controller");
    return s ? nodeha::Status::ok() : s.status();
  }

 private:
  void place(const nodeha::Message& m) {
    auto req = nlohmann::json::parse(m.data, nullptr, false);
    if (!req.is_object() || !req.contains("vms") || !req["vms"].is_array()) {
      host().respond(m.reply, fail("bad_json", "expected {\"vms\": [...]}"));
      return;
    }
    std::set<std::string> exclude;
    for (const auto& e : req.value("exclude", nlohmann::json::array())) exclude.insert(e.get<std::string>());
    auto nodes = nodes_;  // room taken by this request's earlier VMs
    nlohmann::json placements = nlohmann::json::array();
    for (const auto& vm : req["vms"]) {
      int64_t vcpus = vm.value("vcpus", int64_t{0}), memory = vm.value("memory_mib", int64_t{0});
      nlohmann::json p = {{"uuid", vm.value("uuid", "")}};
      for (auto& [id, n] : nodes) {
        if (exclude.count(id) || n.management != "enabled" || n.monitor != "normal") continue;
        if (req.contains("target") && req["target"] != id) continue;
        if (n.free_vcpus < vcpus || n.free_memory_mib < memory) continue;
        n.free_vcpus -= vcpus;
        n.free_memory_mib -= memory;
        p["node"] = id;
        break;
      }
      if (!p.contains("node")) {
        p["code"] = "insufficient_capacity";
        p["message"] = "first-fit found no node with room";
      }
      placements.push_back(p);
    }
    host().respond(m.reply, nlohmann::json{{"ok", true}, {"result", {{"placements", placements}, {"scheduler", "first-fit"}}}}.dump());
  }

  std::map<std::string, Node> nodes_;  // ordered by id: first fit is deterministic
};

}  // namespace

NODEHA_PLUGIN(FirstFit, "first-fit-scheduler", "1.0.0", "example: first-fit placement", nodeha::kControllerRole,
              NODEHA_NO_KEYS)
