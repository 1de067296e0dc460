#include "executor.h"

#include <pthread.h>

#include <future>

namespace nodeha::host {

EventLoop::EventLoop(std::string name) : name_(std::move(name)) {
  thread_ = std::thread([this] { run(); });
  pthread_setname_np(thread_.native_handle(), name_.substr(0, 15).c_str());
}

EventLoop::~EventLoop() { stop(); }

bool EventLoop::post(Task task) {
  bool was_empty;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    was_empty = queue_.empty();
    queue_.push_back(std::move(task));
  }
  // The loop only sleeps on an empty queue: waking it once per batch is enough.
  if (was_empty) cv_.notify_one();
  return true;
}

void EventLoop::run_sync(const Task& task) {
  if (in_loop()) {
    task();
    return;
  }
  std::promise<void> done;
  if (!post([&] {
        task();
        done.set_value();
      }))
    return;
  done.get_future().wait();
}

uint64_t EventLoop::add_timer(std::chrono::milliseconds first, std::chrono::milliseconds period, Task fire, Task done) {
  uint64_t id;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return 0;
    id = next_timer_++;
    timers_[id] = Timer{Clock::now() + first, period, std::move(fire), std::move(done)};
  }
  cv_.notify_one();
  return id;
}

bool EventLoop::cancel_timer(uint64_t id) {
  Task done;
  {
    std::lock_guard lock(mu_);
    auto it = timers_.find(id);
    if (it == timers_.end()) return false;
    done = std::move(it->second.done);
    timers_.erase(it);
    if (done && !stopping_) queue_.push_back(std::move(done));
  }
  cv_.notify_one();
  return true;
}

void EventLoop::cancel_all_timers() {
  {
    std::lock_guard lock(mu_);
    for (auto& [id, t] : timers_)
      if (t.done) queue_.push_back(std::move(t.done));
    timers_.clear();
  }
  cv_.notify_one();
}

void EventLoop::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    for (auto& [id, t] : timers_)
      if (t.done) queue_.push_back(std::move(t.done));
    timers_.clear();
  }
  cv_.notify_one();
  if (thread_.joinable() && !in_loop()) thread_.join();
}

void EventLoop::run() {
  std::unique_lock lock(mu_);
  std::deque<Task> batch;
  for (;;) {
    // Due timers first, so that a flood of messages never holds a deadline back.
    auto now = Clock::now();
    auto next = timers_.end();
    for (auto it = timers_.begin(); it != timers_.end(); ++it)
      if (next == timers_.end() || it->second.due < next->second.due) next = it;
    if (next != timers_.end() && next->second.due <= now) {
      Task fire = next->second.fire;  // copy: the timer may be cancelled while it runs
      Task done;
      if (next->second.period.count() <= 0) {
        done = std::move(next->second.done);
        timers_.erase(next);
      } else {
        // Fixed rate, but never a burst of catch-up firings after a stall.
        next->second.due = std::max(next->second.due + next->second.period, now);
      }
      lock.unlock();
      fire();
      if (done) done();
      lock.lock();
      continue;
    }
    if (!queue_.empty()) {
      batch.swap(queue_);
      lock.unlock();
      while (!batch.empty()) {
        Task t = std::move(batch.front());
        batch.pop_front();
        if (t) t();
      }
      lock.lock();
      continue;
    }
    if (stopping_) return;
    if (next == timers_.end()) cv_.wait(lock);
    else cv_.wait_until(lock, next->second.due);
  }
}

WorkerPool::WorkerPool(size_t threads) {
  for (size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { run(); });
    pthread_setname_np(threads_.back().native_handle(), "nodeha-worker");
  }
}

WorkerPool::~WorkerPool() { stop(); }

bool WorkerPool::submit(const void* owner, Task task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    queue_.emplace_back(owner, std::move(task));
    ++in_flight_[owner];
  }
  cv_.notify_one();
  return true;
}

void WorkerPool::wait_owner(const void* owner) {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return in_flight_[owner] == 0; });
  in_flight_.erase(owner);
}

void WorkerPool::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void WorkerPool::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping and drained
    auto [owner, task] = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    task();
    lock.lock();
    if (--in_flight_[owner] == 0) idle_cv_.notify_all();
  }
}

}  // namespace nodeha::host
