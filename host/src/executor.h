// Where plugin code runs: one EventLoop (a thread with a queue and timers) per plugin instance,
// and one WorkerPool shared by all instances for blocking work.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace nodeha::host {

using Clock = std::chrono::steady_clock;
using Task = std::function<void()>;

// A single thread running posted tasks and timers one at a time, in order.
// Thread-safe; post/timers may be called from any thread.
class EventLoop {
 public:
  explicit EventLoop(std::string name);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // False once stopped.
  bool post(Task task);
  // Runs `task` on the loop and waits for it (from another thread).
  void run_sync(const Task& task);
  // Runs `fire` after `first`, then every `period` (zero: once). `done` runs on the loop when the
  // timer will never fire again (cancelled, one-shot fired, loop stopped).
  uint64_t add_timer(std::chrono::milliseconds first, std::chrono::milliseconds period, Task fire, Task done);
  bool cancel_timer(uint64_t id);
  // Cancels every timer (their `done` run on the loop).
  void cancel_all_timers();
  bool in_loop() const { return std::this_thread::get_id() == thread_.get_id(); }
  // Cancels every timer and runs the queue dry, then ends the thread. Idempotent.
  void stop();

 private:
  struct Timer {
    Clock::time_point due;
    std::chrono::milliseconds period;
    Task fire, done;
  };
  void run();

  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  std::map<uint64_t, Timer> timers_;
  uint64_t next_timer_ = 1;
  bool stopping_ = false;
  std::thread thread_;
};

// A fixed set of threads for blocking work. Tracks work per owner so an owner can wait for its
// own jobs to finish.
class WorkerPool {
 public:
  explicit WorkerPool(size_t threads);
  ~WorkerPool();
  bool submit(const void* owner, Task task);
  // Blocks until every job submitted by `owner` has returned.
  void wait_owner(const void* owner);
  void stop();

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::pair<const void*, Task>> queue_;
  std::map<const void*, int> in_flight_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace nodeha::host
