// One identity's credential file, as `nodeha auth init` writes it, and how a client (the host's
// Bus, the CLI) logs in with it: nkey signature, its own inbox prefix, TLS with the cluster's CA.
//
// The file (mode 0600; refused when others may read it):
//   identity = "node-1"            the name the server's permissions were made for
//   role = "agent"                 agent | controller | admin | viewer
//   inbox_prefix = "_INBOX_node-1" replies to this identity arrive only below it
//   seed = "SU..."                 the nkey seed: the secret
// A NATS JWT .creds file ("-----BEGIN NATS USER JWT-----") is still accepted as before.
#pragma once

#include <nodeha/plugin.hpp>

#include <memory>
#include <string>

struct __natsOptions;
struct __natsConnection;

namespace nodeha::auth {

struct Credential {
  std::string identity;
  std::string role;
  std::string inbox_prefix;
  std::string seed;
};

std::string format_credential(const Credential& c);
// INVALID with the line at fault when the text is not a credential file.
Result<Credential> parse_credential(const std::string& text);

// What a client presents: each file optional (empty: not used).
struct ClientSecurity {
  std::string credentials;  // a nodeha credential file or a NATS .creds file
  std::string tls_ca;       // CA bundle the server's certificate must chain to; turns TLS on
  std::string tls_cert, tls_key;  // client certificate, for servers that verify clients
};

// Sets credentials, inbox prefix and TLS on `opts`. Keep the returned object alive as long as
// any connection made with `opts`: cnats' signature callback (any thread, at every
// (re)connect) reads the seed from it. INVALID naming the file and the reason on failure.
class BusLogin {
 public:
  static Result<std::unique_ptr<BusLogin>> apply(__natsOptions* opts, const ClientSecurity& security);
  const std::string& identity() const { return credential_.identity; }     // empty: no nodeha credential
  const std::string& inbox_prefix() const { return credential_.inbox_prefix; }  // empty: "_INBOX"

 private:
  Credential credential_;
};

// natsConnection_Connect, tried up to 3 times while the server answers "Authorization
// Violation": cnats 3.4.1 now and then sends CONNECT without the nonce's signature (the server
// logs "Signature missing"; ~0.5% of connects to nats-server 2.9), which the next attempt fixes.
// A credential the server does not know still fails, only three times as fast as one attempt.
int connect_with_retry(__natsConnection** conn, __natsOptions* opts);

}  // namespace nodeha::auth
