#include "thread_set.h"

#include <cstdio>
#include <exception>

namespace nodeha {

bool ThreadSet::start(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  if (closed_) return false;
  for (uint64_t n : ended_) {
    auto it = threads_.find(n);
    if (it == threads_.end()) continue;
    it->second.join();  // its work is done: it is returning
    threads_.erase(it);
  }
  ended_.clear();
  uint64_t n = next_++;
  threads_.emplace(n, std::thread([this, n, fn = std::move(fn)] {
    // An exception must not end the process (std::terminate): the host's own workers catch too.
    try {
      fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "nodeha plugin: a thread of its own threw: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "nodeha plugin: a thread of its own threw\n");
    }
    std::lock_guard lock(mu_);
    ended_.push_back(n);
  }));
  return true;
}

void ThreadSet::join() {
  for (;;) {
    std::map<uint64_t, std::thread> threads;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      threads.swap(threads_);
      ended_.clear();
    }
    if (threads.empty()) return;
    for (auto& [n, t] : threads) t.join();
  }
}

}  // namespace nodeha
