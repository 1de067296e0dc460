// Threads of a plugin's own, for work that blocks for long (a step waiting on an agent, a
// guest's destroy): the host's shared workers must stay free for every plugin's short work.
//
// Threads: every method may be called from any thread, start() also from a thread of the set.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace nodeha {

class ThreadSet {
 public:
  ThreadSet() = default;
  ~ThreadSet() { join(); }
  ThreadSet(const ThreadSet&) = delete;
  ThreadSet& operator=(const ThreadSet&) = delete;

  // Runs `fn` on a new thread. False, and `fn` not run, once join() began.
  bool start(std::function<void()> fn);
  // Starts no more threads and waits for those running. Declare a set after everything its
  // threads use, or call join() first in the owner's destructor.
  void join();

 private:
  std::mutex mu_;
  bool closed_ = false;
  std::map<uint64_t, std::thread> threads_;
  std::vector<uint64_t> ended_;  // threads whose work is done: joined at the next start()
  uint64_t next_ = 0;
};

}  // namespace nodeha
