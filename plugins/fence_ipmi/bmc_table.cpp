#include "bmc_table.h"

#include <algorithm>
#include <set>

namespace nodeha::fence_ipmi {
namespace {

const std::set<std::string> kFields = {"node", "address", "port", "user", "password_file", "interface", "cipher_suite"};

Status bad(const std::string& entry, const std::string& text) { return Status(NODEHA_ERR_INVALID, entry + ": " + text); }

// What a value is, for a message: its JSON, cut short.
std::string shown(const nlohmann::json& v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 40) + "..." : s;
}

// ipmitool takes these as option values: none may be empty, start with '-' or hold a space.
bool plain_word(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max || s.front() == '-') return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c > ' ' && c < 0x7f; });
}

std::optional<std::string> string_field(const nlohmann::json& e, const char* name, std::string* out, bool required) {
  if (!e.contains(name)) return required ? std::optional<std::string>(std::string("field \"") + name + "\" is missing")
                                         : std::nullopt;
  if (!e[name].is_string()) return std::string("field \"") + name + "\": must be a string, got " + shown(e[name]);
  *out = e[name].get<std::string>();
  return std::nullopt;
}

std::optional<std::string> int_field(const nlohmann::json& e, const char* name, int lo, int hi, int* out) {
  if (!e.contains(name)) return std::nullopt;
  const auto& v = e[name];
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
    return std::string("field \"") + name + "\": must be an integer from " + std::to_string(lo) + " to " +
           std::to_string(hi) + ", got " + shown(v);
  *out = v.get<int>();
  return std::nullopt;
}

// One entry; `entry` names it in messages ("bmc[0]").
Result<Bmc> parse_one(const nlohmann::json& e, std::string* entry) {
  if (!e.is_object()) return bad(*entry, "must be a table like {node = \"node-a\", address = \"10.0.0.1\", ...}");
  Bmc b;
  if (auto m = string_field(e, "node", &b.node, true)) return bad(*entry, *m);
  auto id = NodeId::parse(b.node);
  if (!id) return bad(*entry, "field \"node\": " + id.status().message());
  *entry += " (" + b.node + ")";
  for (const auto& [k, v] : e.items())
    if (!kFields.count(k))
      return bad(*entry, "unknown field \"" + k + "\" (known: node, address, port, user, password_file, interface, cipher_suite)");
  if (auto m = string_field(e, "address", &b.address, true)) return bad(*entry, *m);
  if (!plain_word(b.address, 253))
    return bad(*entry, "field \"address\": \"" + b.address.substr(0, 40) + "\" is not a host name or IP address");
  if (auto m = int_field(e, "port", 1, 65535, &b.port)) return bad(*entry, *m);
  if (auto m = string_field(e, "user", &b.user, true)) return bad(*entry, *m);
  // IPMI user names are at most 16 bytes.
  if (!plain_word(b.user, 16))
    return bad(*entry, "field \"user\": must be 1-16 printable characters without spaces, not starting with '-'");
  if (auto m = string_field(e, "password_file", &b.password_file, true)) return bad(*entry, *m);
  if (b.password_file.empty() || b.password_file.front() != '/')
    return bad(*entry, "field \"password_file\": must be an absolute path, got \"" + b.password_file.substr(0, 80) + "\"");
  if (auto m = string_field(e, "interface", &b.interface, false)) return bad(*entry, *m);
  if (b.interface != "lanplus" && b.interface != "lan")
    return bad(*entry, "field \"interface\": must be \"lanplus\" (IPMI 2.0) or \"lan\" (IPMI 1.5), got \"" +
                           b.interface.substr(0, 40) + "\"");
  int suite = -1;
  if (auto m = int_field(e, "cipher_suite", 0, 17, &suite)) return bad(*entry, *m);
  if (suite >= 0) {
    if (b.interface != "lanplus") return bad(*entry, "field \"cipher_suite\": only the lanplus interface takes one");
    b.cipher_suite = suite;
  }
  return b;
}

}  // namespace

Result<std::map<std::string, Bmc>> parse_bmcs(const nlohmann::json& table) {
  std::map<std::string, Bmc> out;
  std::map<std::string, size_t> first;
  if (!table.is_array()) return Status(NODEHA_ERR_INVALID, "bmc: must be an array of tables ([[plugin.bmc]] or bmc = [{...}])");
  for (size_t i = 0; i < table.size(); ++i) {
    std::string entry = "bmc[" + std::to_string(i) + "]";
    auto b = parse_one(table[i], &entry);
    if (!b) return b.status();
    if (auto seen = first.find(b->node); seen != first.end())
      return bad(entry, "node " + b->node + " already has a BMC in bmc[" + std::to_string(seen->second) +
                            "]: one BMC per node");
    first[b->node] = i;
    out[b->node] = b.value();
  }
  return out;
}

}  // namespace nodeha::fence_ipmi
