// A bus with nodeha's security on, deployed as docs/security.md says: `nodeha auth init` (the
// real CLI) makes the CA, the servers' certificate, the nats-server include (TLS, one nkey user
// per identity with its permissions) and one credential per identity in a new directory, and the
// shipped config/nats/nats-server.conf goes beside it. Its store_dir line is dropped: the harness
// gives every server a store of its own (-sd). Hosts, the CLI and test clients then log in with
// the files named here.
//
// Thread contract: made on one thread; the getters are const and safe from any thread.
#pragma once

#include "bus.h"

#include <string>
#include <vector>

namespace nodeha::test {

struct BusIdentities {
  std::vector<std::string> nodes, controllers, admins, viewers;
  // The servers' addresses, for their certificate (clients check the address they dial against
  // it); empty: auth init's default, localhost and 127.0.0.1.
  std::vector<std::string> ips;
  // nats-server's websocket listener (TLS, these identities), for the web page; 0: none.
  int websocket_port = 0;
};

class BusSecurity {
 public:
  // Runs `nodeha auth init --out <dir> ...` and writes <dir>/nats-server.conf; `dir` must hold no
  // CA yet. ok() says whether it worked, error() why not (with the CLI's output).
  BusSecurity(std::string dir, const BusIdentities& identities);

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // The `nodeha auth init` arguments used, for a person to read (the --out directory included).
  std::string init_command() const;
  // The shipped server config, which includes nats-auth.conf: NatsServerOptions::include.
  std::string server_config() const { return dir_ + "/nats-server.conf"; }
  std::string ca() const { return dir_ + "/ca.pem"; }
  std::string credential(const std::string& identity) const { return dir_ + "/creds/" + identity + ".cred"; }
  // The `[nats]` keys of a host logged in as `identity` (TOML lines).
  std::string host_keys(const std::string& identity) const;
  // `--creds FILE --tls-ca FILE`: the CLI logged in as `identity`.
  std::vector<std::string> cli_args(const std::string& identity) const;
  // `base` (e.g. NatsServer::settings()) logged in as `identity`, with TLS.
  host::NatsSettings settings(host::NatsSettings base, const std::string& identity) const;

 private:
  std::string dir_;
  std::vector<std::string> args_;
  std::string error_;
};

}  // namespace nodeha::test
