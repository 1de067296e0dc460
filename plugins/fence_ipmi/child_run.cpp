#include "child_run.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace nodeha::fence_ipmi {
namespace {

constexpr size_t kMaxOutput = 64 * 1024;

// A pipe's two ends, closed on destruction.
struct Pipe {
  int fd[2] = {-1, -1};
  bool open() { return pipe2(fd, O_CLOEXEC) == 0; }
  void close_end(int i) {
    if (fd[i] >= 0) ::close(fd[i]);
    fd[i] = -1;
  }
  ~Pipe() {
    close_end(0);
    close_end(1);
  }
};

// Reads what is there; false at end of file (or an error).
bool drain(int fd, std::string* into) {
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) return false;
  if (into->size() < kMaxOutput) into->append(buf, std::min(static_cast<size_t>(n), kMaxOutput - into->size()));
  return true;
}

int exit_code(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0); }

int wait_status(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return exit_code(st);
}

}  // namespace

ChildResult run_child(const std::vector<std::string>& argv, std::chrono::steady_clock::time_point deadline,
                      const std::atomic<bool>* cancel) {
  ChildResult r;
  if (argv.empty()) {
    r.err = "nothing to run";
    return r;
  }
  Pipe out, err, exec_error;
  if (!out.open() || !err.open() || !exec_error.open()) {
    r.err = std::string("cannot make a pipe: ") + std::strerror(errno);
    return r;
  }
  // Made before fork: after it, the child may only make async-signal-safe calls.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    r.err = std::string("cannot fork: ") + std::strerror(errno);
    return r;
  }
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out.fd[1], 1);
    dup2(err.fd[1], 2);
    int report = exec_error.fd[1];
    if (report != 3) {
      dup2(report, 3);
      report = 3;
    }
    fcntl(report, F_SETFD, FD_CLOEXEC);
    close_range(4, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execvp(args[0], args.data());
    int e = errno;
    (void)!write(report, &e, sizeof e);
    _exit(127);
  }
  out.close_end(1);
  err.close_end(1);
  exec_error.close_end(1);
  r.started = true;

  // A failed exec writes its errno; a successful one closes the pipe (close-on-exec).
  int exec_errno = 0;
  ssize_t n;
  while ((n = read(exec_error.fd[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
  }
  if (n == sizeof exec_errno) {
    wait_status(pid);
    r.started = false;
    r.err = "cannot run " + argv[0] + ": " + std::strerror(exec_errno);
    return r;
  }

  pollfd fds[2] = {{out.fd[0], POLLIN, 0}, {err.fd[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || (cancel && cancel->load())) {
      kill(pid, SIGKILL);
      r.killed = true;
      break;
    }
    int rc = poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (rc < 0 && errno != EINTR) break;
    for (int i = 0; i < 2 && rc > 0; ++i)
      if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) && !drain(fds[i].fd, sinks[i])) {
        fds[i].fd = -1;
        --open_fds;
      }
  }
  // Both pipes closed: the child has exited, or closed them and goes on; either way the deadline
  // still holds.
  while (!r.killed) {
    int st = 0;
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      r.exit_code = exit_code(st);
      return r;
    }
    if (std::chrono::steady_clock::now() >= deadline || (cancel && cancel->load())) {
      kill(pid, SIGKILL);
      r.killed = true;
      break;
    }
    usleep(10000);
  }
  r.exit_code = wait_status(pid);
  return r;
}

}  // namespace nodeha::fence_ipmi
