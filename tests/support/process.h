// A child process with its output in a log file; killed on destruction if still running.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace nodeha::test {

class Process {
 public:
  // Output goes to `log_path`; stderr to `err_path` instead when one is given.
  Process(std::vector<std::string> argv, std::string log_path, std::string err_path = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig) const;
  // The exit status (or 128+signal) once it exited within `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  std::string output() const;
  const std::string& log_path() const { return log_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string log_;
};

}  // namespace nodeha::test
