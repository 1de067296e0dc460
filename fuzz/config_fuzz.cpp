// The config loader: a TOML document plus `--set` overrides, then one [[plugin]] table checked
// against declared keys of every type. The input is the document, then one override per line
// after a line "--set" (the seeds show the form). A loaded config must be one the host can run.
#include "config.h"
#include "fuzz_check.h"

#include <vector>

using namespace nodeha;

namespace {

// One key of each type, as a plugin declares them.
const std::vector<host::KeyDecl> kPluginKeys = {
    {"name_like", NODEHA_CONFIG_STRING, "\"x\"", "", ""},
    {"count", NODEHA_CONFIG_INTEGER, "3", "", ""},
    {"share", NODEHA_CONFIG_FLOAT, "0.5", "", ""},
    {"enabled", NODEHA_CONFIG_BOOLEAN, "true", "", ""},
    {"interval", NODEHA_CONFIG_DURATION, "\"15s\"", "", ""},
    {"targets", NODEHA_CONFIG_STRING_ARRAY, "[]", "", ""},
    {"rules", NODEHA_CONFIG_TABLE_ARRAY, "[]", "", ""},
    {"addresses", NODEHA_CONFIG_TABLE, "{}", "", ""},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input = fuzz::as_text(data, size);
  std::string_view text = input;
  std::vector<std::string> overrides;
  if (auto at = input.find("\n--set\n"); at != std::string_view::npos) {
    text = input.substr(0, at + 1);
    for (std::string_view rest = input.substr(at + 7); !rest.empty();) {
      auto nl = rest.find('\n');
      overrides.emplace_back(rest.substr(0, nl));
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
  }
  auto doc = host::ConfigDocument::parse(text, "/etc/nodeha/fuzz.toml", overrides);
  if (!doc) {
    fuzz::require(doc.status().code() == NODEHA_ERR_INVALID, "a refused config is INVALID");
    return 0;
  }
  const auto& h = doc->host();
  fuzz::require(!h.node_id.empty() && h.workers >= 1 && h.workers <= 256 && !h.nats.servers.empty(),
                "a loaded config is complete");
  fuzz::require(h.nats.reconnect_wait_ms >= 0 && h.nats.connect_timeout_ms >= 0 && h.nats.ping_interval_ms >= 0,
                "durations are not negative");
  for (size_t i = 0; i < h.plugins.size(); ++i) {
    auto checked = doc->validate_plugin(i, kPluginKeys);
    if (!checked) fuzz::require(checked.status().code() == NODEHA_ERR_INVALID, "a refused plugin table is INVALID");
  }
  (void)host::parse_duration_ms(text);
  return 0;
}
