// Prometheus and Alertmanager for the demo, with the shipped rules and routing
// (config/prometheus/nodeha-rules.yml, alertmanager.yml), on free loopback ports.
//
// Prometheus scrapes every second (the shipped example says 5 s). Alertmanager runs the shipped
// alertmanager.yml with its webhook URL pointed at a receiver of the demo's own, which appends
// every notification (one JSON document a line) to <dir>/notifications.jsonl.
//
// Thread contract: construct, start and read from one thread; the receiver has a thread of its own.
#pragma once

#include "process.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace nodeha::demo {

class Monitoring {
 public:
  explicit Monitoring(std::string dir);
  ~Monitoring();  // Prometheus, Alertmanager, then the receiver
  Monitoring(const Monitoring&) = delete;
  Monitoring& operator=(const Monitoring&) = delete;

  // Starts both and waits until they are ready (30 s each); false with the reason in `error`.
  bool start(const std::vector<std::string>& controllers, const std::vector<std::string>& agents, std::string* error);
  // True once every scrape target is up (the caller waits on it).
  bool targets_up(size_t expected) const;

  std::string prometheus_address() const { return "127.0.0.1:" + std::to_string(prometheus_port_); }
  std::string alertmanager_address() const { return "127.0.0.1:" + std::to_string(alertmanager_port_); }
  std::string notifications_path() const { return dir_ + "/notifications.jsonl"; }

 private:
  void serve_webhook();

  std::string dir_;
  int prometheus_port_ = 0;
  int alertmanager_port_ = 0;
  int webhook_fd_ = -1;
  int webhook_port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread webhook_;
  std::unique_ptr<test::Process> alertmanager_;
  std::unique_ptr<test::Process> prometheus_;
};

}  // namespace nodeha::demo
