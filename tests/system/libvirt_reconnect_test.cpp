// An agent's libvirt connection survives a libvirtd crash and restart, against a real, isolated
// libvirtd (QEMU driver) with one running tiny guest: while the daemon is down the agent's
// heartbeats carry a failing `libvirt` check and the node is `error`; the guest keeps running;
// once the daemon is back the agent reopens its connection by itself and the node is `normal`
// again, reporting the guest running. Its heartbeats are 15 s apart: each change (a guest paused,
// the daemon gone, the daemon back) goes out at once, from libvirt's events or, while they do not
// come, from the agent's count of its domains.
#include "bus.h"
#include "host_process.h"
#include "libvirtd.h"
#include "nats_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

const std::string kGuestUuid = Libvirtd::guest_uuid(1);

std::string controller_config(const NatsServer& nats) {
  return "[host]\nrole = \"controller\"\nnode_id = \"ctl\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"100ms\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\nping_timeout = \"500ms\"\n";
}

std::string agent_config(const NatsServer& nats, const std::string& node, const std::string& libvirt_uri) {
  return "[host]\nrole = \"agent\"\nnode_id = \"" + node + "\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"100ms\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
         "[libvirt]\nuri = \"" + libvirt_uri + "\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"15s\"\naddresses = { management = \"127.0.0.1\" }\n"
         "disk_path = \"/\"\n";
}

// Prints how long a step took, from the previous mark.
class Stopwatch {
 public:
  void mark(const char* step) {
    auto now = std::chrono::steady_clock::now();
    std::printf("[ timing   ] %-48s %6.2f s\n", step, std::chrono::duration<double>(now - last_).count());
    std::fflush(stdout);
    last_ = now;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

class LibvirtReconnect : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
  }

  // node.show's result, or null when it does not answer.
  json show(const std::string& node) {
    auto r = bus_->request("nodeha.cmd.node.show", json{{"node", node}}.dump(), 2s);
    if (!r) return json();
    auto j = json::parse(r.value(), nullptr, false);
    return j.is_object() && j.value("ok", false) ? j["result"] : json();
  }
  // A string member of node.show's result; empty when absent (or when node.show did not answer).
  static std::string field(const json& node, const char* key) {
    return node.is_object() && node.contains(key) && node[key].is_string() ? node[key].get<std::string>() : "";
  }
  // The state of guest `uuid` in node.show's vms; empty if not reported.
  static std::string vm_state(const json& node, const std::string& uuid) {
    if (!node.is_object() || !node.contains("vms")) return "";
    for (const auto& v : node["vms"])
      if (v.value("uuid", "") == uuid) return v.value("state", "");
    return "";
  }

  NatsServer nats_;
  std::unique_ptr<host::Bus> bus_;
};

TEST_F(LibvirtReconnect, AgentReopensItsConnectionAfterLibvirtdRestarts) {
  Stopwatch watch;
  HostProcess ctl(controller_config(nats_));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  watch.mark("controller ready");

  Libvirtd libvirtd;
  ASSERT_TRUE(libvirtd.running()) << libvirtd.log();
  watch.mark("isolated libvirtd answers");
  std::string error;
  ASSERT_TRUE(libvirtd.define_and_start("tiny", kGuestUuid, 64, &error)) << error << "\n" << libvirtd.log();
  ASSERT_EQ(libvirtd.domain_state(kGuestUuid), "running");
  auto qemu = Libvirtd::processes_with(kGuestUuid);
  ASSERT_EQ(qemu.size(), 1u) << "one qemu process for the guest";
  watch.mark("guest running");

  HostProcess agent(agent_config(nats_, "node-a", libvirtd.uri()));
  ASSERT_TRUE(agent.wait_ready()) << agent.log();
  json node;
  ASSERT_TRUE(wait_until([&] {
    node = show("node-a");
    return field(node, "monitor") == "normal" && vm_state(node, kGuestUuid) == "running";
  }, 15s)) << node << "\n" << ctl.log() << agent.log();
  watch.mark("node normal, guest reported running");

  // Paused right after a heartbeat: the count of active domains does not change (a paused domain
  // is active), only libvirt's event tells it, well before the next heartbeat 15 s later.
  std::atomic<int> beats{0};
  ASSERT_TRUE(bus_->subscribe("nodeha.hb.node-a", "", [&](Message) { ++beats; }).is_ok());
  int seen = beats;
  ASSERT_TRUE(wait_until([&] { return beats > seen; }, 20s));
  ASSERT_TRUE(libvirtd.suspend(kGuestUuid, &error)) << error;
  ASSERT_TRUE(wait_until([&] { return vm_state(show("node-a"), kGuestUuid) == "paused"; }, 5s)) << agent.log();
  watch.mark("guest paused, reported paused");
  EXPECT_THAT(agent.log(), HasSubstr("libvirt's domain events come"));
  ASSERT_TRUE(libvirtd.resume(kGuestUuid, &error)) << error;
  ASSERT_TRUE(wait_until([&] { return vm_state(show("node-a"), kGuestUuid) == "running"; }, 5s)) << agent.log();

  // libvirtd crashes: the agent cannot read libvirt and says so in its heartbeats.
  libvirtd.kill();
  ASSERT_FALSE(libvirtd.running());
  watch.mark("libvirtd killed (SIGKILL)");
  ASSERT_TRUE(wait_until([&] {
    node = show("node-a");
    return field(node, "monitor") == "error";
  }, 15s)) << node << "\n" << ctl.log() << agent.log();
  watch.mark("node error");
  EXPECT_THAT(field(node, "reason"), HasSubstr("libvirt")) << node;
  // The guest does not depend on the daemon.
  EXPECT_EQ(Libvirtd::processes_with(kGuestUuid), qemu);

  // libvirtd comes back (same dirs): it reattaches to the running guest, and the agent reopens.
  ASSERT_TRUE(libvirtd.start()) << libvirtd.log();
  watch.mark("libvirtd restarted and answers");
  EXPECT_EQ(libvirtd.domain_state(kGuestUuid), "running") << libvirtd.log();
  ASSERT_TRUE(wait_until([&] {
    node = show("node-a");
    return field(node, "monitor") == "normal" && vm_state(node, kGuestUuid) == "running";
  }, 15s)) << node << "\n" << ctl.log() << agent.log();
  watch.mark("node normal again, guest reported running");
  EXPECT_EQ(Libvirtd::processes_with(kGuestUuid), qemu) << "the same qemu process throughout";
  EXPECT_THAT(agent.log(), HasSubstr("libvirt's domain events stopped"));
}

}  // namespace
}  // namespace nodeha::test
