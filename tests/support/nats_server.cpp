#include "nats_server.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

namespace nodeha::test {

namespace {
// True once the server accepts a connection and greets with INFO.
bool accepting(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  bool ok = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    char buf[4] = {};
    ok = read(fd, buf, 4) == 4 && std::string(buf, 4) == "INFO";
  }
  close(fd);
  return ok;
}
}  // namespace

NatsServer::NatsServer() {
  port_ = free_port();
  start();
}

NatsServer::~NatsServer() { stop(); }

void NatsServer::start() {
  std::filesystem::create_directories(dir_.file("js"));
  proc_ = std::make_unique<Process>(
      std::vector<std::string>{"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port_), "-js", "-sd",
                               dir_.file("js")},
      dir_.file("nats.log"));
  if (!wait_until([&] { return accepting(port_); }, 10s))
    ADD_FAILURE() << "nats-server did not start on port " << port_ << ": " << proc_->output();
}

std::unique_ptr<host::Bus> NatsServer::client() const {
  host::NatsSettings s;
  s.servers = {url()};
  s.prefix = "nodeha";
  s.reconnect_wait_ms = 100;
  auto bus = host::Bus::create(s, "test-client", nullptr);
  if (!bus) {
    ADD_FAILURE() << bus.status().message();
    return nullptr;
  }
  if (!bus.value()->wait_connected(5s)) ADD_FAILURE() << "test client: no connection to " << url();
  return std::move(bus.value());
}

void NatsServer::stop() {
  if (!proc_) return;
  proc_->signal(SIGTERM);
  if (!proc_->wait_exit(10s)) proc_->signal(SIGKILL);
  proc_.reset();
}

}  // namespace nodeha::test
