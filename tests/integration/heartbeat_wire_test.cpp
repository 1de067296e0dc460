// The heartbeat's wire versions (plugins/heartbeat/heartbeat_codec.h; docs/architecture.md,
// "Heartbeat wire format") between real processes: version 2 sends the VM list only when it
// changes; an agent and a controller one version apart work together, either way round and when
// the controller changes under a running agent; and an agent whose VM count changes says so at
// once, not an interval later.
//
// "One version apart" is played by the `wire = 1` setting, which makes either side speak and read
// exactly version 1: the encoder writes what version 1 wrote, and the decoder refuses version 2's
// fields as unknown, as version 1's did (tests/unit/heartbeat_codec_test.cpp checks both). No
// binary of the previous release is built here.
#include "operations_fixture.h"

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;

class HeartbeatWire : public Operations {
 protected:
  void SetUp() override {
    Operations::SetUp();
    ASSERT_TRUE(bus_->subscribe("nodeha.hb.node-a", "", [this](Message m) {
      std::lock_guard lock(hb_mu_);
      beats_.push_back(json::parse(m.data, nullptr, false));
    }).is_ok());
    ASSERT_TRUE(bus_->subscribe("nodeha.agent.node-a.hb.wire", "", [this](Message) { ++grants_; }).is_ok());
  }
  // The heartbeat plugin's section of a controller or agent config, with `extra` keys added.
  static std::string with_heartbeat_keys(std::string config, const std::string& extra) {
    const std::string at = "library = \"heartbeat\"\n";
    auto i = config.find(at);
    EXPECT_NE(i, std::string::npos);
    return config.insert(i + at.size(), extra);
  }
  std::unique_ptr<HostProcess> agent(const std::vector<Vm>& vms, const std::string& extra = "") {
    std::string config = test_agent_config("node-a", nodes_.path("node-a", vms, 16384), {nats_.url()});
    const std::string one = "interval = \"1s\"\n";
    config.erase(config.find(one), one.size());  // set by `extra`, or 1 s below
    auto a = std::make_unique<HostProcess>(with_heartbeat_keys(config, extra.find("interval") == std::string::npos ? one + extra : extra));
    EXPECT_TRUE(a->wait_ready()) << a->log();
    return a;
  }
  size_t beats() {
    std::lock_guard lock(hb_mu_);
    return beats_.size();
  }
  // Whether a heartbeat after the first `from` satisfies `pred`.
  bool beat_since(size_t from, const std::function<bool(const json&)>& pred) {
    std::lock_guard lock(hb_mu_);
    for (size_t i = from; i < beats_.size(); ++i)
      if (pred(beats_[i])) return true;
    return false;
  }
  static bool compact(const json& hb) { return hb.value("v", 0) == 2 && !hb.contains("vms"); }
  static bool whole_v2(const json& hb) { return hb.value("v", 0) == 2 && hb.contains("vms"); }
  static bool v1(const json& hb) { return !hb.contains("v") && hb.contains("vms") && !hb.contains("vms_digest"); }
  // The VM list node.show gives: uuid -> state.
  std::map<std::string, std::string> shown() {
    std::map<std::string, std::string> out;
    auto r = command("node.show", {{"node", "node-a"}});
    for (const auto& v : r.value("result", json::object()).value("vms", json::array())) out[v["uuid"]] = v["state"];
    return out;
  }
  bool shows(const std::vector<Vm>& vms, const std::string& state = "running") {
    auto s = shown();
    if (s.size() != vms.size()) return false;
    for (const auto& v : vms)
      if (s[v.uuid] != state) return false;
    return true;
  }
  bool stop(const std::string& uuid) {
    auto r = bus_->request("nodeha.agent.node-a.vm.stop", json{{"uuid", uuid}, {"force", true}}.dump(), 10s);
    return r && json::parse(r.value()).value("ok", false);
  }
  bool went_unreachable() {
    std::lock_guard lock(mu_);
    for (const auto& e : events_)
      if (e.value("subject", "") == "nodeha.evt.node.node-a" && e.value("to", "") == "unreachable") return true;
    return false;
  }

  std::mutex hb_mu_;
  std::vector<json> beats_;
  std::atomic<int> grants_{0};
};

// Both of version 2: after the first heartbeat the list goes only when it changed, the controller's
// view follows every change, it can ask for the whole list, and hostile grants change nothing.
TEST_F(HeartbeatWire, VersionTwoSendsTheListOnlyWhenItChangesAndTheControllerFollows) {
  auto vms = vms_of(1, 3);
  HostProcess ctl(controller_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = agent(vms);
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && shows(vms); }, 15s)) << ctl.log() << a->log();
  ASSERT_TRUE(wait_until([&] { return beat_since(0, compact); }, 10s)) << a->log();
  EXPECT_TRUE(beat_since(0, whole_v2));  // the first of version 2 carried it

  size_t before = beats();
  ASSERT_TRUE(stop(vms[0].uuid));
  ASSERT_TRUE(wait_until([&] { return shown()[vms[0].uuid] == "shutoff"; }, 10s)) << ::testing::PrintToString(shown());
  EXPECT_TRUE(beat_since(before, whole_v2));
  EXPECT_EQ(shown()[vms[1].uuid], "running");
  before = beats();
  ASSERT_TRUE(wait_until([&] { return beat_since(before, compact); }, 10s));  // and compact again after

  // The controller lost the list (here: anyone asks): the whole list comes in the next heartbeat.
  before = beats();
  ASSERT_TRUE(bus_->publish("nodeha.agent.node-a.hb.wire", R"({"wire":2,"full":true})").is_ok());
  EXPECT_TRUE(wait_until([&] { return beat_since(before, whole_v2); }, 5s));

  for (const char* bad : {"", "{", R"({"wire":"x"})", R"({"wire":2,"full":"yes"})", R"({"wire":99999})"})
    ASSERT_TRUE(bus_->publish("nodeha.agent.node-a.hb.wire", bad).is_ok());
  ASSERT_TRUE(wait_until([&] { return a->log().find("ignored a heartbeat wire grant") != std::string::npos; }, 5s));
  before = beats();
  EXPECT_TRUE(wait_until([&] { return beat_since(before, compact); }, 5s)) << a->log();
  EXPECT_EQ(ctl.metric("nodeha_heartbeats_rejected_total"), 0) << ctl.log();
  EXPECT_TRUE(a->process().running());
  EXPECT_FALSE(went_unreachable());
}

// An agent of version 1 with a controller of version 2: whole lists, all taken; the controller's
// grants go unheeded and come less and less often.
TEST_F(HeartbeatWire, AnAgentOfVersionOneWorksWithAControllerOfVersionTwo) {
  auto vms = vms_of(1, 2);
  HostProcess ctl(controller_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = agent(vms, "wire = 1\n");
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && shows(vms); }, 15s)) << ctl.log() << a->log();
  size_t from = beats();
  double received = ctl.metric("nodeha_heartbeats_received_total");
  int granted = grants_;
  ASSERT_TRUE(wait_until([&] { return beats() >= from + 6; }, 15s));
  EXPECT_FALSE(beat_since(0, [](const json& hb) { return !v1(hb); }));
  EXPECT_GE(ctl.metric("nodeha_heartbeats_received_total"), received + 5);
  EXPECT_EQ(ctl.metric("nodeha_heartbeats_rejected_total"), 0);
  // Grants at 0, 1, 3, 7, 15 s...: at most 3 in 6 heartbeats after the first two.
  EXPECT_LE(grants_ - granted, 3);
  EXPECT_GE(grants_, 1);
  EXPECT_FALSE(went_unreachable());
}

// A controller of version 1 with an agent of version 2: nobody grants, so the agent speaks 1.
TEST_F(HeartbeatWire, AControllerOfVersionOneWorksWithAnAgentOfVersionTwo) {
  auto vms = vms_of(1, 2);
  HostProcess ctl(with_heartbeat_keys(controller_config(), "wire = 1\n"));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = agent(vms);
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && shows(vms); }, 15s)) << ctl.log() << a->log();
  size_t from = beats();
  ASSERT_TRUE(wait_until([&] { return beats() >= from + 4; }, 15s));
  EXPECT_FALSE(beat_since(0, [](const json& hb) { return !v1(hb); }));
  EXPECT_EQ(grants_, 0);
  EXPECT_EQ(ctl.metric("nodeha_heartbeats_rejected_total"), 0);
  EXPECT_FALSE(went_unreachable());
}

// An agent already on version 2 when a controller of version 1 takes over (a rolling upgrade
// undone): that controller refuses its heartbeats, pings it back at the end of its window, and
// from the ping on the agent speaks version 1. The node is never judged unreachable.
TEST_F(HeartbeatWire, AnAgentOnVersionTwoFallsBackWhenAControllerOfVersionOneTakesOver) {
  auto vms = vms_of(1, 2);
  auto ctl = std::make_unique<HostProcess>(controller_config());
  ASSERT_TRUE(ctl->wait_ready()) << ctl->log();
  auto a = agent(vms);
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && beat_since(0, compact); }, 15s)) << ctl->log() << a->log();
  ctl.reset();
  HostProcess old(with_heartbeat_keys(controller_config(), "wire = 1\n"));
  ASSERT_TRUE(old.wait_ready()) << old.log();
  ASSERT_TRUE(wait_until([&] { return a->log().find("pinged back") != std::string::npos; }, 15s)) << a->log() << old.log();
  size_t from = beats();
  double received = old.metric("nodeha_heartbeats_received_total");
  ASSERT_TRUE(wait_until([&] { return beats() >= from + 3; }, 10s));
  EXPECT_FALSE(beat_since(from, [](const json& hb) { return !v1(hb); }));
  EXPECT_TRUE(wait_until([&] { return old.metric("nodeha_heartbeats_received_total") >= received + 2; }, 5s)) << old.log();
  EXPECT_TRUE(wait_until([&] { return shows(vms); }, 5s)) << ::testing::PrintToString(shown());
  EXPECT_TRUE(normal("node-a")) << node_record("node-a").dump(2);
  EXPECT_FALSE(went_unreachable()) << old.log();
}

// An agent heartbeating every 15 s stops a VM right after a heartbeat: its controller knows within
// a few seconds, not at the next heartbeat.
TEST_F(HeartbeatWire, AnAgentWhoseVmCountChangesSaysSoAtOnce) {
  auto vms = vms_of(1, 2);
  HostProcess ctl(controller_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = agent(vms, "interval = \"15s\"\n");
  auto running = [&] { return node_record("node-a").value("use", json::object()).value("vms_running", -1); };
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && running() == 2; }, 20s)) << ctl.log() << a->log();
  size_t from = beats();
  ASSERT_TRUE(wait_until([&] { return beats() > from; }, 20s));  // one just went out
  ASSERT_TRUE(stop(vms[0].uuid));
  // Well before the next heartbeat, 15 s after the last one.
  ASSERT_TRUE(wait_until([&] { return running() == 1; }, 5s)) << node_record("node-a").dump(2) << a->log();
  EXPECT_EQ(shown()[vms[0].uuid], "shutoff");
}

}  // namespace
}  // namespace nodeha::test
