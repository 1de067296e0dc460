#include "nats_server.h"

#include "netns.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

namespace nodeha::test {

namespace {
// True once the server accepts a connection (made from `options.netns`) and greets with INFO.
bool accepting(const NatsServerOptions& options, int port) {
  int fd = socket_in(options.netns, SOCK_STREAM);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, options.address.c_str(), &addr.sin_addr);
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

NatsServer::NatsServer() : NatsServer(NatsServerOptions{}) {}

NatsServer::NatsServer(NatsServerOptions options) : options_(std::move(options)) {
  port_ = options_.port != 0 ? options_.port : free_port();
  start();
}

NatsServer::~NatsServer() { stop(); }

void NatsServer::start() {
  std::filesystem::create_directories(dir_.file("js"));
  std::vector<std::string> argv{"nats-server", "-a", options_.address, "-p", std::to_string(port_), "-js", "-sd",
                                dir_.file("js")};
  // Flags given above win over the file.
  if (!options_.config.empty() || !options_.include.empty() || options_.websocket_port != 0)
    argv.insert(argv.end(), {"-c", dir_.write("nats.conf", config_file())});
  if (!options_.netns.empty()) argv = TestNetwork::argv_in(options_.netns, std::move(argv));
  proc_ = std::make_unique<Process>(std::move(argv), dir_.file("nats.log"));
  if (!wait_until([&] { return accepting(options_, port_); }, 10s))
    ADD_FAILURE() << "nats-server did not start on " << options_.address << ":" << port_
                  << (options_.netns.empty() ? "" : " in " + options_.netns) << ": " << proc_->output();
}

std::string NatsServer::config_file() const {
  // nats-server resolves an include relative to the including file.
  std::string websocket = options_.websocket_port == 0 ? "" :
      "websocket {\n  port: " + std::to_string(options_.websocket_port) + "\n  no_tls: true\n}\n";
  if (options_.include.empty()) return options_.config + "\n" + websocket;
  return websocket + "include \"" + std::filesystem::relative(options_.include, dir_.path()).string() + "\"\n" + options_.config;
}

void NatsServer::reload(const std::string& config) {
  if (options_.config.empty() && options_.include.empty())
    ADD_FAILURE() << "reload: the server was started without a config file";
  options_.config = config;
  dir_.write("nats.conf", config_file());
  auto reloads = [&] {
    std::string text = log();
    size_t n = 0;
    for (size_t at = text.find("Reloaded server configuration"); at != std::string::npos;
         at = text.find("Reloaded server configuration", at + 1))
      ++n;
    return n;
  };
  size_t before = reloads();
  proc_->signal(SIGHUP);
  if (!wait_until([&] { return reloads() > before; })) ADD_FAILURE() << "nats-server did not reload: " << log();
}

std::string NatsServer::log() const { return proc_ ? proc_->output() : ""; }

host::NatsSettings NatsServer::settings() const {
  host::NatsSettings s;
  s.servers = {url()};
  s.prefix = "nodeha";
  s.reconnect_wait_ms = 100;
  return s;
}

std::unique_ptr<host::Bus> NatsServer::client(const host::NatsSettings& s) const {
  // In the server's namespace: the connection and the client's threads (which reconnect) live there.
  Result<std::unique_ptr<host::Bus>> bus = Status(NODEHA_ERR_INTERNAL, "cannot enter network namespace " + options_.netns);
  run_in(options_.netns, [&] { bus = host::Bus::create(s, "test-client", nullptr); });
  if (!bus) {
    ADD_FAILURE() << bus.status().message();
    return nullptr;
  }
  if (!bus.value()->wait_connected(5s)) ADD_FAILURE() << "test client: no connection to " << url();
  return std::move(bus.value());
}

void NatsServer::signal(int sig) const {
  if (proc_) proc_->signal(sig);
}

void NatsServer::stop(int sig) {
  if (!proc_) return;
  proc_->signal(sig);
  if (!proc_->wait_exit(10s)) proc_->signal(SIGKILL);
  proc_.reset();
}

}  // namespace nodeha::test
