// Who may do what on the bus: each identity's NATS permissions, derived from the subjects and
// buckets the plugins use (docs/security.md lists them with the tests that prove them), and the
// nats-server `authorization {}` + `tls {}` include that enforces them. Pure: no files, no I/O.
#pragma once

#include <nodeha/plugin.hpp>

#include <string>
#include <vector>

namespace nodeha::auth {

enum class Role { kAgent, kController, kAdmin, kViewer };
const char* role_name(Role r);

struct Identity {
  std::string name;  // an agent's name is its node id
  Role role;
};

// A DNS label, like a node id: [A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?. INVALID otherwise.
Status check_identity_name(const std::string& name);
// Where an identity's replies arrive; it may subscribe there and nowhere else's.
std::string inbox_prefix_for(const std::string& name);

struct Permissions {
  std::vector<std::string> publish;    // the only subjects it may publish on
  std::vector<std::string> subscribe;  // the only subjects it may subscribe to
  bool allow_responses = false;        // may answer requests it received (once, to their reply)
};
Permissions permissions_for(const Identity& id, const std::string& prefix);

struct ServerTls {
  std::string cert_file, key_file;  // paths as the server will read them
};
// nats-server's websocket listener, for the web page (docs/security.md "The websocket listener"):
// the same certificate and the same users as the client port, so a browser signs in with an
// identity's nkey and gets exactly that identity's permissions.
struct WebsocketListener {
  int port = 0;                              // 0: no websocket listener
  std::vector<std::string> allowed_origins;  // empty: any origin (the nkey is the gate)
};
struct UserEntry {
  Identity identity;
  std::string public_key;  // the identity's nkey
};
// The include file for nats-server (2.9 syntax): a tls block and one nkey user per identity.
// With a websocket port: a websocket block too.
std::string server_auth_config(const std::vector<UserEntry>& users, const std::string& prefix, const ServerTls& tls,
                               const WebsocketListener& websocket = {});

}  // namespace nodeha::auth
