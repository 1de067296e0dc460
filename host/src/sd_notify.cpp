#include "sd_notify.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <utility>

namespace nodeha::host {

namespace {

template <class T>
std::optional<T> parse_number(const char* text) {
  if (!text || !*text) return std::nullopt;
  T v{};
  const char* end = text + std::strlen(text);
  auto [p, ec] = std::from_chars(text, end, v);
  if (ec != std::errc() || p != end) return std::nullopt;
  return v;
}

}  // namespace

std::optional<std::chrono::microseconds> watchdog_period(const char* watchdog_usec, const char* watchdog_pid,
                                                         pid_t self) {
  auto usec = parse_number<uint64_t>(watchdog_usec);
  if (!usec || *usec == 0) return std::nullopt;
  if (watchdog_pid && *watchdog_pid) {
    auto pid = parse_number<pid_t>(watchdog_pid);
    if (!pid || *pid != self) return std::nullopt;
  }
  return std::chrono::microseconds(*usec / 2);
}

SystemdNotifier SystemdNotifier::from_environment() {
  SystemdNotifier n;
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return n;
  n.path_ = path;
  if (path[0] == '@') n.address_ = std::string(1, '\0') + (path + 1);
  else n.address_ = path;
  // Only absolute paths and abstract names are systemd's; anything else is a mistake in the
  // environment, not a socket to write to.
  if ((path[0] != '/' && path[0] != '@') || n.address_.size() > sizeof(sockaddr_un::sun_path)) {
    spdlog::warn("NOTIFY_SOCKET={} is not an absolute path or @name that fits a unix address: not notifying systemd",
                 n.path_);
    return n;
  }
  n.fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (n.fd_ < 0) {
    spdlog::warn("NOTIFY_SOCKET={}: socket: {}; not notifying systemd", n.path_, std::strerror(errno));
    return n;
  }
  n.watchdog_ = watchdog_period(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), getpid());
  return n;
}

SystemdNotifier::~SystemdNotifier() {
  if (fd_ >= 0) close(fd_);
}

SystemdNotifier::SystemdNotifier(SystemdNotifier&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      address_(std::move(other.address_)),
      watchdog_(other.watchdog_),
      warned_(other.warned_) {}

SystemdNotifier& SystemdNotifier::operator=(SystemdNotifier&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    address_ = std::move(other.address_);
    watchdog_ = other.watchdog_;
    warned_ = other.warned_;
  }
  return *this;
}

Status SystemdNotifier::send(const std::string& state) const {
  if (fd_ < 0) return Status::ok();
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, address_.data(), address_.size());
  // An abstract name's length is exactly its bytes; a path's includes the terminating NUL when
  // it fits (sun_path was zeroed).
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size() +
                                         (address_[0] != '\0' && address_.size() < sizeof a.sun_path ? 1 : 0));
  ssize_t n;
  do {
    n = sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&a), len);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(state.size())) return Status::ok();
  std::string why = n < 0 ? std::strerror(errno) : "short write";
  std::string first = state.substr(0, state.find('\n'));
  // Once loudly: a watchdog ping that cannot go out fails every period the same way.
  spdlog::log(warned_ ? spdlog::level::debug : spdlog::level::warn, "NOTIFY_SOCKET={}: sending {} failed: {}", path_,
              first, why);
  warned_ = true;
  return Status(NODEHA_ERR_UNAVAILABLE, fmt::format("NOTIFY_SOCKET={}: {}: {}", path_, first, why));
}

}  // namespace nodeha::host
