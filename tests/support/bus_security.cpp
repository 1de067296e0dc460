#include "bus_security.h"

#include "process.h"
#include "wait.h"

#include <filesystem>
#include <fstream>

namespace nodeha::test {

BusSecurity::BusSecurity(std::string dir, const BusIdentities& ids) : dir_(std::move(dir)) {
  args_ = {"auth", "init", "--out", dir_};
  for (const auto& [flag, names] : {std::pair{"--node", &ids.nodes}, {"--controller", &ids.controllers},
                                    {"--admin", &ids.admins}, {"--viewer", &ids.viewers}, {"--ip", &ids.ips}})
    for (const auto& n : *names) args_.insert(args_.end(), {flag, n});
  if (ids.websocket_port != 0) args_.insert(args_.end(), {"--websocket-port", std::to_string(ids.websocket_port)});
  std::filesystem::create_directories(dir_);
  std::vector<std::string> argv{NODEHA_CLI_BIN};
  argv.insert(argv.end(), args_.begin(), args_.end());
  // The log sits beside --out: auth init refuses a directory that holds a CA, not other files.
  Process init(argv, dir_ + ".init.log");
  auto status = init.wait_exit(30s);
  if (status != 0) {
    error_ = init_command() + (status ? " exited " + std::to_string(*status) : " did not end within 30 s") + ": " +
             init.output();
    return;
  }
  std::string shipped = read_file(NODEHA_SOURCE_DIR "/config/nats/nats-server.conf");
  size_t line = shipped.find("  store_dir:");
  if (line == std::string::npos) {
    error_ = "config/nats/nats-server.conf has no store_dir line to drop";
    return;
  }
  shipped.erase(line, shipped.find('\n', line) + 1 - line);
  std::ofstream(server_config()) << shipped;
}

std::string BusSecurity::init_command() const {
  std::string out = "nodeha";
  for (const auto& a : args_) out += " " + a;
  return out;
}

std::string BusSecurity::host_keys(const std::string& identity) const {
  return "credentials = \"" + credential(identity) + "\"\ntls_ca = \"" + ca() + "\"\n";
}

std::vector<std::string> BusSecurity::cli_args(const std::string& identity) const {
  return {"--creds", credential(identity), "--tls-ca", ca()};
}

host::NatsSettings BusSecurity::settings(host::NatsSettings base, const std::string& identity) const {
  base.credentials = credential(identity);
  base.tls_ca = ca();
  return base;
}

}  // namespace nodeha::test
