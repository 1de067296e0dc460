// A TCP relay from a free loopback port to a loopback target port: what a test puts between one
// client and nats-server to cut that client's link alone. hold() stops forwarding both ways and
// accepts no new connection, while every connection stays open: a silent cut, as a pulled cable
// looks to the client until its keep-alives give up (nothing refused, nothing closed, nothing
// arrives). release() forwards again, with whatever waited in the sockets.
#pragma once

#include <atomic>
#include <thread>

namespace nodeha::test {

class TcpRelay {
 public:
  explicit TcpRelay(int target_port);  // listening on return, or the test fails
  ~TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  int port() const { return port_; }
  void hold() { held_ = true; }
  void release() { held_ = false; }

 private:
  void run();

  int target_port_;
  int port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> held_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;  // the relay's one thread: accepts and forwards with poll()
};

}  // namespace nodeha::test
