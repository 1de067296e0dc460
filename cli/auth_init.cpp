#include "auth_init.h"

#include "init.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

namespace nodeha::cli {

void add_auth_commands(CLI::App& root, std::vector<Command>* commands) {
  auto* auth = root.add_subcommand("auth", "identities, permissions and TLS for the bus");
  auth->require_subcommand(1);
  auto* init = auth->add_subcommand(
      "init", "make the CA, the server certificate, nats-server permissions (nats-auth.conf) and one credential per "
              "identity (creds/<name>.cred, mode 0600) in a new directory");
  auto req = std::make_shared<auth::InitRequest>();
  init->add_option("--node", req->nodes, "an agent's node id (repeatable): it may speak only for this node");
  init->add_option("--controller", req->controllers, "a controller (repeatable)");
  init->add_option("--admin", req->admins, "an operator who may run every command (repeatable)");
  init->add_option("--viewer", req->viewers, "an operator who may list, show and watch only (repeatable)");
  init->add_option("--out", req->out_dir, "directory to create the files in (must not hold a CA yet)")->required();
  init->add_option("--host", req->hosts, "a DNS name of the NATS servers, for their certificate (repeatable)");
  init->add_option("--ip", req->ips, "an IP address of the NATS servers, for their certificate (repeatable); "
                                     "with neither --host nor --ip: localhost and 127.0.0.1");
  init->add_option("--server-dir", req->server_dir,
                   "where the servers will read server-cert.pem and server-key.pem (default: --out)");
  init->add_option("--websocket-port", req->websocket_port,
                   "also a websocket listener on this port for the web page (same certificate and identities)")
      ->check(CLI::Range(1, 65535));
  init->add_option("--websocket-origin", req->websocket_origins,
                   "an origin the web page is served from, https://host:8480 (repeatable; default: any origin)");
  init->add_option("--ca-days", req->ca_days, "validity of the CA")->capture_default_str()->check(CLI::Range(1, 36500));
  init->add_option("--cert-days", req->cert_days, "validity of the server certificate")
      ->capture_default_str()
      ->check(CLI::Range(1, 36500));
  commands->push_back({init, [req](const Globals& g) {
                         auth::InitRequest r = *req;
                         r.prefix = g.prefix;
                         auto written = auth::init_bus_security(r);
                         if (!written) {
                           if (g.json)
                             std::cout << nlohmann::json{{"error", {{"code", "bad_value"}, {"message", written.status().message()}}}}.dump(2) << '\n';
                           std::cerr << "nodeha: " << written.status().message() << '\n';
                           return kExitRefused;
                         }
                         if (g.json) {
                           std::cout << nlohmann::json{{"files", written.value()}}.dump(2) << '\n';
                         } else {
                           for (const auto& f : written.value()) std::cout << f << '\n';
                           std::cout << "Include nats-auth.conf from each nats-server's config; give each identity its "
                                        "creds/<name>.cred and everyone ca.pem (docs/security.md).\n";
                         }
                         return kExitDone;
                       }});
}

}  // namespace nodeha::cli
