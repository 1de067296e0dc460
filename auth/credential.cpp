#include "credential.h"

#include "nkey.h"

#include <nats/nats.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/stat.h>

namespace nodeha::auth {
namespace {

constexpr const char* kKeys[] = {"identity", "role", "inbox_prefix", "seed"};

Status invalid(const std::string& text) { return Status(NODEHA_ERR_INVALID, text); }

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

Result<std::string> read_secret(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return invalid(fmt::format("{}: {}", path, std::strerror(errno)));
  if (st.st_mode & 077)
    return invalid(fmt::format("{}: readable by others (mode {:04o}); a credential must be private: chmod 600 {}", path,
                               st.st_mode & 07777, path));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return invalid(fmt::format("{}: cannot read", path));
  return text.str();
}

natsStatus sign_nonce(char** error_text, unsigned char** signature, int* length, const char* nonce, void* closure) {
  natsStatus s = nats_Sign(static_cast<const std::string*>(closure)->c_str(), nonce, signature, length);
  if (s != NATS_OK) *error_text = strdup("nodeha credential: signing the server's nonce failed");
  return s;
}

Status check(natsStatus s, const std::string& what) {
  if (s == NATS_OK) return Status::ok();
  const char* text = nats_GetLastError(nullptr);
  return invalid(fmt::format("{}: {}", what, text && *text ? text : natsStatus_GetText(s)));
}

}  // namespace

std::string format_credential(const Credential& c) {
  return fmt::format(
      "# nodeha bus credential: {} \"{}\", made by `nodeha auth init`.\n"
      "# Whoever holds this file is {} on the bus: keep it secret (mode 0600).\n"
      "identity = \"{}\"\nrole = \"{}\"\ninbox_prefix = \"{}\"\nseed = \"{}\"\n",
      c.role, c.identity, c.identity, c.identity, c.role, c.inbox_prefix, c.seed);
}

Result<Credential> parse_credential(const std::string& text) {
  std::map<std::string, std::string> values;
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    std::string key = eq == std::string::npos ? "" : trim(line.substr(0, eq));
    std::string value = eq == std::string::npos ? "" : trim(line.substr(eq + 1));
    bool known = std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
    if (!known || value.size() < 2 || value.front() != '"' || value.back() != '"')
      return invalid(fmt::format("line {}: expected one of identity, role, inbox_prefix, seed = \"value\"", n));
    values[key] = value.substr(1, value.size() - 2);
  }
  for (const char* k : kKeys)
    if (values[k].empty()) return invalid(fmt::format("no '{}' line", k));
  return Credential{values["identity"], values["role"], values["inbox_prefix"], values["seed"]};
}

Result<std::unique_ptr<BusLogin>> BusLogin::apply(natsOptions* opts, const ClientSecurity& security) {
  std::unique_ptr<BusLogin> login(new BusLogin());
  Status st;
  if (const std::string& file = security.credentials; !file.empty()) {
    auto text = read_secret(file);
    if (!text) return text.status();
    if (text.value().find("BEGIN NATS USER JWT") != std::string::npos) {
      st = check(natsOptions_SetUserCredentialsFromFiles(opts, file.c_str(), nullptr), "credentials " + file);
    } else {
      auto parsed = parse_credential(text.value());
      if (!parsed) return invalid(fmt::format("credentials {}: {}", file, parsed.status().message()));
      login->credential_ = std::move(parsed.value());
      auto pub = public_key_of_seed(login->credential_.seed);
      if (!pub) return invalid(fmt::format("credentials {}: {}", file, pub.status().message()));
      st = check(natsOptions_SetNKey(opts, pub.value().c_str(), &sign_nonce, &login->credential_.seed), "nkey");
      if (st)
        st = check(natsOptions_SetCustomInboxPrefix(opts, login->credential_.inbox_prefix.c_str()),
                   "credentials " + file + ": inbox_prefix");
    }
  }
  if (st && !security.tls_ca.empty()) {
    st = check(natsOptions_SetSecure(opts, true), "tls");
    if (st) st = check(natsOptions_LoadCATrustedCertificates(opts, security.tls_ca.c_str()), "tls_ca " + security.tls_ca);
  }
  if (st && !security.tls_cert.empty())
    st = check(natsOptions_LoadCertificatesChain(opts, security.tls_cert.c_str(), security.tls_key.c_str()),
               "tls_cert/tls_key " + security.tls_cert);
  if (!st) return st;
  return login;
}

int connect_with_retry(natsConnection** conn, natsOptions* opts) {
  natsStatus s = NATS_OK;
  for (int attempt = 0; attempt < 3; ++attempt) {
    s = natsConnection_Connect(conn, opts);
    if (s != NATS_CONNECTION_AUTH_FAILED) return s;
  }
  return s;
}

}  // namespace nodeha::auth
