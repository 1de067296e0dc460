// Alerting end to end, every part real: a nats-server, a controller and one agent (libvirt test
// driver) as nodeha-host processes with 1 s heartbeats, and an AlertStack (alert_stack.h):
// Prometheus scraping both with the shipped rules (config/prometheus/nodeha-rules.yml),
// Alertmanager, and a webhook receiver inside the test. Stopping the agent must page
// NodehaNodeUnreachable for its node; starting it again must resolve the alert. The times from
// the stop (restart) to the webhook are printed.
#include "alert_stack.h"
#include "host_process.h"
#include "nats_server.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

namespace nodeha::test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::string kNode = "node-a";

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string format_seconds(double s) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << s;
  return out.str();
}

// ------------------------------------------------------------------ configs

std::string controller_config(const NatsServer& nats) {
  return "[host]\nrole = \"controller\"\nnode_id = \"ctl\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"100ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:0\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\nping_timeout = \"500ms\"\n";
}

// The agent listens for /metrics on a fixed port, so that the restarted agent is the same
// Prometheus target.
std::string agent_config(const NatsServer& nats, int metrics_port) {
  return "[host]\nrole = \"agent\"\nnode_id = \"" + kNode + "\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"100ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n"
         "[libvirt]\nuri = \"test:///default\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\naddresses = { management = \"127.0.0.1\" }\n"
         "disk_path = \"/\"\n\n"
         "[[plugin]]\nlibrary = \"netcheck\"\ninterval = \"1s\"\ntimeout = \"200ms\"\nfail_after = 2\n"
         "interfaces = [\"lo\"]\n";
}

// ------------------------------------------------------------------ the test

class Alerting : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!HasFailure()) return;
    auto dump = [](const std::string& name, const std::string& text) {
      std::cerr << "----- " << name << " -----\n" << text << "\n";
    };
    if (alerts_) std::cerr << alerts_->logs();
    if (controller_) dump("controller log", controller_->log());
    if (agent_) dump("agent log", agent_->log());
    if (alerts_) dump("webhook notifications", alerts_->webhook().text());
  }

  NatsServer nats_;
  std::unique_ptr<HostProcess> controller_;
  std::unique_ptr<HostProcess> agent_;
  // Declared last so that Prometheus and Alertmanager stop first.
  std::unique_ptr<AlertStack> alerts_;
};

TEST_F(Alerting, UnreachableNodePagesAndResolves) {
  const std::string normal = "nodeha_node_monitor_state{node=\"" + kNode + "\",state=\"normal\"}";
  const std::string unreachable = "nodeha_node_monitor_state{node=\"" + kNode + "\",state=\"unreachable\"}";

  controller_ = std::make_unique<HostProcess>(controller_config(nats_));
  ASSERT_TRUE(controller_->wait_ready()) << controller_->log();
  const int agent_port = free_port();
  const std::string agent_address = "127.0.0.1:" + std::to_string(agent_port);
  agent_ = std::make_unique<HostProcess>(agent_config(nats_, agent_port));
  ASSERT_TRUE(agent_->wait_ready()) << agent_->log();
  ASSERT_EQ(agent_->metrics_address(), agent_address);
  ASSERT_TRUE(wait_until([&] { return controller_->metric(normal) == 1; }));

  alerts_ = std::make_unique<AlertStack>(AlertStackOptions{
      .jobs = {{"nodeha-controller", {controller_->metrics_address()}}, {"nodeha-agent", {agent_address}}}});
  ASSERT_TRUE(alerts_->ready()) << alerts_->error();
  const AlertStack& alerts = *alerts_;
  WebhookReceiver& webhook = alerts_->webhook();

  // Both targets scraped, and the rules see the node through the leading controller: the
  // recording rule behind NodehaNodeUnreachable has a 0 for it.
  ASSERT_TRUE(wait_until([&] {
    return alerts.query_value("up{job=\"nodeha-controller\"}") == 1.0 &&
           alerts.query_value("up{job=\"nodeha-agent\"}") == 1.0;
  }, 20s)) << alerts.query("up").dump();
  ASSERT_TRUE(wait_until([&] {
    return alerts.query_value("nodeha:node_unreachable:in_service{node=\"" + kNode + "\"}") == 0.0;
  }, 20s)) << alerts.query("nodeha:node_monitor_state:leader").dump();
  EXPECT_FALSE(webhook.find("firing", "NodehaNodeUnreachable", kNode)) << "paged while the node was up";

  // The agent stops (SIGTERM): the controller declares the node unreachable, Prometheus fires,
  // Alertmanager delivers.
  const auto stopped = Clock::now();
  agent_.reset();
  std::optional<Clock::time_point> detected;
  auto last_poll = Clock::time_point{};
  std::optional<WebhookReceiver::Delivery> fired;
  wait_until([&] {
    if (!detected && Clock::now() - last_poll >= 50ms) {
      last_poll = Clock::now();
      if (controller_->metric(unreachable) == 1) detected = last_poll;
    }
    fired = webhook.find("firing", "NodehaNodeUnreachable", kNode);
    return fired.has_value();
  }, 40s);
  ASSERT_TRUE(fired) << "no firing NodehaNodeUnreachable for " << kNode << " within 40 s of the stop; controller says "
                     << unreachable << " = " << controller_->metric(unreachable);
  EXPECT_EQ(fired->group_status, "firing");
  EXPECT_EQ(fired->alert["labels"].value("severity", ""), "critical");
  EXPECT_NE(fired->alert["annotations"].value("summary", "").find(kNode), std::string::npos) << fired->alert.dump();
  EXPECT_NE(fired->alert["annotations"].value("description", "").find("nodeha node drain " + kNode), std::string::npos)
      << fired->alert.dump();
  const double delivery = seconds(fired->at - stopped);
  std::cout << "alert delivered after " << format_seconds(delivery) << " s (controller detected the node unreachable after "
            << (detected ? format_seconds(seconds(*detected - stopped)) + " s" : std::string("?")) << ")" << std::endl;
  RecordProperty("alert_delivery_seconds", format_seconds(delivery));

  // The agent comes back on the same metrics port: the node is normal again and the alert resolves.
  const auto restarted = Clock::now();
  agent_ = std::make_unique<HostProcess>(agent_config(nats_, agent_port));
  std::optional<Clock::time_point> recovered;
  last_poll = Clock::time_point{};
  std::optional<WebhookReceiver::Delivery> resolved;
  wait_until([&] {
    if (!agent_->process().running()) return true;
    if (!recovered && Clock::now() - last_poll >= 50ms) {
      last_poll = Clock::now();
      if (controller_->metric(normal) == 1) recovered = last_poll;
    }
    resolved = webhook.find("resolved", "NodehaNodeUnreachable", kNode);
    return resolved.has_value();
  }, 40s);
  ASSERT_TRUE(agent_->process().running()) << "the restarted agent exited:\n" << agent_->log();
  ASSERT_TRUE(resolved) << "no resolved NodehaNodeUnreachable for " << kNode << " within 40 s of the restart";
  EXPECT_EQ(resolved->alert["labels"].value("severity", ""), "critical");
  const double resolution = seconds(resolved->at - restarted);
  std::cout << "alert resolved after " << format_seconds(resolution) << " s (controller saw the node normal after "
            << (recovered ? format_seconds(seconds(*recovered - restarted)) + " s" : std::string("?")) << ")" << std::endl;
  RecordProperty("alert_resolution_seconds", format_seconds(resolution));

  // Nothing else paged: one lost node of one is neither "many nodes unreachable" nor anything else.
  for (const auto& n : webhook.notifications())
    for (const auto& a : n.body.value("alerts", json::array()))
      EXPECT_EQ(a["labels"].value("alertname", ""), "NodehaNodeUnreachable") << "unexpected alert: " << a.dump();
  EXPECT_TRUE(webhook.malformed().empty());
}

}  // namespace
}  // namespace nodeha::test
