#include "config.h"
#include "lease.h"

#include <toml++/toml.h>

#include <fmt/format.h>
#include <nodeha/ids.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>

namespace nodeha::host {
namespace {

// The host's own sections: every key declared once, with type, default and meaning.
const std::vector<KeyDecl>& host_keys() {
  static const std::vector<KeyDecl> k = {
      {"node_id", NODEHA_CONFIG_STRING, "\"\"", "", "this node's id; empty: the machine's hostname"},
      {"role", NODEHA_CONFIG_STRING, std::nullopt, "", "agent or controller"},
      {"plugin_path", NODEHA_CONFIG_STRING_ARRAY, "[]", "", "directories searched for plugin libraries"},
      {"state_dir", NODEHA_CONFIG_STRING, "\"/var/lib/nodeha\"", "", "where the host and plugins keep local state"},
      {"local_socket", NODEHA_CONFIG_STRING, "\"\"", "", "unix socket for `nodeha local`; empty: <state_dir>/local.sock"},
      {"log_level", NODEHA_CONFIG_STRING, "\"info\"", "", "debug, info, warn or error"},
      {"workers", NODEHA_CONFIG_INTEGER, "8", "threads", "worker threads for blocking plugin work"},
      {"lease", NODEHA_CONFIG_DURATION, "\"2s\"", "",
       "controllers: the leader lease; a follower takes over this long after the leader's last renewal"},
  };
  return k;
}
const std::vector<KeyDecl>& nats_keys() {
  static const std::vector<KeyDecl> k = {
      {"servers", NODEHA_CONFIG_STRING_ARRAY, "[\"nats://127.0.0.1:4222\"]", "", "NATS server URLs"},
      {"credentials", NODEHA_CONFIG_STRING, "\"\"", "", "this host's credential (creds/<node>.cred from `nodeha auth init`, or a NATS .creds file)"},
      {"tls_ca", NODEHA_CONFIG_STRING, "\"\"", "", "CA bundle that signs the servers' certificates (ca.pem from `nodeha auth init`); turns TLS on"},
      {"tls_cert", NODEHA_CONFIG_STRING, "\"\"", "", "client certificate (PEM)"},
      {"tls_key", NODEHA_CONFIG_STRING, "\"\"", "", "client key (PEM)"},
      {"prefix", NODEHA_CONFIG_STRING, "\"nodeha\"", "", "subject prefix"},
      {"kv_replicas", NODEHA_CONFIG_INTEGER, "1", "", "replicas of KV buckets the host creates (3 on a cluster)"},
      {"kv_history", NODEHA_CONFIG_INTEGER, "5", "", "revisions kept per key"},
      {"reconnect_wait", NODEHA_CONFIG_DURATION, "\"1s\"", "", "pause between reconnect attempts"},
      {"connect_timeout", NODEHA_CONFIG_DURATION, "\"2s\"", "", "timeout of one connect attempt"},
      {"ping_interval", NODEHA_CONFIG_DURATION, "\"10s\"", "",
       "client pings; a connection that misses 2 answers is dropped and made again"},
      {"reconnect_buffer", NODEHA_CONFIG_INTEGER, "8388608", "bytes", "publishes buffered while disconnected"},
      {"max_control_line", NODEHA_CONFIG_INTEGER, "4096", "bytes",
       "the servers' max_control_line: a subject, key or queue group too long for it is refused before sending"},
  };
  return k;
}
const std::vector<KeyDecl>& metrics_keys() {
  static const std::vector<KeyDecl> k = {
      {"listen", NODEHA_CONFIG_STRING, "\"127.0.0.1:9464\"", "", "address:port of /metrics; port 0 picks one"},
  };
  return k;
}
const std::vector<KeyDecl>& libvirt_keys() {
  static const std::vector<KeyDecl> k = {
      {"uri", NODEHA_CONFIG_STRING, "\"qemu:///system\"", "", "libvirt connection URI (agents)"},
  };
  return k;
}

const char* type_name(nodeha_config_type t) {
  switch (t) {
    case NODEHA_CONFIG_STRING: return "a string";
    case NODEHA_CONFIG_INTEGER: return "an integer";
    case NODEHA_CONFIG_FLOAT: return "a number";
    case NODEHA_CONFIG_BOOLEAN: return "a boolean";
    case NODEHA_CONFIG_DURATION: return "a duration string like \"15s\"";
    case NODEHA_CONFIG_STRING_ARRAY: return "an array of strings";
    case NODEHA_CONFIG_TABLE_ARRAY: return "an array of tables";
    case NODEHA_CONFIG_TABLE: return "a table";
  }
  return "?";
}

// "file:line" of a node; overrides carry their own source name ("--set key=value").
std::string where(const toml::source_region& r, const std::string& fallback) {
  if (!r.path) return fallback;
  const std::string& path = *r.path;
  if (path.rfind("--set ", 0) == 0) return path;
  return fmt::format("{}:{}", path, r.begin.line);
}

nlohmann::json to_json(const toml::node& n) {
  if (auto* t = n.as_table()) {
    auto o = nlohmann::json::object();
    for (auto&& [k, v] : *t) o[std::string(k.str())] = to_json(v);
    return o;
  }
  if (auto* a = n.as_array()) {
    auto o = nlohmann::json::array();
    for (auto&& v : *a) o.push_back(to_json(v));
    return o;
  }
  if (auto v = n.value<std::string>(); v && n.is_string()) return *v;
  if (n.is_integer()) return *n.value<int64_t>();
  if (n.is_floating_point()) return *n.value<double>();
  if (n.is_boolean()) return *n.value<bool>();
  return nlohmann::json(n.is_date_time() ? "date-time" : "?");
}

Status bad(const std::string& text) { return Status(NODEHA_ERR_INVALID, text); }

// Checks one value against its declared type; returns the JSON to hand over.
Result<nlohmann::json> convert(const toml::node& v, const KeyDecl& d, const std::string& at,
                               const std::string& section) {
  auto mistyped = [&] {
    return bad(fmt::format("{}: [{}] key '{}' must be {}", at, section, d.name, type_name(d.type)));
  };
  switch (d.type) {
    case NODEHA_CONFIG_STRING:
      if (!v.is_string()) return mistyped();
      return to_json(v);
    case NODEHA_CONFIG_INTEGER:
      if (!v.is_integer()) return mistyped();
      return to_json(v);
    case NODEHA_CONFIG_FLOAT:
      if (!v.is_number()) return mistyped();
      return nlohmann::json(*v.value<double>());
    case NODEHA_CONFIG_BOOLEAN:
      if (!v.is_boolean()) return mistyped();
      return to_json(v);
    case NODEHA_CONFIG_DURATION: {
      if (!v.is_string()) return mistyped();
      auto ms = parse_duration_ms(*v.value<std::string>());
      if (!ms)
        return bad(fmt::format("{}: [{}] key '{}': '{}' is not a duration (use e.g. \"500ms\", \"15s\", \"2m\", \"1h\")",
                               at, section, d.name, *v.value<std::string>()));
      return nlohmann::json(*ms);
    }
    case NODEHA_CONFIG_STRING_ARRAY: {
      auto* a = v.as_array();
      if (!a) return mistyped();
      for (auto&& e : *a)
        if (!e.is_string()) return mistyped();
      return to_json(v);
    }
    case NODEHA_CONFIG_TABLE_ARRAY:
      if (!v.is_array_of_tables() && !(v.is_array() && v.as_array()->empty())) return mistyped();
      return to_json(v);
    case NODEHA_CONFIG_TABLE:
      if (!v.is_table()) return mistyped();
      return to_json(v);
  }
  return mistyped();
}

// Checks a whole table: unknown keys, types, required keys; fills defaults.
Result<nlohmann::json> check_table(const toml::table& t, const std::vector<KeyDecl>& decls,
                                   const std::string& section, const std::string& table_at,
                                   const std::set<std::string>& reserved = {}) {
  auto out = nlohmann::json::object();
  for (auto&& [k, v] : t) {
    std::string name(k.str());
    if (reserved.count(name)) continue;
    std::string at = where(v.source().path ? v.source() : k.source(), table_at);
    auto it = std::find_if(decls.begin(), decls.end(), [&](const KeyDecl& d) { return d.name == name; });
    if (it == decls.end()) {
      std::string known;
      for (const auto& d : decls) known += (known.empty() ? "" : ", ") + d.name;
      return bad(fmt::format("{}: [{}] unknown key '{}' (known keys: {})", at, section, name,
                             known.empty() ? "none" : known));
    }
    auto value = convert(v, *it, at, section);
    if (!value) return value.status();
    out[name] = std::move(value.value());
  }
  for (const auto& d : decls) {
    if (out.contains(d.name)) continue;
    if (!d.default_toml)
      return bad(fmt::format("{}: [{}] required key '{}' is missing ({})", table_at, section, d.name, d.description));
    toml::table parsed;
    try {
      parsed = toml::parse("v = " + *d.default_toml, std::string_view("<default>"));
    } catch (const toml::parse_error& e) {
      return Status(NODEHA_ERR_INTERNAL, fmt::format("[{}] key '{}': bad declared default {}", section, d.name, *d.default_toml));
    }
    auto value = convert(*parsed.get("v"), d, "<default>", section);
    if (!value) return value.status();
    out[d.name] = std::move(value.value());
  }
  return out;
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

}  // namespace

// About 317 years: far past any timeout, far inside int64_t.
constexpr double kMaxDurationMs = 1e13;

std::optional<int64_t> parse_duration_ms(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0 || i == text.size()) return std::nullopt;
  double number = 0;
  try {
    size_t used = 0;
    number = std::stod(std::string(text.substr(0, i)), &used);
    if (used != i) return std::nullopt;
  } catch (...) {
    return std::nullopt;
  }
  std::string_view unit = text.substr(i);
  double scale = 0;
  if (unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m") scale = 60'000;
  else if (unit == "h") scale = 3'600'000;
  else return std::nullopt;
  // A number too large for the ms count would wrap to a negative one (fuzz.config found it).
  double ms = number * scale;
  if (!std::isfinite(ms) || ms > kMaxDurationMs) return std::nullopt;
  return static_cast<int64_t>(std::llround(ms));
}

std::vector<KeyDecl> to_decls(const nodeha_config_key* keys, size_t count) {
  std::vector<KeyDecl> out;
  if (count == 0 || !keys) return out;
  // Step by the plugin's own struct size, so the key struct can grow by appending fields.
  size_t stride = keys[0].struct_size ? keys[0].struct_size : sizeof(nodeha_config_key);
  for (size_t i = 0; i < count; ++i) {
    nodeha_config_key k{};
    std::memcpy(&k, reinterpret_cast<const char*>(keys) + i * stride, std::min(stride, sizeof k));
    out.push_back({k.name ? k.name : "", k.type,
                   k.default_toml ? std::optional<std::string>(k.default_toml) : std::nullopt,
                   k.unit ? k.unit : "", k.description ? k.description : ""});
  }
  return out;
}

struct ConfigDocument::Impl {
  toml::table root;
  std::vector<const toml::table*> plugin_tables;
};

ConfigDocument::ConfigDocument() : impl_(std::make_unique<Impl>()) {}
ConfigDocument::~ConfigDocument() = default;
ConfigDocument::ConfigDocument(ConfigDocument&&) noexcept = default;
ConfigDocument& ConfigDocument::operator=(ConfigDocument&&) noexcept = default;

Result<ConfigDocument> ConfigDocument::load(const std::string& file, const std::vector<std::string>& overrides) {
  std::ifstream in(file);
  if (!in) return bad(fmt::format("{}: cannot read the config file: {}", file, std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), file, overrides);
}

namespace {

// TOML is UTF-8 and toml++ checks a document; an override is text from the command line.
bool is_utf8(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

// Applies one `--set section.key=value` (or `plugin.NAME.key=value`) to the tree.
Status apply_override(toml::table& root, const std::string& spec) {
  if (!is_utf8(spec)) return bad("--set: an override must be UTF-8 text (as the config file is)");
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0)
    return bad(fmt::format("--set {}: expected section.key=value", spec));
  std::string path = spec.substr(0, eq), value = spec.substr(eq + 1);
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    auto dot = path.find('.', start);
    parts.push_back(path.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  bool plugin = !parts.empty() && parts[0] == "plugin";
  if ((plugin && parts.size() != 3) || (!plugin && parts.size() != 2) ||
      std::any_of(parts.begin(), parts.end(), [](auto& p) { return p.empty(); }))
    return bad(fmt::format("--set {}: expected section.key=value or plugin.NAME.key=value", spec));

  // The value is a TOML literal when it parses as one, else a plain string.
  std::string source = "--set " + spec;
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value, std::string_view(source));
  } catch (const toml::parse_error&) {
    parsed = toml::table{};
    parsed.insert("v", value);
  }
  toml::node* v = parsed.get("v");

  toml::table* target = nullptr;
  if (plugin) {
    auto* arr = root["plugin"].as_array();
    if (arr)
      for (auto&& e : *arr) {
        auto* t = e.as_table();
        if (!t) continue;
        auto name = (*t)["name"].value<std::string>();
        auto lib = (*t)["library"].value<std::string>();
        if ((name && *name == parts[1]) || (!name && lib && *lib == parts[1])) target = t;
      }
    if (!target) return bad(fmt::format("--set {}: no [[plugin]] named '{}'", spec, parts[1]));
  } else {
    if (!root.contains(parts[0])) root.insert(parts[0], toml::table{});
    target = root[parts[0]].as_table();
    if (!target) return bad(fmt::format("--set {}: '{}' is not a table", spec, parts[0]));
  }
  target->insert_or_assign(parts.back(), std::move(*v));
  return Status::ok();
}

}  // namespace

Result<ConfigDocument> ConfigDocument::parse(std::string_view text, const std::string& file,
                                             const std::vector<std::string>& overrides) {
  ConfigDocument doc;
  try {
    doc.impl_->root = toml::parse(text, std::string_view(file));
  } catch (const toml::parse_error& e) {
    return bad(fmt::format("{}:{}:{}: TOML syntax error: {}", file, e.source().begin.line,
                           e.source().begin.column, e.description()));
  }
  auto& root = doc.impl_->root;
  for (const auto& o : overrides)
    if (auto s = apply_override(root, o); !s) return s;

  HostConfig& h = doc.host_;
  h.file = file;
  static const std::set<std::string> sections = {"host", "nats", "metrics", "libvirt", "plugin"};
  for (auto&& [k, v] : root) {
    std::string name(k.str());
    if (!sections.count(name))
      return bad(fmt::format("{}: unknown section '{}' (known: host, nats, metrics, libvirt, [[plugin]])",
                             where(k.source(), file), name));
    if (name == "plugin" ? !v.is_array_of_tables() : !v.is_table())
      return bad(fmt::format("{}: '{}' must be {}", where(k.source(), file), name,
                             name == "plugin" ? "an array of tables ([[plugin]])" : "a table ([" + name + "])"));
  }
  auto section = [&](const char* name, const std::vector<KeyDecl>& decls) -> Result<nlohmann::json> {
    static const toml::table empty;
    const toml::table* t = root[name].as_table();
    std::string at = t ? where(t->source(), file) : file;
    return check_table(t ? *t : empty, decls, name, at);
  };
  auto hs = section("host", host_keys());
  if (!hs) return hs.status();
  auto ns = section("nats", nats_keys());
  if (!ns) return ns.status();
  auto ms = section("metrics", metrics_keys());
  if (!ms) return ms.status();
  auto ls = section("libvirt", libvirt_keys());
  if (!ls) return ls.status();

  const auto& hj = hs.value();
  std::string role = hj["role"];
  if (role == "agent") h.role = NODEHA_ROLE_AGENT;
  else if (role == "controller") h.role = NODEHA_ROLE_CONTROLLER;
  else {
    auto* t = root["host"].as_table();
    return bad(fmt::format("{}: [host] key 'role' must be \"agent\" or \"controller\", not \"{}\"",
                           where(t->get("role")->source(), file), role));
  }
  h.node_id = hj["node_id"];
  bool from_hostname = h.node_id.empty();
  if (from_hostname) h.node_id = hostname();
  // The node id is a subject token and a KV key: only NodeId's form, checked here once.
  if (auto id = NodeId::parse(h.node_id); !id) {
    auto* t = root["host"].as_table();
    auto* key = t ? t->get("node_id") : nullptr;
    return bad(fmt::format("{}: [host] key 'node_id'{}: {}", key ? where(key->source(), file) : file,
                           from_hostname ? " (empty: the machine's hostname)" : "", id.status().message()));
  }
  h.plugin_path = hj["plugin_path"].get<std::vector<std::string>>();
  h.state_dir = hj["state_dir"];
  // Relative paths are relative to the config file, like plugin libraries.
  auto config_dir = std::filesystem::absolute(std::filesystem::path(file)).parent_path();
  if (!h.state_dir.empty() && std::filesystem::path(h.state_dir).is_relative()) h.state_dir = (config_dir / h.state_dir).string();
  h.local_socket = hj["local_socket"];
  if (h.local_socket.empty()) h.local_socket = h.state_dir + "/local.sock";
  h.log_level = hj["log_level"];
  if (h.log_level != "debug" && h.log_level != "info" && h.log_level != "warn" && h.log_level != "error")
    return bad(fmt::format("{}: [host] key 'log_level' must be debug, info, warn or error, not \"{}\"", file, h.log_level));
  h.workers = hj["workers"];
  if (h.workers < 1 || h.workers > 256)
    return bad(fmt::format("{}: [host] key 'workers' must be between 1 and 256", file));
  h.lease_ms = hj["lease"];
  if (h.lease_ms < kMinLeaseMs || h.lease_ms > kMaxLeaseMs)
    return bad(fmt::format("{}: [host] key 'lease' must be between 200ms and 60s", file));

  const auto& nj = ns.value();
  h.nats.servers = nj["servers"].get<std::vector<std::string>>();
  if (h.nats.servers.empty()) return bad(fmt::format("{}: [nats] key 'servers' must name at least one server", file));
  h.nats.credentials = nj["credentials"];
  h.nats.tls_ca = nj["tls_ca"];
  h.nats.tls_cert = nj["tls_cert"];
  h.nats.tls_key = nj["tls_key"];
  h.nats.prefix = nj["prefix"];
  h.nats.kv_replicas = nj["kv_replicas"];
  h.nats.kv_history = nj["kv_history"];
  h.nats.reconnect_wait_ms = nj["reconnect_wait"];
  h.nats.connect_timeout_ms = nj["connect_timeout"];
  h.nats.ping_interval_ms = nj["ping_interval"];
  h.nats.reconnect_buffer_bytes = nj["reconnect_buffer"];
  h.nats.max_control_line = nj["max_control_line"];
  // Below this nothing but the protocol's own fields would fit on a line.
  if (h.nats.max_control_line < 256 || h.nats.max_control_line > (1 << 20))
    return bad(fmt::format("{}: [nats] key 'max_control_line' must be between 256 and 1048576 bytes (nats-server's "
                           "max_control_line; its default is 4096)", file));
  h.metrics_listen = ms.value()["listen"];
  h.libvirt_uri = ls.value()["uri"];

  if (auto* plugins = root["plugin"].as_array()) {
      for (size_t i = 0; i < plugins->size(); ++i) {
      const auto* t = plugins->get(i)->as_table();
      PluginSpec spec;
      spec.index = i;
      spec.where = where(t->source(), file);
      auto lib = (*t)["library"];
      if (!lib) return bad(fmt::format("{}: [[plugin]] #{} has no 'library' key (a path, or a name searched in host.plugin_path)", spec.where, i + 1));
      if (!lib.is_string()) return bad(fmt::format("{}: [[plugin]] key 'library' must be a string", where(lib.node()->source(), file)));
      spec.library = *lib.value<std::string>();
      if (auto name = (*t)["name"]) {
        if (!name.is_string()) return bad(fmt::format("{}: [[plugin]] key 'name' must be a string", where(name.node()->source(), file)));
        spec.name = *name.value<std::string>();
      }
      auto copy = *t;
      copy.erase("name");
      copy.erase("library");
      spec.raw_json = to_json(copy).dump();
      doc.impl_->plugin_tables.push_back(t);
      h.plugins.push_back(std::move(spec));
    }
  }
  return doc;
}

Result<std::string> ConfigDocument::validate_plugin(size_t index, const std::vector<KeyDecl>& keys) const {
  const auto& spec = host_.plugins.at(index);
  const toml::table* t = impl_->plugin_tables.at(index);
  std::string section = "plugin " + (spec.name.empty() ? spec.library : spec.name);
  auto checked = check_table(*t, keys, section, spec.where, {"name", "library"});
  if (!checked) return checked.status();
  return checked.value().dump();
}

}  // namespace nodeha::host
