// Prometheus and Alertmanager for alerting tests, with Alertmanager's webhook target inside the
// test: AlertStack starts all three on loopback, in the test's own network namespace or in one of
// a TestNetwork (netns.h), Prometheus with the project's rules and the scrape jobs it is given.
// Needs the Debian packages prometheus and prometheus-alertmanager.
#pragma once

#include "process.h"
#include "wait.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace nodeha::test {

// Alertmanager's webhook target: an HTTP server on 127.0.0.1:<ephemeral> in network namespace
// `netns` ("" for the test's own), serving one request per connection on a thread of its own.
// Every POSTed JSON body is kept with the time it arrived; anything else is kept as malformed.
//
// Thread contract: the accessors may be called from any thread.
class WebhookReceiver {
 public:
  using Clock = std::chrono::steady_clock;
  struct Notification {
    Clock::time_point at;
    nlohmann::json body;
  };
  // A notification carrying one alert: when it arrived, the alert, the notification's status.
  struct Delivery {
    Clock::time_point at;
    nlohmann::json alert;
    std::string group_status;
  };

  // Listening when it returns, or the test fails (ADD_FAILURE) and port() is 0.
  explicit WebhookReceiver(const std::string& netns = "");
  ~WebhookReceiver();
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  int port() const { return port_; }
  // The URL Alertmanager posts to (reachable from `netns`).
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/alerts"; }

  std::vector<Notification> notifications() const;
  // The raw requests that were not a POST with a JSON object.
  std::vector<std::string> malformed() const;
  // The first delivery of alert `alertname` for `node` with `status` (firing / resolved).
  std::optional<Delivery> find(const std::string& status, const std::string& alertname,
                               const std::string& node) const;
  // Every delivery of alert `alertname` with `status`, any node, in the order they arrived.
  std::vector<Delivery> all(const std::string& status, const std::string& alertname) const;
  // Every notification body and malformed request, one a line (for failure messages).
  std::string text() const;

 private:
  void serve();
  void handle(int conn);

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Notification> received_;
  std::vector<std::string> malformed_;
};

struct AlertStackOptions {
  // Network namespace that Prometheus, Alertmanager and the webhook receiver run in; "" for the
  // test's own. One AlertStack a namespace: inside one it listens on 9090 and 9093.
  std::string netns;
  // Scrape jobs: job name -> host:port targets (reachable from `netns`).
  std::vector<std::pair<std::string, std::vector<std::string>>> jobs;
  // Prometheus rule file.
  std::string rules = NODEHA_SOURCE_DIR "/config/prometheus/nodeha-rules.yml";
};

// Alertmanager (gossip off; grouped by alertname and node, 1 s group wait and interval, resolved
// alerts sent) posting to a WebhookReceiver, and Prometheus (1 s scrape, evaluation and alert
// resend) sending to it. Everything is stopped on destruction.
//
// Thread contract: one test thread uses the object; webhook() is as thread-safe as the receiver.
class AlertStack {
 public:
  // Starts the receiver, Alertmanager and Prometheus and waits (30 s each) until both answer
  // /-/ready. On failure ready() is false, error() says why, and the test fails (ADD_FAILURE,
  // with the logs).
  explicit AlertStack(AlertStackOptions options);
  ~AlertStack();
  AlertStack(const AlertStack&) = delete;
  AlertStack& operator=(const AlertStack&) = delete;

  bool ready() const { return ready_; }
  std::string error() const { return error_; }

  // An instant query: the result vector, empty on any failure.
  nlohmann::json query(const std::string& expr) const;
  // The value of a one-element instant vector; nullopt unless exactly one sample.
  std::optional<double> query_value(const std::string& expr) const;

  WebhookReceiver& webhook() { return webhook_; }
  // Both processes' output, for failure messages.
  std::string logs() const;
  // host:port of each (in the options' netns).
  std::string prometheus_address() const { return "127.0.0.1:" + std::to_string(prometheus_port_); }
  std::string alertmanager_address() const { return "127.0.0.1:" + std::to_string(alertmanager_port_); }

 private:
  std::unique_ptr<Process> start(const std::string& name, std::vector<std::string> argv);
  // Waits until `proc` answers /-/ready on `address`; false with error_ set (and the test failed).
  bool wait_ready(Process& proc, const std::string& address, const std::string& package);

  // Declared first so that it is removed last, after the processes below stopped.
  TempDir dir_;
  AlertStackOptions options_;
  WebhookReceiver webhook_;
  int alertmanager_port_ = 0;
  int prometheus_port_ = 0;
  std::unique_ptr<Process> alertmanager_;
  std::unique_ptr<Process> prometheus_;
  bool ready_ = false;
  std::string error_;
};

}  // namespace nodeha::test
