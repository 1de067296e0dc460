// The file_check fixture end to end on a real nats-server: a controller (1 s heartbeats, 3
// misses) and an agent (libvirt test driver) running heartbeat and file_check. The node record
// follows the file: `normal` while it exists, `error` naming the check and the path once it is
// removed, `normal` again once it is back.
#include "bus.h"
#include "host_process.h"
#include "nats_server.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <mutex>

namespace nodeha::test {
namespace {

using json = nlohmann::json;

class FileCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    ASSERT_TRUE(bus_->subscribe("nodeha.check.node-a.file_check", "", [this](Message m) {
      std::lock_guard lock(mu_);
      verdicts_.push_back(json::parse(m.data, nullptr, false));
    }).is_ok());
  }

  std::string controller_config() const {
    return host_tables("controller", "ctl", nats_.url()) +
           "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\n";
  }
  std::string agent_config(const std::string& node) const {
    return host_tables("agent", node, nats_.url()) + "[libvirt]\nuri = \"test:///default\"\n" +
           "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\ndisk_path = \"/\"\n"
           "[[plugin]]\nlibrary = \"file_check\"\npath = \"" + marker_ + "\"\n";
  }
  // host_tables names only the shipped plugins; the fixture lives beside them.
  static std::vector<std::string> with_fixtures() { return {"host.plugin_path=[\"{plugins}\", \"{fixtures}\"]"}; }

  json node_record(const std::string& node) {
    auto e = bus_->kv_get("nodes", node);
    return e ? json::parse(e->value) : json::object();
  }
  // The record's verdict of the file_check check; null when the record does not carry one.
  static json file_check_of(const json& record) {
    for (const auto& c : record.value("checks", json::array()))
      if (c.value("name", "") == "file_check") return c;
    return nullptr;
  }

  // The verdicts published since `from` (an index into all of them).
  std::vector<json> verdicts_since(size_t from) {
    std::lock_guard lock(mu_);
    return {verdicts_.begin() + static_cast<std::ptrdiff_t>(std::min(from, verdicts_.size())), verdicts_.end()};
  }
  size_t verdict_count() {
    std::lock_guard lock(mu_);
    return verdicts_.size();
  }

  NatsServer nats_;
  std::unique_ptr<host::Bus> bus_;
  std::mutex mu_;
  std::vector<json> verdicts_;
  TempDir files_;
  std::string marker_ = files_.write("healthy", "ok\n");
};

TEST_F(FileCheck, NodeIsErrorWhileTheFileIsMissingAndNormalOnceItIsBack) {
  HostProcess ctl(controller_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  HostProcess agent(agent_config("node-a"), with_fixtures());
  ASSERT_TRUE(agent.wait_ready()) << agent.log();

  // Normal, and because the check passes, not because it is absent.
  json record;
  ASSERT_TRUE(wait_until([&] {
    record = node_record("node-a");
    return record.value("monitor", "") == "normal" && file_check_of(record).is_object();
  })) << record << ctl.log() << agent.log();
  EXPECT_EQ(file_check_of(record)["ok"], true) << record;
  EXPECT_EQ(record["reason"], "") << record;

  size_t before_removal = verdict_count();
  ASSERT_EQ(std::remove(marker_.c_str()), 0);
  ASSERT_TRUE(wait_until([&] { return (record = node_record("node-a")).value("monitor", "") == "error"; }, 5s))
      << record << ctl.log() << agent.log();
  EXPECT_EQ(record["reason"], "file_check: " + marker_ + " is missing") << record;
  EXPECT_EQ(file_check_of(record)["ok"], false) << record;

  // Published every round, not only on change, in netcheck's format.
  std::vector<json> failing;
  ASSERT_TRUE(wait_until([&] {
    failing.clear();
    for (auto& v : verdicts_since(before_removal))
      if (v.is_object() && v.value("ok", true) == false) failing.push_back(v);
    return failing.size() >= 2;
  }, 5s)) << agent.log();
  EXPECT_EQ(failing[0]["node"], "node-a");
  EXPECT_EQ(failing[0]["name"], "file_check");
  EXPECT_EQ(failing[0]["detail"], marker_ + " is missing");
  EXPECT_EQ(failing[0]["changed"], true);
  EXPECT_EQ(failing[1]["changed"], false);
  EXPECT_EQ(failing[0]["items"], json::parse(R"([{"path":")" + marker_ + R"(","up":false}])"));
  EXPECT_TRUE(failing[0]["time"].is_number_integer()) << failing[0];

  std::ofstream(marker_) << "ok\n";
  ASSERT_TRUE(wait_until([&] { return (record = node_record("node-a")).value("monitor", "") == "normal"; }, 5s))
      << record << ctl.log() << agent.log();
  EXPECT_EQ(record["reason"], "") << record;
  EXPECT_EQ(file_check_of(record)["ok"], true) << record;
}

}  // namespace
}  // namespace nodeha::test
