// A controller's side of the leader lease (lease.h) on its own thread: reads the key while
// following, renews it while leading, and tells the host when this controller starts or stops
// leading. Whether it may act right now is a matter of time (acting()), not of this thread being
// on time: a renewal blocked on a dead link cannot stretch the leader's time.
#pragma once

#include "bus.h"
#include "lease.h"
#include "metrics.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace nodeha::host {

class Leadership {
 public:
  // `on_change(leads, epoch, why)` runs on the lease or the deadline thread after each change; it
  // must not block (the host hands it to its own thread): renewals wait for it.
  using ChangeFn = std::function<void(bool leads, uint64_t epoch, const std::string& why)>;
  Leadership(Bus& bus, std::string me, int64_t lease_ms, Metrics& metrics, ChangeFn on_change);
  ~Leadership();
  Leadership(const Leadership&) = delete;
  Leadership& operator=(const Leadership&) = delete;

  // One read (and write) on the calling thread, then the thread starts: a lone controller leads
  // before its host says it is up.
  void start();
  // Stops the thread; releases the lease when held, so that another controller takes over at once.
  // Call once the plugins stopped acting.
  void stop();

  // Whether this controller may act now: it holds the lease and its time is not up.
  bool acting() const;
  uint64_t epoch() const { return epoch_; }

 private:
  void run();
  void round();
  int64_t now_ms() const;
  void write(const LeaseStep& step);
  void publish_state();
  void watch_deadline();
  void tell(bool leads, const std::string& why);  // under mu_

  Bus& bus_;
  Metrics& metrics_;
  ChangeFn on_change_;
  LeaseKeeper keeper_;  // the lease thread's (and start's, before it runs)
  std::chrono::steady_clock::time_point origin_ = std::chrono::steady_clock::now();
  std::atomic<int64_t> acting_until_{0};
  std::atomic<uint64_t> epoch_{0};
  bool told_leads_ = false;  // under mu_: what the host was told last
  nodeha_metric* leader_gauge_ = nullptr;
  nodeha_metric* epoch_gauge_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  std::thread deadline_thread_;
};

}  // namespace nodeha::host
