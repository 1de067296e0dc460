// netcheck (agent): every `interval`, checks the business network (link state of the named
// interfaces, reachability of targets through them) and publishes a debounced verdict on
// <prefix>.check.<node>.<name>, where the heartbeat picks it up and the controller sees it at once.
#include "probe.h"
#include "verdict.h"

#include <nodeha/plugin.hpp>

#include <chrono>

namespace nodeha::netcheck {
namespace {

const nodeha_config_key kKeys[] = {
    key("interval", NODEHA_CONFIG_DURATION, "\"30s\"", "duration", "time between two checks"),
    key("interfaces", NODEHA_CONFIG_STRING_ARRAY, "[]", nullptr, "business network interfaces whose link must be up"),
    key("targets", NODEHA_CONFIG_STRING_ARRAY, "[]", nullptr,
        "addresses that must answer: \"10.0.0.1\" (ICMP echo), \"tcp:10.0.0.1:22\"; \"@IFACE\" picks the interface"),
    key("timeout", NODEHA_CONFIG_DURATION, "\"1s\"", "duration", "time one probe may take"),
    key("fail_after", NODEHA_CONFIG_INTEGER, "3", "checks", "consecutive failures before the verdict turns (and successes to turn back)"),
    key("name", NODEHA_CONFIG_STRING, "\"netcheck\"", nullptr, "name of the health check in heartbeats"),
};

struct Item {
  std::string interface;
  std::optional<Target> target;  // none: the interface's link state
  Debounced state;
  std::string detail;
  Metric up;
};

class NetCheck : public Plugin {
 public:
  explicit NetCheck(Host h) : Plugin(std::move(h)) {
    const auto& c = host().config();
    interval_ = host().duration("interval");
    timeout_ = host().duration("timeout");
    name_ = c.at("name").get<std::string>();
    if (name_.empty() || name_.find_first_of(" .*>") != std::string::npos)
      throw ConfigError("name \"" + name_ + "\" must be a non-empty word without spaces, '.', '*' or '>' (it is part of a subject)");
    int fail_after = c.at("fail_after").get<int>();
    if (fail_after < 1) throw ConfigError("fail_after must be at least 1");
    if (interval_ <= timeout_) throw ConfigError("interval must be longer than timeout");
    auto interfaces = c.at("interfaces").get<std::vector<std::string>>();
    for (const auto& i : interfaces) items_.push_back({i, std::nullopt, Debounced(fail_after), "", {}});
    std::string default_interface = interfaces.empty() ? "" : interfaces.front();
    for (const auto& text : c.at("targets").get<std::vector<std::string>>()) {
      auto t = parse_target(text, default_interface);
      if (!t) throw ConfigError(t.status().message());
      items_.push_back({t->interface, t.value(), Debounced(fail_after), "", {}});
    }
    if (items_.empty()) throw ConfigError("nothing to check: set interfaces and/or targets");
    subject_ = host().subject("check." + host().node_id() + "." + name_);
  }

  Status start() override {
    for (auto& i : items_) {
      i.up = host().gauge("nodeha_netcheck_up", "1 when the business network item is reachable (debounced)",
                          {{"interface", i.interface}, {"target", i.target ? i.target->label() : "link"}});
      i.up.set(1);
    }
    auto t = host().timer(Millis(0), interval_, [this] { run(); });
    return t ? Status::ok() : t.status();
  }

 private:
  // On the event thread: probes go to a worker; results come back here.
  void run() {
    if (in_flight_) return;  // the previous round is still probing
    in_flight_ = true;
    std::vector<Item*> items;
    for (auto& i : items_) items.push_back(&i);
    host().spawn([this, items] {
      auto raw = std::make_shared<std::vector<ProbeResult>>();
      for (auto* i : items) raw->push_back(i->target ? probe(*i->target, timeout_) : link_up(i->interface));
      host().post([this, raw] { settle(*raw); });
    });
  }

  void settle(const std::vector<ProbeResult>& raw) {
    in_flight_ = false;
    std::vector<ItemResult> results;
    bool changed = false;
    for (size_t k = 0; k < items_.size(); ++k) {
      Item& i = items_[k];
      if (!raw[k].ok) i.detail = raw[k].detail;
      if (i.state.feed(raw[k].ok)) {
        changed = true;
        std::string what = i.target ? i.target->label() + " via " + i.interface : i.interface + " link";
        if (i.state.up()) host().info(what + " is back");
        else host().warn(what + " failed " + std::to_string(host().config().at("fail_after").get<int>()) +
                         " times in a row: " + i.detail);
      }
      i.up.set(i.state.up() ? 1 : 0);
      results.push_back({i.interface, i.target ? i.target->label() : "", i.state.up(), i.detail});
    }
    Verdict v = summarize(results);
    nlohmann::json items = nlohmann::json::array();
    for (const auto& r : results)
      items.push_back({{"interface", r.interface}, {"target", r.target.empty() ? "link" : r.target}, {"up", r.up}});
    nlohmann::json msg = {{"node", host().node_id()},
                          {"name", name_},
                          {"ok", v.ok},
                          {"detail", v.detail},
                          {"changed", changed},
                          {"items", items},
                          {"time", std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch()).count()}};
    // Every round, so the heartbeat always carries a fresh verdict; a change reaches the
    // controller at once rather than at the next heartbeat.
    if (auto s = host().publish(subject_, msg.dump()); !s) host().warn(s.message());
  }

  Millis interval_{}, timeout_{};
  std::string name_, subject_;
  std::vector<Item> items_;
  bool in_flight_ = false;
};

}  // namespace
}  // namespace nodeha::netcheck

NODEHA_PLUGIN(nodeha::netcheck::NetCheck, "netcheck", "0.1.0", "checks the business network (agent)",
              nodeha::kAgentRole, nodeha::netcheck::kKeys)
