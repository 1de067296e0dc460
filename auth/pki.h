// The bus's own certificate authority and the NATS servers' certificate, made with OpenSSL
// (ECDSA P-256, SHA-256). PEM text out; the caller writes the files.
#pragma once

#include <nodeha/plugin.hpp>

#include <string>
#include <vector>

namespace nodeha::auth {

struct KeyAndCert {
  std::string key_pem;   // PKCS#8 private key: secret
  std::string cert_pem;
};

// A self-signed CA (CA:TRUE, keyCertSign) valid for `days`.
Result<KeyAndCert> make_ca(const std::string& common_name, int days);

// A server certificate signed by `ca` for these DNS names and IP addresses (subjectAltName;
// clients check the name they dialled against it). INVALID when an address does not parse.
Result<KeyAndCert> make_server_cert(const KeyAndCert& ca, const std::vector<std::string>& dns_names,
                                    const std::vector<std::string>& ips, int days);

}  // namespace nodeha::auth
