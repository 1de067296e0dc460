// A real nats-server with JetStream on a free loopback port, its store in a temp dir.
#pragma once

#include "bus.h"
#include "process.h"
#include "wait.h"

#include <memory>
#include <string>

namespace nodeha::test {

class NatsServer {
 public:
  NatsServer();  // started and accepting connections, or the test fails
  ~NatsServer();

  int port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  // Stops the server (SIGTERM, waits), keeping its store; start() brings it back on the same port.
  void stop();
  void start();
  // A connected client (the host's own Bus), reconnecting quickly; the test fails if it cannot
  // connect.
  std::unique_ptr<host::Bus> client() const;

 private:
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<Process> proc_;
};

}  // namespace nodeha::test
