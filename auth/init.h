// `nodeha auth init`: from a list of nodes, controllers and operators, everything a cluster needs
// to run its bus with TLS and per-identity permissions, written into one new directory:
//   ca.pem, ca-key.pem           the bus's CA (the key stays with whoever makes credentials)
//   server-cert.pem, server-key.pem   for every nats-server of the cluster
//   nats-auth.conf               the nats-server include: tls {} and one nkey user per identity
//   creds/<identity>.cred        one credential per identity (mode 0600), see credential.h
// Everything is checked before the first file is written; an existing file is never replaced.
#pragma once

#include <nodeha/plugin.hpp>

#include <string>
#include <vector>

namespace nodeha::auth {

struct InitRequest {
  std::vector<std::string> nodes, controllers, admins, viewers;
  std::string prefix = "nodeha";
  std::string out_dir;
  std::string server_dir;  // where the servers read their certificate; empty: out_dir (absolute)
  std::vector<std::string> hosts, ips;  // the servers' names, for their certificate
  int websocket_port = 0;                      // nats-server's websocket listener for the web page; 0: none
  std::vector<std::string> websocket_origins;  // the page's origins (https://host:8480); empty: any
  int ca_days = 3650;
  int cert_days = 825;
};

// The files written, in order; INVALID (nothing written) on a bad request or an existing file.
Result<std::vector<std::string>> init_bus_security(const InitRequest& request);

}  // namespace nodeha::auth
