#include "heartbeat_codec.h"

#include <chrono>
#include <nodeha/ids.hpp>

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <limits>
#include <stdexcept>

namespace nodeha::heartbeat {
namespace {

using nlohmann::json;

// Thrown inside the decoder only; decode_heartbeat turns it into a Status.
struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& text) { throw DecodeError("heartbeat: " + text); }

std::string quoted(const std::string& path) { return "field \"" + path + "\""; }

std::string child(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

// Refuses keys outside `known`, naming the first unknown one.
void only_known(const json& object, const std::string& path,
                std::initializer_list<std::string_view> known) {
  for (const auto& item : object.items()) {
    bool found = false;
    for (auto k : known) found = found || item.key() == k;
    if (!found) fail("unknown " + quoted(child(path, item.key())));
  }
}

const json* member(const json& object, std::string_view key, const std::string& parent,
                   bool required) {
  auto it = object.find(key);
  if (it != object.end()) return &*it;
  if (required) fail("missing " + quoted(child(parent, key)));
  return nullptr;
}

[[noreturn]] void wrong_type(const std::string& path, const char* wanted, const json& value) {
  fail(quoted(path) + " must be " + wanted + ", got " + value.type_name());
}

std::string read_string(const json& v, const std::string& path, size_t max = kMaxNameLength) {
  if (!v.is_string()) wrong_type(path, "a string", v);
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() > max) fail(quoted(path) + " is " + std::to_string(s.size()) + " bytes; the limit is " + std::to_string(max));
  return s;
}

// An id by its one parse function; the refusal names the field and shows the rule.
template <class Id>
std::string read_id(const json& v, const std::string& path) {
  if (!v.is_string()) wrong_type(path, "a string", v);
  auto id = Id::parse(v.get_ref<const std::string&>());
  if (!id) fail(quoted(path) + ": " + id.status().message());
  return id->str();
}

uint64_t read_unsigned(const json& v, const std::string& path, uint64_t max) {
  // nlohmann parses every non-negative integer literal as unsigned.
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer()) fail(quoted(path) + " must not be negative");
    wrong_type(path, "an unsigned integer", v);
  }
  auto n = v.get<uint64_t>();
  if (n > max) fail(quoted(path) + " is out of range");
  return n;
}

int64_t read_signed(const json& v, const std::string& path) {
  if (!v.is_number_integer()) wrong_type(path, "an integer", v);
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    fail(quoted(path) + " is out of range");
  return v.get<int64_t>();
}

bool read_bool(const json& v, const std::string& path) {
  if (!v.is_boolean()) wrong_type(path, "a boolean", v);
  return v.get<bool>();
}

const json& read_object(const json& v, const std::string& path) {
  if (!v.is_object()) wrong_type(path, "an object", v);
  return v;
}

const json& read_array(const json& v, const std::string& path) {
  if (!v.is_array()) wrong_type(path, "an array", v);
  return v;
}

constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

Capacity read_capacity(const json& v, const std::string& path) {
  read_object(v, path);
  only_known(v, path, {"vcpus", "memory_mib", "disk_gib"});
  Capacity c;
  if (auto* f = member(v, "vcpus", path, false)) c.vcpus = uint32_t(read_unsigned(*f, path + ".vcpus", kMaxU32));
  if (auto* f = member(v, "memory_mib", path, false)) c.memory_mib = read_unsigned(*f, path + ".memory_mib", kMaxU64);
  if (auto* f = member(v, "disk_gib", path, false)) c.disk_gib = read_unsigned(*f, path + ".disk_gib", kMaxU64);
  return c;
}

Usage read_usage(const json& v, const std::string& path) {
  read_object(v, path);
  only_known(v, path, {"vcpus", "memory_mib", "disk_gib", "vms_running"});
  Usage u;
  if (auto* f = member(v, "vcpus", path, false)) u.vcpus = uint32_t(read_unsigned(*f, path + ".vcpus", kMaxU32));
  if (auto* f = member(v, "memory_mib", path, false)) u.memory_mib = read_unsigned(*f, path + ".memory_mib", kMaxU64);
  if (auto* f = member(v, "disk_gib", path, false)) u.disk_gib = read_unsigned(*f, path + ".disk_gib", kMaxU64);
  if (auto* f = member(v, "vms_running", path, false))
    u.vms_running = uint32_t(read_unsigned(*f, path + ".vms_running", kMaxU32));
  return u;
}

std::map<std::string, std::string> read_addresses(const json& v, const std::string& path) {
  read_object(v, path);
  std::map<std::string, std::string> out;
  for (const auto& item : v.items()) out[item.key()] = read_string(item.value(), child(path, item.key()));
  return out;
}

std::vector<VmInfo> read_vms(const json& v, const std::string& path) {
  read_array(v, path);
  std::vector<VmInfo> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    auto at = path + "[" + std::to_string(i) + "]";
    const auto& e = read_object(v[i], at);
    only_known(e, at, {"uuid", "name", "state"});
    VmInfo vm;
    vm.uuid = read_id<VmUuid>(*member(e, "uuid", at, true), at + ".uuid");
    if (auto* f = member(e, "name", at, false)) vm.name = read_string(*f, at + ".name");
    if (auto* f = member(e, "state", at, false)) vm.state = read_string(*f, at + ".state");
    out.push_back(std::move(vm));
  }
  return out;
}

std::vector<Check> read_checks(const json& v, const std::string& path) {
  read_array(v, path);
  std::vector<Check> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    auto at = path + "[" + std::to_string(i) + "]";
    const auto& e = read_object(v[i], at);
    only_known(e, at, {"name", "ok", "detail", "time"});
    Check c;
    c.name = read_string(*member(e, "name", at, true), at + ".name");
    if (c.name.empty()) fail(quoted(at + ".name") + " must not be empty");
    c.ok = read_bool(*member(e, "ok", at, true), at + ".ok");
    if (auto* f = member(e, "detail", at, false)) c.detail = read_string(*f, at + ".detail", kMaxDetailLength);
    if (auto* f = member(e, "time", at, false)) c.at = read_signed(*f, at + ".time");
    out.push_back(std::move(c));
  }
  return out;
}

Heartbeat read_heartbeat(const json& root) {
  if (!root.is_object()) fail(std::string("message must be a JSON object, got ") + root.type_name());
  only_known(root, "", {"node", "seq", "boot_id", "sent_at", "interval_ms", "capacity", "use",
                        "addresses", "vms", "checks"});
  Heartbeat hb;
  hb.node = read_id<NodeId>(*member(root, "node", "", true), "node");
  hb.seq = read_unsigned(*member(root, "seq", "", true), "seq", kMaxU64);
  hb.boot_id = read_string(*member(root, "boot_id", "", true), "boot_id");
  if (hb.boot_id.empty()) fail(quoted("boot_id") + " must not be empty");
  hb.interval_ms = read_signed(*member(root, "interval_ms", "", true), "interval_ms");
  if (hb.interval_ms <= 0) fail(quoted("interval_ms") + " must be positive");
  if (auto* f = member(root, "sent_at", "", false)) hb.sent_at = read_signed(*f, "sent_at");
  if (auto* f = member(root, "capacity", "", false)) hb.capacity = read_capacity(*f, "capacity");
  if (auto* f = member(root, "use", "", false)) hb.use = read_usage(*f, "use");
  if (auto* f = member(root, "addresses", "", false)) hb.addresses = read_addresses(*f, "addresses");
  if (auto* f = member(root, "vms", "", false)) hb.vms = read_vms(*f, "vms");
  if (auto* f = member(root, "checks", "", false)) hb.checks = read_checks(*f, "checks");
  return hb;
}

}  // namespace

Result<Heartbeat> decode_heartbeat(std::string_view text) {
  if (text.size() > kMaxHeartbeatBytes) return Status(NODEHA_ERR_INVALID, over_limit("heartbeat: the message", text.size(), kMaxHeartbeatBytes));
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    return Status(NODEHA_ERR_INVALID, std::string("heartbeat: malformed JSON: ") + e.what());
  }
  try {
    return read_heartbeat(root);
  } catch (const DecodeError& e) {
    return Status(NODEHA_ERR_INVALID, e.what());
  }
}

std::string encode_heartbeat(const Heartbeat& hb) {
  json vms = json::array();
  for (const auto& vm : hb.vms) vms.push_back({{"uuid", vm.uuid}, {"name", vm.name}, {"state", vm.state}});
  json checks = json::array();
  for (const auto& c : hb.checks) {
    json one = {{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}};
    if (c.at > 0) one["time"] = c.at;
    checks.push_back(std::move(one));
  }
  json root = {
      {"node", hb.node},
      {"seq", hb.seq},
      {"boot_id", hb.boot_id},
      {"sent_at", hb.sent_at},
      {"interval_ms", hb.interval_ms},
      {"capacity",
       {{"vcpus", hb.capacity.vcpus}, {"memory_mib", hb.capacity.memory_mib}, {"disk_gib", hb.capacity.disk_gib}}},
      {"use",
       {{"vcpus", hb.use.vcpus},
        {"memory_mib", hb.use.memory_mib},
        {"disk_gib", hb.use.disk_gib},
        {"vms_running", hb.use.vms_running}}},
      {"addresses", hb.addresses},
      {"vms", std::move(vms)},
      {"checks", std::move(checks)},
  };
  // Names come from libvirt and the agent's config: never let one bad byte stop the heartbeat.
  return root.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<CheckMessage> decode_check_message(std::string_view text) {
  auto invalid = [](const std::string& why) { return Status(NODEHA_ERR_INVALID, "check verdict: " + why); };
  if (text.size() > kMaxCheckBytes) return invalid(over_limit("the message", text.size(), kMaxCheckBytes));
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || !j.contains("ok") || !j["ok"].is_boolean())
    return invalid("must be a JSON object with \"name\" (a string) and \"ok\" (a boolean)");
  CheckMessage m;
  try {
    if (j.contains("node")) m.node = read_id<NodeId>(j["node"], "node");
    std::string name = read_string(j["name"], "name");
    if (name.empty()) return invalid("field \"name\" must not be empty");
    std::string detail = j.contains("detail") ? read_string(j["detail"], "detail", kMaxDetailLength) : "";
    m.check = Check{std::move(name), j["ok"].get<bool>(), std::move(detail),
                    j.contains("time") && j["time"].is_number_integer() ? j["time"].get<int64_t>() : 0};
  } catch (const DecodeError& e) {
    return invalid(std::string(e.what()).substr(std::string_view("heartbeat: ").size()));
  }
  return m;
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace nodeha::heartbeat
