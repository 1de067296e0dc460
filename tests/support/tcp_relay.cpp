#include "tcp_relay.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace nodeha::test {

namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Writes all of `data` (loopback: blocking writes are short).
bool write_all(int fd, const char* data, ssize_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, static_cast<size_t>(size));
    if (n <= 0) return false;
    data += n;
    size -= n;
  }
  return true;
}

}  // namespace

TcpRelay::TcpRelay(int target_port) : target_port_(target_port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto a = loopback(0);
  socklen_t len = sizeof a;
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 16) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "tcp relay: cannot listen on loopback";
    return;
  }
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { run(); });
}

TcpRelay::~TcpRelay() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void TcpRelay::run() {
  std::vector<std::pair<int, int>> pairs;  // client side, server side
  auto drop = [&](size_t i) {
    close(pairs[i].first);
    close(pairs[i].second);
    pairs.erase(pairs.begin() + static_cast<std::ptrdiff_t>(i));
  };
  char buf[65536];
  while (!stop_) {
    if (held_) {  // nothing read, nothing accepted: it all waits in the kernel's buffers
      poll(nullptr, 0, 20);
      continue;
    }
    std::vector<pollfd> fds;
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const auto& [c, s] : pairs) {
      fds.push_back({c, POLLIN, 0});
      fds.push_back({s, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), 20) <= 0) continue;  // re-reads held_ and stop_
    for (size_t i = pairs.size(); i-- > 0;) {
      for (int side = 0; side < 2; ++side) {
        if (!(fds[1 + 2 * i + side].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        int from = side == 0 ? pairs[i].first : pairs[i].second;
        int to = side == 0 ? pairs[i].second : pairs[i].first;
        ssize_t n = read(from, buf, sizeof buf);
        if (n <= 0 || !write_all(to, buf, n)) {
          drop(i);
          break;
        }
      }
    }
    if (fds[0].revents & POLLIN) {
      int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      auto a = loopback(target_port_);
      if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {  // the server is down
        close(s);
        close(c);
        continue;
      }
      pairs.emplace_back(c, s);
    }
  }
  for (size_t i = pairs.size(); i-- > 0;) drop(i);
}

}  // namespace nodeha::test
