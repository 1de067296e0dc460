#include "heartbeat_codec.h"

#include <chrono>
#include <nodeha/ids.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <span>
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

// Networks a node may name in its heartbeat (management, business, migration, ...).
constexpr size_t kMaxAddresses = 64;
constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

bool is_digest(const std::string& s) {
  return s.size() == 16 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The heartbeat's fixed schema, read straight from the parser's events (nlohmann's SAX): no
// document is built, which at 10,000 nodes a second cost a quarter of the controller's time
// (docs/performance.md). Strict as the schema says: an unknown field, a wrong type or a number out
// of range stops the parse, naming the field's path; ids, emptiness and the version's own rules
// are checked when their object ends, so that an unknown field in it is named first. A field
// given twice counts once, the last.
class HeartbeatReader {
 public:
  explicit HeartbeatReader(uint32_t max_version) : max_version_(max_version) { stack_.reserve(4); }
  const std::string& error() const { return error_; }
  Heartbeat take() { return std::move(hb_); }

  // nlohmann::json_sax's events.
  bool null() { return scalar(Kind::kNull); }
  bool boolean(bool v) {
    bool_ = v;
    return scalar(Kind::kBool);
  }
  bool number_integer(int64_t v) {  // negative ones only: the parser gives the others as unsigned
    negative_ = v;
    return scalar(Kind::kNegative);
  }
  bool number_unsigned(uint64_t v) {
    unsigned_ = v;
    return scalar(Kind::kUnsigned);
  }
  bool number_float(double, const std::string&) { return scalar(Kind::kFloat); }
  bool string(std::string& v) {
    string_ = &v;
    return scalar(Kind::kString);
  }
  bool binary(json::binary_t&) { return stop("malformed JSON: binary data"); }  // not in JSON text
  bool start_object(size_t);
  bool key(std::string& k);
  bool end_object();
  bool start_array(size_t);
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    if (error_.empty()) error_ = std::string("malformed JSON: ") + e.what();
    return false;
  }

 private:
  enum class Kind { kNull, kBool, kNegative, kUnsigned, kFloat, kString, kObject, kArray };
  enum class At { kRoot, kCapacity, kUse, kAddresses, kVms, kVm, kChecks, kCheck };
  enum Field : uint8_t {
    kNone, kV, kNode, kSeq, kBootId, kSentAt, kIntervalMs, kCapacity, kUse, kAddresses, kVmsList, kVmsDigest, kChecksList,
    kVcpus, kMemoryMib, kDiskGib, kVmsRunning, kUuid, kName, kState, kOk, kDetail, kTime, kAddress,
  };
  struct Frame {
    At at;
    size_t index = 0;   // an array: its elements so far; an element: its index
    uint32_t seen = 0;  // an object: a bit per Field read
    bool saw(Field f) const { return seen & (1u << f); }
  };
  static const char* kind_name(Kind k) {
    switch (k) {
      case Kind::kNull: return "null";
      case Kind::kBool: return "boolean";
      case Kind::kString: return "string";
      case Kind::kObject: return "object";
      case Kind::kArray: return "array";
      default: return "number";
    }
  }
  static Field field_of(At at, std::string_view k);

  bool stop(std::string text) {
    if (error_.empty()) error_ = std::move(text);
    return false;
  }
  std::string path() const;  // of the value now read: key_ in the innermost object, or an element
  bool wrong(const char* wanted, Kind got) { return stop(quoted(path()) + " must be " + wanted + ", got " + kind_name(got)); }
  bool missing(std::string_view name) {
    key_ = name;
    return stop("missing " + quoted(path()));
  }
  bool unsigned_value(Kind k, uint64_t max, uint64_t* out) {
    if (k == Kind::kNegative) return stop(quoted(path()) + " must not be negative");
    if (k != Kind::kUnsigned) return wrong("an unsigned integer", k);
    if (unsigned_ > max) return stop(quoted(path()) + " is out of range");
    *out = unsigned_;
    return true;
  }
  template <class T>
  bool narrow_value(Kind k, uint64_t max, T* out) {
    uint64_t v = 0;
    if (!unsigned_value(k, max, &v)) return false;
    *out = static_cast<T>(v);
    return true;
  }
  bool signed_value(Kind k, int64_t* out) {
    if (k == Kind::kNegative) {
      *out = negative_;
      return true;
    }
    if (k != Kind::kUnsigned) return wrong("an integer", k);
    if (unsigned_ > uint64_t(std::numeric_limits<int64_t>::max())) return stop(quoted(path()) + " is out of range");
    *out = static_cast<int64_t>(unsigned_);
    return true;
  }
  bool string_value(Kind k, size_t max, std::string* out) {
    if (k != Kind::kString) return wrong("a string", k);
    if (string_->size() > max)
      return stop(quoted(path()) + " is " + std::to_string(string_->size()) + " bytes; the limit is " + std::to_string(max));
    *out = std::move(*string_);
    return true;
  }
  bool bool_value(Kind k, bool* out) {
    if (k != Kind::kBool) return wrong("a boolean", k);
    *out = bool_;
    return true;
  }
  bool scalar(Kind k);
  bool root_done();
  template <class Id>
  bool id_value(std::string* text) {
    auto id = Id::parse(*text);
    if (!id) return stop(quoted(path()) + ": " + id.status().message());
    *text = id->str();
    return true;
  }

  const uint32_t max_version_;
  Heartbeat hb_;
  std::vector<Frame> stack_;
  Field field_ = kNone;
  std::string key_;  // of the value now read (in addresses: the network's name)
  bool bool_ = false;
  int64_t negative_ = 0;
  uint64_t unsigned_ = 0;
  std::string* string_ = nullptr;
  std::string error_;
};

HeartbeatReader::Field HeartbeatReader::field_of(At at, std::string_view k) {
  struct Name {
    std::string_view name;
    Field field;
  };
  static constexpr Name kRoot[] = {{"node", kNode},       {"seq", kSeq},       {"boot_id", kBootId},
                                   {"sent_at", kSentAt},  {"interval_ms", kIntervalMs}, {"capacity", kCapacity},
                                   {"use", kUse},         {"addresses", kAddresses},    {"vms", kVmsList},
                                   {"checks", kChecksList}, {"v", kV},       {"vms_digest", kVmsDigest}};
  static constexpr Name kSizes[] = {{"vcpus", kVcpus}, {"memory_mib", kMemoryMib}, {"disk_gib", kDiskGib}, {"vms_running", kVmsRunning}};
  static constexpr Name kVm[] = {{"uuid", kUuid}, {"name", kName}, {"state", kState}};
  static constexpr Name kCheck[] = {{"name", kName}, {"ok", kOk}, {"detail", kDetail}, {"time", kTime}};
  auto find = [k](std::span<const Name> names) {
    for (const Name& n : names)
      if (n.name == k) return n.field;
    return kNone;
  };
  switch (at) {
    case At::kRoot: return find(kRoot);
    case At::kCapacity: return find(std::span(kSizes).first(3));  // capacity has no vms_running
    case At::kUse: return find(kSizes);
    case At::kAddresses: return kAddress;
    case At::kVm: return find(kVm);
    case At::kCheck: return find(kCheck);
    default: return kNone;
  }
}

std::string HeartbeatReader::path() const {
  static constexpr std::string_view kNames[] = {"", "capacity", "use", "addresses", "vms", "", "checks", ""};
  std::string out;
  for (size_t i = 1; i < stack_.size(); ++i) {
    const Frame& f = stack_[i];
    if (f.at == At::kVm || f.at == At::kCheck) out += "[" + std::to_string(f.index) + "]";
    else out = kNames[static_cast<size_t>(f.at)];
  }
  const Frame& top = stack_.back();
  if (top.at == At::kVms || top.at == At::kChecks) return out + "[" + std::to_string(top.index) + "]";
  return out.empty() ? key_ : out + "." + key_;
}

bool HeartbeatReader::key(std::string& k) {
  Frame& f = stack_.back();
  key_ = k;
  field_ = field_of(f.at, k);
  if (field_ == kNone || (max_version_ < 2 && (field_ == kV || field_ == kVmsDigest))) return stop("unknown " + quoted(path()));
  if (field_ != kAddress) f.seen |= 1u << field_;
  else if (k.empty() || k.size() > kMaxNameLength)  // a network's name, kept in the node record
    return stop("a name in field \"addresses\" must be 1 to " + std::to_string(kMaxNameLength) + " bytes, got " + std::to_string(k.size()));
  else if (hb_.addresses.size() >= kMaxAddresses && !hb_.addresses.count(k))
    return stop("field \"addresses\" has more than " + std::to_string(kMaxAddresses) + " networks");
  return true;
}

bool HeartbeatReader::start_object(size_t) {
  if (stack_.empty()) {
    stack_.push_back({At::kRoot});
    return true;
  }
  Frame& f = stack_.back();
  if (f.at == At::kVms || f.at == At::kChecks) {
    size_t i = f.index++;
    if (f.at == At::kVms) hb_.vms.emplace_back();
    else hb_.checks.emplace_back();
    stack_.push_back({f.at == At::kVms ? At::kVm : At::kCheck, i});
    return true;
  }
  if (f.at == At::kRoot) {
    switch (field_) {
      case kCapacity: hb_.capacity = {}; stack_.push_back({At::kCapacity}); return true;
      case kUse: hb_.use = {}; stack_.push_back({At::kUse}); return true;
      case kAddresses: hb_.addresses.clear(); stack_.push_back({At::kAddresses}); return true;
      default: break;
    }
  }
  return scalar(Kind::kObject);
}

bool HeartbeatReader::start_array(size_t) {
  if (stack_.empty()) return stop("message must be a JSON object, got array");
  if (stack_.back().at == At::kRoot && (field_ == kVmsList || field_ == kChecksList)) {
    if (field_ == kVmsList) hb_.vms.clear();
    else hb_.checks.clear();
    stack_.push_back({field_ == kVmsList ? At::kVms : At::kChecks});
    return true;
  }
  return scalar(Kind::kArray);
}

bool HeartbeatReader::scalar(Kind k) {
  if (stack_.empty()) return stop(std::string("message must be a JSON object, got ") + kind_name(k));
  Frame& f = stack_.back();
  switch (f.at) {
    case At::kVms:
    case At::kChecks:
      return wrong("an object", k);
    case At::kAddresses: {
      std::string value;
      if (!string_value(k, kMaxNameLength, &value)) return false;
      hb_.addresses[key_] = std::move(value);
      return true;
    }
    case At::kCapacity:
    case At::kUse: {
      auto& s = f.at == At::kCapacity ? hb_.capacity.vcpus : hb_.use.vcpus;
      switch (field_) {
        case kVcpus: return narrow_value(k, kMaxU32, &s);
        case kMemoryMib: return unsigned_value(k, kMaxU64, f.at == At::kCapacity ? &hb_.capacity.memory_mib : &hb_.use.memory_mib);
        case kDiskGib: return unsigned_value(k, kMaxU64, f.at == At::kCapacity ? &hb_.capacity.disk_gib : &hb_.use.disk_gib);
        case kVmsRunning: return narrow_value(k, kMaxU32, &hb_.use.vms_running);
        default: return false;
      }
    }
    case At::kVm: {
      VmInfo& vm = hb_.vms.back();
      switch (field_) {
        case kUuid: return string_value(k, kMaxHeartbeatBytes, &vm.uuid);  // bounded by its id check
        case kName: return string_value(k, kMaxNameLength, &vm.name);
        case kState: return string_value(k, kMaxNameLength, &vm.state);
        default: return false;
      }
    }
    case At::kCheck: {
      Check& c = hb_.checks.back();
      switch (field_) {
        case kName: return string_value(k, kMaxNameLength, &c.name);
        case kOk: return bool_value(k, &c.ok);
        case kDetail: return string_value(k, kMaxDetailLength, &c.detail);
        case kTime: return signed_value(k, &c.at);
        default: return false;
      }
    }
    case At::kRoot:
      switch (field_) {
        case kNode: return string_value(k, kMaxHeartbeatBytes, &hb_.node);  // bounded by its id check
        case kSeq: return unsigned_value(k, kMaxU64, &hb_.seq);
        case kBootId: return string_value(k, kMaxNameLength, &hb_.boot_id);
        case kSentAt: return signed_value(k, &hb_.sent_at);
        case kIntervalMs: return signed_value(k, &hb_.interval_ms);
        case kVmsDigest: return string_value(k, kMaxNameLength, &hb_.vms_digest);
        case kV: {
          uint64_t v = 0;
          if (!unsigned_value(k, kMaxU32, &v)) return false;
          if (v < 2 || v > max_version_)
            return stop(quoted("v") + " is " + std::to_string(v) + ": this side reads wire versions 1 to " +
                        std::to_string(max_version_) + " (version 1 has no \"v\")");
          hb_.version = static_cast<uint32_t>(v);
          return true;
        }
        case kCapacity:
        case kUse:
        case kAddresses: return wrong("an object", k);
        case kVmsList:
        case kChecksList: return wrong("an array", k);
        default: return false;
      }
  }
  return false;
}

bool HeartbeatReader::end_object() {
  Frame f = stack_.back();
  switch (f.at) {
    case At::kRoot:
      if (!root_done()) return false;
      break;
    case At::kVm:
      if (!f.saw(kUuid)) return missing("uuid");
      key_ = "uuid";
      if (!id_value<VmUuid>(&hb_.vms.back().uuid)) return false;
      break;
    case At::kCheck:
      if (!f.saw(kName)) return missing("name");
      if (hb_.checks.back().name.empty()) {
        key_ = "name";
        return stop(quoted(path()) + " must not be empty");
      }
      if (!f.saw(kOk)) return missing("ok");
      break;
    default:
      break;
  }
  stack_.pop_back();
  return true;
}

// The whole message read: what is required, and what depends on other fields or the version.
bool HeartbeatReader::root_done() {
  const Frame& f = stack_.back();
  if (!f.saw(kNode)) return missing("node");
  key_ = "node";
  if (!id_value<NodeId>(&hb_.node)) return false;
  if (!f.saw(kSeq)) return missing("seq");
  if (!f.saw(kBootId)) return missing("boot_id");
  if (hb_.boot_id.empty()) return stop(quoted("boot_id") + " must not be empty");
  if (!f.saw(kIntervalMs)) return missing("interval_ms");
  if (hb_.interval_ms <= 0) return stop(quoted("interval_ms") + " must be positive");
  if (hb_.version >= 2) {
    hb_.has_vms = f.saw(kVmsList);
    if (!f.saw(kVmsDigest)) return missing("vms_digest");
    if (!is_digest(hb_.vms_digest)) return stop(quoted("vms_digest") + " must be 16 lower-case hex digits");
  } else if (f.saw(kVmsDigest)) {
    return stop(quoted("vms_digest") + " needs \"v\": 2");
  }
  return true;
}
}  // namespace

Result<Heartbeat> decode_heartbeat(std::string_view text, uint32_t max_version) {
  if (text.size() > kMaxHeartbeatBytes) return Status(NODEHA_ERR_INVALID, over_limit("heartbeat: the message", text.size(), kMaxHeartbeatBytes));
  HeartbeatReader reader(max_version);
  bool parsed = false;
  try {
    parsed = json::sax_parse(text.begin(), text.end(), &reader);
  } catch (const json::exception& e) {  // out_of_range and the like: refused, never thrown at the caller
    return Status(NODEHA_ERR_INVALID, std::string("heartbeat: malformed JSON: ") + e.what());
  }
  if (!reader.error().empty()) return Status(NODEHA_ERR_INVALID, "heartbeat: " + reader.error());
  if (!parsed) return Status(NODEHA_ERR_INVALID, "heartbeat: malformed JSON");
  return reader.take();
}

std::string vms_digest(const std::vector<VmInfo>& vms) {
  std::vector<const VmInfo*> sorted;
  sorted.reserve(vms.size());
  for (const auto& v : vms) sorted.push_back(&v);
  std::sort(sorted.begin(), sorted.end(), [](const VmInfo* a, const VmInfo* b) { return a->uuid < b->uuid; });
  uint64_t h = 14695981039346656037ull;
  auto add = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;  // a separator no UTF-8 text holds
  };
  for (const auto* v : sorted) {
    add(v->uuid);
    add(v->name);
    add(v->state);
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016" PRIx64, h);
  return out;
}

Result<WireGrant> decode_wire_grant(std::string_view text) {
  auto bad = [](const std::string& why) { return Status(NODEHA_ERR_INVALID, "heartbeat wire grant: " + why); };
  if (text.size() > 256) return bad("over 256 bytes");
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object()) return bad("not a JSON object");
  WireGrant g;
  for (const auto& item : j.items()) {
    if (item.key() == "wire" && item.value().is_number_unsigned() && item.value().get<uint64_t>() >= 1 &&
        item.value().get<uint64_t>() <= 1000)
      g.wire = item.value().get<uint32_t>();
    else if (item.key() == "full" && item.value().is_boolean())
      g.full = item.value().get<bool>();
    else
      return bad("field \"" + item.key() + "\" is unknown or not valid (\"wire\": 1 to 1000, \"full\": a boolean)");
  }
  if (!j.contains("wire")) return bad("missing field \"wire\"");
  return g;
}

std::string encode_wire_grant(const WireGrant& g) {
  json j = {{"wire", g.wire}};
  if (g.full) j["full"] = true;
  return j.dump();
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
      {"checks", std::move(checks)},
  };
  if (hb.version >= 2) {
    root["v"] = hb.version;
    root["vms_digest"] = hb.vms_digest;
    if (hb.has_vms) root["vms"] = std::move(vms);
  } else {
    root["vms"] = std::move(vms);
  }
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

uint32_t wire_setting(const Host& host) {
  auto wire = host.config().at("wire").get<int64_t>();
  if (wire < 1 || wire > kWireVersion) throw ConfigError("wire must be 1 or " + std::to_string(kWireVersion));
  return static_cast<uint32_t>(wire);
}

}  // namespace nodeha::heartbeat
