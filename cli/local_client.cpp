#include "local_client.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace nodeha::cli {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Waits for `events` on `fd` until `deadline`; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 60'000)));
    if (n > 0) return true;  // ready, or an error the next read/write reports
    if (n < 0 && errno != EINTR) return true;
  }
}

LocalReply unreachable(std::string why) {
  LocalReply r;
  r.outcome = LocalReply::kUnreachable;
  r.error = std::move(why);
  return r;
}

}  // namespace

LocalReply local_call(const std::string& path, const std::string& subject, const std::string& data,
                      std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return unreachable("the socket path is too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return unreachable(std::strerror(errno));
  // A local connect either succeeds or fails at once; only the exchange needs the deadline.
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return unreachable(std::strerror(errno));
  fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) | O_NONBLOCK);

  std::string line = nlohmann::json{{"subject", subject}, {"data", data}}.dump() + "\n";
  for (size_t sent = 0; sent < line.size();) {
    ssize_t n = send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_for(fd.get(), POLLOUT, deadline)) return {LocalReply::kTimeout, {}, "the agent did not take the request"};
    } else {
      return unreachable(std::string("sending the request: ") + std::strerror(errno));
    }
  }

  // The agent writes the reply and closes: read to the end.
  LocalReply reply;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      reply.body.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      if (!wait_for(fd.get(), POLLIN, deadline)) return {LocalReply::kTimeout, {}, "no answer"};
    } else {
      return unreachable(std::string("reading the reply: ") + std::strerror(errno));
    }
  }
  while (!reply.body.empty() && (reply.body.back() == '\n' || reply.body.back() == '\r')) reply.body.pop_back();
  if (reply.body.empty()) return unreachable("the agent closed the connection without an answer (did it stop?)");
  reply.outcome = LocalReply::kAnswered;
  return reply;
}

}  // namespace nodeha::cli
