// A real nats-server with JetStream on a free loopback port, its store in a temp dir; or, with
// NatsServerOptions, inside a network namespace on an address of it (tests/support/netns.h).
#pragma once

#include "bus.h"
#include "process.h"
#include "wait.h"

#include <memory>
#include <string>

namespace nodeha::test {

struct NatsServerOptions {
  std::string netns;                  // network namespace to run in; empty: the test's own
  std::string address = "127.0.0.1";  // listen address (in `netns`)
  int port = 0;                       // 0: a free loopback port
  // A config file the server includes (e.g. the nats-auth.conf of `nodeha auth init`: TLS and
  // permissions); empty: none. client() cannot log in to such a server: the test brings its own.
  std::string include;
};

class NatsServer {
 public:
  NatsServer();  // started and accepting connections, or the test fails
  explicit NatsServer(NatsServerOptions options);
  ~NatsServer();

  int port() const { return port_; }
  const std::string& address() const { return options_.address; }
  std::string url() const { return "nats://" + options_.address + ":" + std::to_string(port_); }
  // Stops the server (SIGTERM, waits), keeping its store; start() brings it back on the same port.
  void stop();
  void start();
  // A connected client (the host's own Bus), reconnecting quickly; the test fails if it cannot
  // connect.
  std::unique_ptr<host::Bus> client() const;
  // What the server logged so far.
  std::string log() const { return proc_ ? proc_->output() : ""; }

 private:
  TempDir dir_;
  NatsServerOptions options_;
  int port_ = 0;
  std::unique_ptr<Process> proc_;
};

}  // namespace nodeha::test
