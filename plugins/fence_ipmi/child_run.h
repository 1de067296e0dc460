// Runs a program to its end with a deadline, its stdout and stderr kept: the fence_ipmi plugin's
// one way of calling ipmitool. Blocking: call it from a worker (Host::spawn), never from the
// event thread. Thread-safe (nothing shared between calls).
//
// The child gets no descriptor of the host's but its own stdout and stderr (a NATS connection or
// a listening socket must not outlive the host in an orphan), and every signal unblocked. It is
// killed (SIGKILL) and reaped when the deadline passes or `cancel` becomes true (checked every
// 100 ms), so no call outlives its deadline by more than that.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

namespace nodeha::fence_ipmi {

struct ChildResult {
  bool started = false;    // false: fork or exec failed (`err` says why)
  bool killed = false;     // the deadline passed (or cancel was set) and the child was killed
  int exit_code = -1;      // its exit status, or 128 + the signal that ended it
  std::string out, err;    // each cut at 64 KiB
  bool ok() const { return started && !killed && exit_code == 0; }
};

ChildResult run_child(const std::vector<std::string>& argv, std::chrono::steady_clock::time_point deadline,
                      const std::atomic<bool>* cancel = nullptr);

}  // namespace nodeha::fence_ipmi
