#include "init.h"

#include "credential.h"
#include "nkey.h"
#include "permissions.h"
#include "pki.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace nodeha::auth {
namespace {

namespace fs = std::filesystem;

Status invalid(const std::string& text) { return Status(NODEHA_ERR_INVALID, text); }

Status check_prefix(const std::string& prefix) {
  for (char c : prefix)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
      return invalid(fmt::format("--prefix '{}': use letters, digits, '-' and '_' (one subject token)", prefix));
  return prefix.empty() ? invalid("--prefix must not be empty") : Status::ok();
}

Result<std::vector<Identity>> identities(const InitRequest& r) {
  std::vector<Identity> out;
  for (const auto& [names, role] : {std::pair{&r.nodes, Role::kAgent}, {&r.controllers, Role::kController},
                                    {&r.admins, Role::kAdmin}, {&r.viewers, Role::kViewer}})
    for (const auto& n : *names) out.push_back({n, role});
  if (out.empty()) return invalid("name at least one identity: --node, --controller, --admin or --viewer");
  std::set<std::string> seen;
  for (const auto& id : out) {
    if (Status s = check_identity_name(id.name); !s) return s;
    if (!seen.insert(id.name).second)
      return invalid(fmt::format("'{}' is named twice; every identity needs its own name", id.name));
  }
  return out;
}

// Creates `path` with `mode`, never replacing an existing file.
Status write_new(const fs::path& path, const std::string& text, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return invalid(fmt::format("{}: {}", path.string(), std::strerror(errno)));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ::fchmod(fd, mode) == 0 && ok;  // the umask must not widen or narrow what was asked
  ok = ::close(fd) == 0 && ok;
  return ok ? Status::ok() : invalid(fmt::format("{}: write failed: {}", path.string(), std::strerror(errno)));
}

struct PlannedFile {
  fs::path path;
  std::string text;
  mode_t mode;
};

}  // namespace

Result<std::vector<std::string>> init_bus_security(const InitRequest& r) {
  if (Status s = check_prefix(r.prefix); !s) return s;
  auto ids = identities(r);
  if (!ids) return ids.status();
  if (r.out_dir.empty()) return invalid("--out DIR is required");
  if (r.websocket_port < 0 || r.websocket_port > 65535)
    return invalid(fmt::format("--websocket-port {} is not a port (1-65535)", r.websocket_port));
  for (const auto& o : r.websocket_origins)
    if ((o.rfind("https://", 0) != 0 && o.rfind("http://", 0) != 0) || o.find_first_of("\" \n") != std::string::npos)
      return invalid(fmt::format("--websocket-origin \"{}\" must be the page's origin, https://host:port", o));
  std::error_code ec;
  fs::path out = fs::absolute(r.out_dir, ec);
  if (fs::exists(out / "ca-key.pem") || fs::exists(out / "nats-auth.conf"))
    return invalid(fmt::format("{} already holds a bus CA or config; choose a new --out directory", out.string()));

  auto ca = make_ca("nodeha bus CA", r.ca_days);
  if (!ca) return ca.status();
  std::vector<std::string> hosts = r.hosts, ips = r.ips;
  if (hosts.empty() && ips.empty()) {
    hosts = {"localhost"};
    ips = {"127.0.0.1"};
  }
  auto server = make_server_cert(ca.value(), hosts, ips, r.cert_days);
  if (!server) return server.status();

  fs::path server_dir = r.server_dir.empty() ? out : fs::path(r.server_dir);
  std::vector<PlannedFile> files = {
      {out / "ca.pem", ca.value().cert_pem, 0644},
      {out / "ca-key.pem", ca.value().key_pem, 0600},
      {out / "server-cert.pem", server.value().cert_pem, 0644},
      {out / "server-key.pem", server.value().key_pem, 0600},
  };
  std::vector<UserEntry> users;
  for (const auto& id : ids.value()) {
    auto key = generate_user_nkey();
    if (!key) return key.status();
    users.push_back({id, key.value().public_key});
    Credential c{id.name, role_name(id.role), inbox_prefix_for(id.name), key.value().seed};
    files.push_back({out / "creds" / (id.name + ".cred"), format_credential(c), 0600});
  }
  ServerTls tls{(server_dir / "server-cert.pem").string(), (server_dir / "server-key.pem").string()};
  files.push_back({out / "nats-auth.conf", server_auth_config(users, r.prefix, tls, {r.websocket_port, r.websocket_origins}), 0644});

  fs::create_directories(out / "creds", ec);
  if (ec) return invalid(fmt::format("{}: {}", (out / "creds").string(), ec.message()));
  fs::permissions(out / "creds", fs::perms::owner_all, ec);
  std::vector<std::string> written;
  for (const auto& f : files) {
    if (Status s = write_new(f.path, f.text, f.mode); !s) return s;
    written.push_back(f.path.string());
  }
  return written;
}

}  // namespace nodeha::auth
