// Stopping domains without holding a worker while a guest takes its time to shut down: each step
// (record `desired: stopped`, ask for a shutdown, look at the state) is one short job on a
// worker, the waits between looks are timers on the event thread, and the destroy runs on a
// thread of its own. The host's workers are
// shared by every plugin: a drain of many guests that ignore ACPI must not keep heartbeats waiting
// for a minute.
//
// Threads: stop() and stop_all() on the event thread; their callbacks run there too.
#pragma once

#include "command.h"
#include "guards.h"
#include "libvirt.h"
#include "thread_set.h"

#include <nodeha/plugin.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace nodeha::vms {

struct StopOrder {
  std::string uuid;
  Millis timeout{0};  // graceful shutdown time; zero destroys at once
  // The record cannot be written (the bus is down): stop all the same and hold the VM (guards.h).
  // Otherwise such a stop is refused, since supervision would start the VM again.
  bool stop_without_record = false;
};

struct StopResult {
  std::string uuid;
  std::string name;
  std::string state;  // libvirt's word once it ended
  bool forced = false;
  std::optional<command::Error> error;
  int64_t started = 0;  // unix ms
  int64_t finished = 0;
};

class Stopper {
 public:
  using Done = std::function<void(StopResult)>;
  using AllDone = std::function<void(std::vector<StopResult>)>;

  Stopper(const Host& host, Busy& busy, Held& held) : host_(host), busy_(busy), held_(held) {}

  // Stops one domain: `desired: stopped` in its record (when it names this node), then a graceful
  // shutdown, destroyed when it has not stopped within the timeout. A stopped domain is success.
  void stop(const StopOrder& order, Done done);
  // Stops every one of `orders`, `parallel` at a time; the results come in the orders' order.
  void stop_all(std::vector<StopOrder> orders, int parallel, AllDone done);

 private:
  struct Job;
  struct Batch;
  void begin(const std::shared_ptr<Job>& job);                     // worker
  void wait(const std::shared_ptr<Job>& job);                      // event thread: the next look after a pause
  void look(const std::shared_ptr<Job>& job);                      // worker
  void finish(const std::shared_ptr<Job>& job);                    // destroys, on a thread of destroys_
  void done(const std::shared_ptr<Job>& job);                      // worker: hands the result to the event thread
  void launch(const std::shared_ptr<Batch>& batch);                // event thread

  const Host& host_;
  Busy& busy_;
  Held& held_;
  // A destroy blocks until QEMU has exited (a second or two): each runs on a thread and a libvirt
  // connection of its own, so that a drain's destroys all go at once. Last: joined first.
  ThreadSet destroys_;
};

}  // namespace nodeha::vms
