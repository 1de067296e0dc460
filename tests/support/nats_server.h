// A real nats-server with JetStream on a free loopback port, its store in a temp dir; or, with
// NatsServerOptions, inside a network namespace on an address of it (tests/support/netns.h).
#pragma once

#include "bus.h"
#include "process.h"
#include "wait.h"

#include <csignal>
#include <memory>
#include <string>

namespace nodeha::test {

struct NatsServerOptions {
  std::string netns;                  // network namespace to run in; empty: the test's own
  std::string address = "127.0.0.1";  // listen address (in `netns`)
  int port = 0;                       // 0: a free loopback port
  std::string config;                 // nats-server config lines (e.g. "max_control_line: 512"); empty: none
  // A config file the server includes (e.g. the nats-auth.conf of `nodeha auth init`: TLS and
  // permissions); empty: none. client() cannot log in to such a server: the test brings its own.
  std::string include;
  // A websocket listener (the web page's browsers) on this port, without TLS; with an `include`
  // from BusSecurity, set BusIdentities::websocket_port instead (its listener has TLS). 0: none.
  int websocket_port = 0;
};

class NatsServer {
 public:
  NatsServer();  // started and accepting connections, or the test fails
  explicit NatsServer(NatsServerOptions options);
  ~NatsServer();

  int port() const { return port_; }
  const std::string& address() const { return options_.address; }
  std::string url() const { return "nats://" + options_.address + ":" + std::to_string(port_); }
  // Stops the server (`sig`, SIGTERM or SIGKILL, then waits), keeping its store; start() brings
  // it back on the same port.
  void stop(int sig = SIGTERM);
  bool running() const { return proc_ != nullptr; }
  void start();
  // Signals the running server: SIGSTOP freezes it with every connection left open, which is how
  // a cut link looks to a client (nothing answers, nothing is closed); SIGCONT thaws it.
  void signal(int sig) const;
  // Replaces the config lines and has the running server reload them (SIGHUP); returns once its
  // log says it did (the test fails if it does not within 10 s).
  void reload(const std::string& config);
  // The test client's settings: this server, reconnecting every 100 ms.
  host::NatsSettings settings() const;
  // A connected client (the host's own Bus), reconnecting quickly; the test fails if it cannot
  // connect.
  std::unique_ptr<host::Bus> client() const { return client(settings()); }
  std::unique_ptr<host::Bus> client(const host::NatsSettings& settings) const;
  std::string log() const;

 private:
  std::string config_file() const;  // the include line, then the config lines
  TempDir dir_;
  NatsServerOptions options_;
  int port_ = 0;
  std::unique_ptr<Process> proc_;
};

}  // namespace nodeha::test
