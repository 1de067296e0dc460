// The host's configuration: a TOML file plus `--set section.key=value` overrides, validated
// against declared keys (the host's own sections and each plugin's table) before anything
// starts. Every error names the file (or the override), the line and the key.
#pragma once

#include <nodeha/plugin.h>
#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nodeha::host {

// A config key declaration; plugins declare theirs through nodeha_config_key.
struct KeyDecl {
  std::string name;
  nodeha_config_type type;
  std::optional<std::string> default_toml;  // nullopt: required
  std::string unit;
  std::string description;
};

std::vector<KeyDecl> to_decls(const nodeha_config_key* keys, size_t count);

// Parses "500ms", "15s", "2m", "1h" into milliseconds.
std::optional<int64_t> parse_duration_ms(std::string_view text);

// One [[plugin]] table, not yet checked against the plugin's declared keys.
struct PluginSpec {
  std::string name;     // instance name; empty: the plugin's own name
  std::string library;  // as written
  std::string where;    // "file:line" of the table, for messages
  std::string raw_json; // the table as written, minus name/library (for change detection)
  size_t index = 0;     // position in the file
};

struct NatsSettings {
  std::vector<std::string> servers;
  std::string credentials, tls_ca, tls_cert, tls_key;
  std::string prefix;
  int64_t kv_replicas = 1;
  int64_t kv_history = 5;
  int64_t reconnect_wait_ms = 1000;
  int64_t connect_timeout_ms = 2000;
  // A connection whose path died silently (a cut link) is noticed after ~3 pings, then made
  // again; TCP alone would resend into it with a backoff of up to 2 minutes.
  int64_t ping_interval_ms = 10000;
  int64_t reconnect_buffer_bytes = 8 << 20;
  // The servers' max_control_line: the Bus refuses longer protocol lines rather than send one
  // (the server would close the connection).
  int64_t max_control_line = 4096;
};

struct HostConfig {
  std::string file;
  std::string node_id;
  nodeha_role role = NODEHA_ROLE_AGENT;
  std::vector<std::string> plugin_path;
  std::string state_dir;
  std::string local_socket;
  std::string log_level;
  int64_t workers = 8;
  int64_t lease_ms = 2000;  // controllers: the leader lease (lease.h)
  NatsSettings nats;
  std::string metrics_listen;
  std::string libvirt_uri;
  std::vector<PluginSpec> plugins;
};

// A parsed but not yet plugin-validated document; keeps the TOML tree for plugin validation.
class ConfigDocument {
 public:
  ConfigDocument();
  ~ConfigDocument();
  ConfigDocument(ConfigDocument&&) noexcept;
  ConfigDocument& operator=(ConfigDocument&&) noexcept;

  // Reads and validates the host sections; plugin tables are checked by validate_plugin.
  static Result<ConfigDocument> load(const std::string& file, const std::vector<std::string>& overrides);
  static Result<ConfigDocument> parse(std::string_view text, const std::string& file,
                                      const std::vector<std::string>& overrides);

  const HostConfig& host() const { return host_; }

  // Checks plugin table `index` against `keys`; returns its JSON (defaults filled, durations in
  // milliseconds) or an error naming file, line and key.
  Result<std::string> validate_plugin(size_t index, const std::vector<KeyDecl>& keys) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  HostConfig host_;
};

}  // namespace nodeha::host
