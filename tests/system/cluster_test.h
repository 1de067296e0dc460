// The fixture every namespace-cluster test shares (scenarios_test.cpp, control_plane_test.cpp):
// one Cluster (cluster.h) per test, its start, its checks at the end, the figures and the
// operator's commands that do not wait.
#pragma once

#include "cluster.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

namespace nodeha::test {

class ClusterTest : public ::testing::Test {
 protected:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

  // How many steps of `task` are in `state`.
  static int steps(const nlohmann::json& task, const std::string& state) {
    int n = 0;
    for (const auto& s : task.value("steps", nlohmann::json::array())) n += s.value("state", "") == state;
    return n;
  }
  // Waits until task `id` has a step running or done; the record then.
  nlohmann::json wait_started(const std::string& id, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    nlohmann::json t;
    EXPECT_TRUE(wait_until([&] {
      t = c().record("tasks", id);
      return steps(t, "running") + steps(t, "succeeded") > 0;
    }, timeout)) << t.dump(2);
    return t;
  }

  void start(ClusterOptions options = {}) {
    cluster_ = std::make_unique<Cluster>(std::move(options));
    ASSERT_NO_FATAL_FAILURE(cluster_->start());
  }
  void TearDown() override {
    if (!cluster_) return;
    // Every process ran on its own credential with the permissions `nodeha auth init` gave its
    // role, and needed no more: the server refused none of them anything. Except, where a test
    // restarts nats-server, a reply to a request the server forgot (docs/security.md): an agent's
    // to the controller, or the controller's to an agent's desk request; both are asked again,
    // and the test checks that the work got done.
    auto refused = cluster_->auth_violations();
    if (replies_lost_in_restart_)
      std::erase_if(refused, [](const std::string& line) { return line.find("Subject \"_INBOX_") != std::string::npos; });
    EXPECT_THAT(refused, ::testing::IsEmpty());
    if (HasFailure()) std::printf("%s\n", cluster_->logs().c_str());
    // Nothing of the cluster outlives it, also after a failure: no namespace, no guest process.
    std::string tag = cluster_->net().tag();
    auto guests = cluster_->all_guests();
    cluster_.reset();
    for (const auto& entry : std::filesystem::directory_iterator("/run/netns"))
      EXPECT_EQ(entry.path().filename().string().find(tag), std::string::npos) << "left behind: " << entry.path();
    for (const auto& uuid : guests)
      EXPECT_THAT(Libvirtd::processes_with(uuid), ::testing::IsEmpty()) << "a QEMU of " << uuid << " survived";
  }
  Cluster& c() { return *cluster_; }
  bool replies_lost_in_restart_ = false;

  // `[ figure   ] <test>: <what> <seconds> s`, and the same as a property of the test.
  void figure(const std::string& what, double seconds) {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::printf("[ figure   ] %s: %s %.2f s\n", name.c_str(), what.c_str(), seconds);
    RecordProperty(what, std::to_string(seconds));
  }

  // Waits until the webhook got `alertname` with `status` for the alert whose `node` label is
  // `node` ("": an alert without one); the time from `since` to its delivery, or a test failure.
  std::optional<double> delivered_for(const std::string& status, const std::string& alertname, const std::string& node,
                                      Clock::time_point since, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    std::optional<WebhookReceiver::Delivery> d;
    wait_until([&] { return (d = c().alerts().webhook().find(status, alertname, node)).has_value(); }, timeout);
    EXPECT_TRUE(d) << "no " << status << " " << alertname << (node.empty() ? "" : " for " + node) << " within "
                   << timeout.count() << " ms; webhook got:\n" << c().alerts().webhook().text();
    if (!d) return std::nullopt;
    return std::chrono::duration<double>(d->at - since).count();
  }

  // `nodeha <args> --yes --no-wait`: the task id.
  std::string begin(const std::vector<std::string>& args) {
    std::vector<std::string> a = args;
    a.insert(a.end(), {"--yes", "--no-wait"});
    auto r = c().cli(a);
    EXPECT_EQ(r.status, 0) << "nodeha " << ::testing::PrintToString(args) << ": " << r.out << r.err;
    auto doc = r.doc();
    return doc.is_object() ? doc.value("task", "") : "";
  }

  // Waits until task `id` (a migration off node 1) is inside a migration: a guest is paused on
  // its destination (the incoming copy).
  void wait_inside_migration(const std::string& id) {
    ASSERT_TRUE(wait_until([&] {
      for (int i = 2; i <= c().nodes(); ++i)
        for (const auto& d : c().libvirtd(i).domains())
          if (d.state == "paused") return true;
      return false;
    }, 30s)) << c().record("tasks", id).dump(2);
  }

  std::unique_ptr<Cluster> cluster_;
};

}  // namespace nodeha::test
