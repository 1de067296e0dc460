#include "probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace nodeha::netcheck {
namespace {

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

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

bool bind_to(int fd, const std::string& interface, std::string* why) {
  if (interface.empty()) return true;
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, interface.c_str(), static_cast<socklen_t>(interface.size())) == 0)
    return true;
  *why = errno_text(("bind to " + interface).c_str());
  return false;
}

uint16_t checksum(const void* data, size_t len) {
  auto* p = static_cast<const uint16_t*>(data);
  uint32_t sum = 0;
  for (; len > 1; len -= 2) sum += *p++;
  if (len) sum += *reinterpret_cast<const uint8_t*>(p);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

ProbeResult tcp(const Target& t, std::chrono::milliseconds timeout) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return {false, errno_text("socket")};
  std::string why;
  if (!bind_to(fd.get(), t.interface, &why)) return {false, why};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(t.port));
  inet_pton(AF_INET, t.address.c_str(), &addr.sin_addr);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return {true, ""};
  if (errno != EINPROGRESS) return {false, errno_text("connect")};
  pollfd p{fd.get(), POLLOUT, 0};
  int n = poll(&p, 1, static_cast<int>(timeout.count()));
  if (n == 0) return {false, "no answer within " + std::to_string(timeout.count()) + " ms"};
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return {false, std::string("connect: ") + std::strerror(err)};
  return {true, ""};
}

ProbeResult icmp(const Target& t, std::chrono::milliseconds timeout) {
  static std::atomic<uint16_t> next_seq{1};
  Fd fd(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP));
  if (fd.get() < 0) return {false, errno_text("raw ICMP socket (needs root or CAP_NET_RAW)")};
  std::string why;
  if (!bind_to(fd.get(), t.interface, &why)) return {false, why};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, t.address.c_str(), &addr.sin_addr);
  icmphdr req{};
  req.type = ICMP_ECHO;
  req.un.echo.id = htons(static_cast<uint16_t>(getpid()));
  req.un.echo.sequence = htons(next_seq++);
  req.checksum = checksum(&req, sizeof req);
  if (sendto(fd.get(), &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return {false, errno_text("send echo")};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    int n = poll(&p, 1, remaining_ms(deadline));
    if (n <= 0) return {false, "no echo reply within " + std::to_string(timeout.count()) + " ms"};
    char buf[1500];
    sockaddr_in from{};
    socklen_t flen = sizeof from;
    ssize_t got = recvfrom(fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
    if (got < static_cast<ssize_t>(sizeof(iphdr))) continue;
    auto* ip = reinterpret_cast<iphdr*>(buf);
    size_t hl = static_cast<size_t>(ip->ihl) * 4;
    if (got < static_cast<ssize_t>(hl + sizeof(icmphdr))) continue;
    auto* reply = reinterpret_cast<icmphdr*>(buf + hl);
    if (reply->type == ICMP_ECHOREPLY && reply->un.echo.id == req.un.echo.id &&
        reply->un.echo.sequence == req.un.echo.sequence && from.sin_addr.s_addr == addr.sin_addr.s_addr)
      return {true, ""};
  }
}

}  // namespace

ProbeResult link_up(const std::string& interface) {
  std::ifstream in("/sys/class/net/" + interface + "/operstate");
  if (!in) return {false, "does not exist"};
  std::string state;
  in >> state;
  if (state == "up" || state == "unknown") return {true, ""};
  return {false, "is " + state};
}

ProbeResult probe(const Target& target, std::chrono::milliseconds timeout) {
  return target.method == Method::Tcp ? tcp(target, timeout) : icmp(target, timeout);
}

}  // namespace nodeha::netcheck
