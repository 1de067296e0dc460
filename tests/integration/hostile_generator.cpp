// The generator of hostile_inputs.h: a valid-looking template per subject (ids that name nothing
// real, dry runs where a command has them), then one mutation that makes it invalid.
#include "hostile_inputs.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace nodeha::test::hostile {
namespace {

constexpr size_t kOversizeBytes = 900 * 1024;

bool is_id(Kind k) { return k == Kind::NodeId || k == Kind::VmUuid || k == Kind::TaskId || k == Kind::PlanId; }

const std::vector<std::string>& hostile_ids() {
  static const std::vector<std::string> pool = {
      std::string(5000, 'x'), std::string(64, 'a'), "", "*", ">", "ghost.*", "ghost.>", "a.b", ".", "..",
      " ghost", "gh ost", "ghost\t", "ghost\n", "ghost\r\nPUB nodeha.cmd.node.drain 2\r\n{}", "\x01\x02\x7f",
      std::string("gh\0ost", 6), "\xc3\xbcn\xc3\xaf\x63\xc3\xb8\x64\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
      "\xf0\x9f\x94\xa5", "ghost\xe2\x80\x8b", "\xe2\x80\xaeghost", "../../etc/passwd", "$KV.nodes.ghost",
      "_INBOX.ghost", "-ghost", "ghost-", "GHOST_", "%2A", "ghost\\", "\"", "ghost\x1b[31m"};
  return pool;
}

// Subject tokens nats-server routes (no spaces, dots or wildcards) that are no node id.
const std::vector<std::string>& hostile_tokens() {
  static const std::vector<std::string> pool = {
      std::string(3000, 'x'), std::string(64, 'a'), "\xc3\xbcn\xc3\xaf\x63\xc3\xb8\x64\xc3\xa9", "\xf0\x9f\x94\xa5",
      "\x01\x7f", "-ghost", "ghost_", "$ghost", "ghost\x1b[31m", "%2A", "ghost\""};
  return pool;
}

const std::vector<std::string> kNumbers = {"-1", "0", "-9223372036854775808", "9223372036854775807",
                                           "18446744073709551615", "18446744073709551616", "1e308", "-1e308",
                                           "1.5", "0.5", "-0.0", "1e-320", "100000"};
const std::vector<std::string> kValues = {"null", "true", "false", "0", "-1", "1.5", "\"\"", "\"ghost\"",
                                          "[]", "{}", "[1,2,3]", "{\"a\":1}"};
const std::vector<std::string> kUnknownKeys = {"extra", "", "NODE", "node ", "dry_run\u0000", "__proto__",
                                               "constructor", "$where", "node.", "ok", std::string(5000, 'k')};
const std::vector<std::string> kNotObjects = {"[]", "null", "true", "42", "\"ghost\"", "[{}]", "-1e999", "\"\\u0000\""};

// A value of another JSON type than `f` takes.
std::string wrong_type_for(const Field& f, size_t choice) {
  std::vector<std::string> bad;
  for (const auto& v : kValues) {
    bool string = v.front() == '"';
    bool takes_string = is_id(f.kind) || f.kind == Kind::String || f.kind == Kind::Xml;
    if (!field_takes(f, v) && !(string && takes_string)) bad.push_back(v);
  }
  return bad[choice % bad.size()];
}

std::string template_value(const Field& f, bool agent, const std::string& stray_value) {
  std::string name = f.name;
  switch (f.kind) {
    case Kind::NodeId:
    case Kind::VmUuid:
    case Kind::TaskId:
    case Kind::PlanId: return quote(stray_value);
    case Kind::DryRun: return "true";
    case Kind::Bool: return "false";
    case Kind::Int: return std::isfinite(f.min) ? std::to_string(static_cast<int64_t>(f.min)) : "1";
    case Kind::Number: return f.min_exclusive ? "5" : "0";
    case Kind::String:
      if (name == "network") return agent ? "\"ghost-net\"" : "\"management\"";
      if (name == "dest_uri") return "\"test:///default\"";
      if (name == "migrate_uri") return "\"tcp://127.0.0.1\"";
      return "\"ghost\"";
    case Kind::Array: return "[]";
    case Kind::Object: return "{}";
    case Kind::Xml: return quote("<domain type='test'><name>ghost</name>");  // never complete
  }
  return "null";
}

Body::iterator find(Body& b, const std::string& key) {
  for (auto it = b.begin(); it != b.end(); ++it)
    if (it->first == key) return it;
  return b.end();
}

void set(Body& b, const std::string& key, std::string value) {
  auto it = find(b, key);
  if (it != b.end()) it->second = std::move(value);
  else b.emplace_back(key, std::move(value));
}

}  // namespace

Generator::Generator(uint64_t seed, World world, int oversize)
    : rng_(seed), world_(std::move(world)), oversize_left_(oversize) {}

size_t Generator::pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

bool Generator::take_oversize() { return oversize_left_ > 0 && oversize_left_-- > 0; }

std::string Generator::random_bytes(size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng_() & 0xff);
  return s;
}

std::string Generator::hostile_id() {
  const auto& pool = hostile_ids();
  if (size_t i = pick(pool.size() + 3); i < pool.size()) return pool[i];
  // Long text of punctuation and a few letters: no digits, so it never contains a real id.
  static const std::string chars = " .*>!\"#$%&'()+,/:;<=?@[]^_`{|}~-qwxyzQWXYZ";
  std::string s(64 + pick(2937), ' ');
  for (auto& c : s) c = chars[pick(chars.size())];
  return s;
}

std::string Generator::hostile_token() {
  const auto& pool = hostile_tokens();
  if (size_t i = pick(pool.size() + 1); i < pool.size()) return pool[i];
  static const std::string chars = "qwxyz_-$%&!";
  std::string s(64 + pick(1937), 'q');
  for (auto& c : s) c = chars[pick(chars.size())];
  return s;
}

std::string Generator::stray(Kind k) {
  auto hex = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += "0123456789abcdef"[pick(16)];
    return s;
  };
  if (k == Kind::NodeId) return "ghost-" + hex(4);
  if (k == Kind::VmUuid) return "dead" + hex(4) + "-" + hex(4) + "-4" + hex(3) + "-8" + hex(3) + "-" + hex(12);
  // A plan id that names no plan (bucket plans is never asked for a stray: with a dry run the
  // request is refused first, and without one unknown_plan changes nothing).
  return hex(k == Kind::PlanId ? 32 : 16);
}

std::string Generator::near_real() {
  const auto& ids = pick(2) ? world_.nodes : world_.vms;
  const std::string& id = ids[pick(ids.size())];
  switch (pick(8)) {
    case 0: return id + " ";
    case 1: return " " + id;
    case 2: return id + "\n";
    case 3: return id + ".>";
    case 4: return id + "*";
    case 5: return id + std::string("\0x", 2);
    case 6: return id + "\xe2\x80\x8b";
    default: return "\t" + id;
  }
}

std::string Generator::wrong_type(const Field& f) { return wrong_type_for(f, pick(1000)); }

std::string Generator::deep(bool arrays) {
  size_t depth = 64 + pick(20000);
  if (arrays) return std::string(depth, '[') + std::string(depth, ']');
  std::string out;
  for (size_t i = 0; i < depth; ++i) out += "{\"a\":";
  return out + "1" + std::string(depth, '}');
}

Input Generator::request(const Op& op, const std::string& subject, bool agent) {
  enum M { HostileId, NearReal, Stray, BadNumber, WrongType, Missing, Unknown, Deep, Truncated, Random, Empty, NotObject, Oversize };
  static const std::vector<std::pair<M, int>> weights = {
      {HostileId, 24}, {NearReal, 5}, {Stray, 6},     {BadNumber, 8}, {WrongType, 12}, {Missing, 5},  {Unknown, 10},
      {Deep, 4},       {Truncated, 10}, {Random, 7},  {Empty, 3},     {NotObject, 4},  {Oversize, 1}};
  std::vector<const Field*> ids, numbers, required;
  bool dry_run = false;
  for (const auto& f : op.fields) {
    if (is_id(f.kind)) ids.push_back(&f);
    if (f.kind == Kind::Int || f.kind == Kind::Number) numbers.push_back(&f);
    if (f.required) required.push_back(&f);
    dry_run |= f.kind == Kind::DryRun;
  }
  // Strays for every id, required fields always, optional ones at random (never free text).
  Body body;
  for (const auto& f : op.fields)
    if (f.required || f.kind == Kind::DryRun || ((is_id(f.kind) || f.kind == Kind::Int || f.kind == Kind::Bool) && pick(2)))
      body.emplace_back(f.name, template_value(f, agent, stray(f.kind)));
  for (;;) {
    int total = 0;
    for (const auto& w : weights) total += w.second;
    int r = static_cast<int>(pick(static_cast<size_t>(total)));
    M m = weights.back().first;
    for (const auto& w : weights)
      if ((r -= w.second) < 0) {
        m = w.first;
        break;
      }
    switch (m) {
      case HostileId: {
        if (ids.empty()) continue;
        const Field* f = ids[pick(ids.size())];
        set(body, f->name, quote(hostile_id()));
        return {subject, render(body), "hostile id in " + std::string(f->name)};
      }
      case NearReal: {
        if (op.acts && !dry_run) continue;
        std::vector<const Field*> named;
        for (auto* f : ids)
          if (f->kind != Kind::TaskId && f->kind != Kind::PlanId) named.push_back(f);
        if (named.empty()) continue;
        const Field* f = named[pick(named.size())];
        set(body, f->name, quote(near_real()));
        return {subject, render(body), "near-real id in " + std::string(f->name)};
      }
      case Stray: {
        if (!op.refuses_strays) continue;
        for (auto* f : ids) set(body, f->name, quote(stray(f->kind)));
        return {subject, render(body), "ids that name nothing"};
      }
      case BadNumber: {
        if (numbers.empty()) continue;
        const Field* f = numbers[pick(numbers.size())];
        std::vector<std::string> bad;
        for (const auto& n : kNumbers)
          if (!field_takes(*f, n)) bad.push_back(n);
        set(body, f->name, bad[pick(bad.size())]);
        return {subject, render(body), "bad number in " + std::string(f->name)};
      }
      case WrongType: {
        if (op.fields.empty()) continue;
        const Field& f = op.fields[pick(op.fields.size())];
        set(body, f.name, wrong_type(f));
        return {subject, render(body), "wrong type in " + std::string(f.name)};
      }
      case Missing: {
        if (required.empty()) continue;
        const Field* f = required[pick(required.size())];
        body.erase(find(body, f->name));
        return {subject, render(body), "missing " + std::string(f->name)};
      }
      case Unknown: {
        const std::string& key = kUnknownKeys[pick(kUnknownKeys.size())];
        body.emplace_back(key, pick(2) ? kValues[pick(kValues.size())] : quote(hostile_id()));
        return {subject, render(body), "unknown field"};
      }
      case Deep: {
        if (pick(2)) return {subject, deep(false), "deep nesting (body)"};
        body.emplace_back("deep", deep(pick(2)));
        return {subject, render(body), "deep nesting (unknown field)"};
      }
      case Truncated: {
        std::string text = render(body);
        return {subject, text.substr(0, 1 + pick(text.size() - 1)), "truncated json"};
      }
      case Random: {
        std::string bytes = random_bytes(1 + pick(4096));
        if (nlohmann::json::parse(bytes, nullptr, false).is_object()) continue;
        return {subject, bytes, "random bytes"};
      }
      case Empty:
        if (required.empty()) continue;
        return {subject, "", "empty payload"};
      case NotObject: return {subject, kNotObjects[pick(kNotObjects.size())], "not an object"};
      case Oversize: {
        if (!take_oversize()) continue;
        size_t how = pick(3);
        if (how == 2) return {subject, random_bytes(kOversizeBytes), "oversize random bytes"};
        if (how == 0 && !ids.empty()) {
          set(body, ids[0]->name, quote(std::string(kOversizeBytes, 'x')));
          return {subject, render(body), "oversize id in " + std::string(ids[0]->name)};
        }
        body.emplace_back("padding", quote(std::string(kOversizeBytes, 'x')));
        return {subject, render(body), "oversize unknown field"};
      }
    }
  }
}

Input Generator::command(const Op& op) { return request(op, std::string("cmd.") + op.name, false); }

Input Generator::agent(const Op& op, const std::string& node) {
  return request(op, "agent." + node + "." + op.name, true);
}

Input Generator::heartbeat(const std::string& subject_node) {
  std::string subject = "hb." + subject_node;
  Body hb = {{"node", quote(subject_node)},
             {"seq", "1"},
             {"boot_id", "\"hostile-boot\""},
             {"interval_ms", "1000"},
             {"sent_at", "0"},
             {"capacity", R"({"vcpus":8,"memory_mib":16384,"disk_gib":10})"},
             {"use", R"({"vcpus":0,"memory_mib":0,"disk_gib":0,"vms_running":0})"},
             {"vms", "[]"},
             {"checks", "[]"}};
  if (!valid_node_id(subject_node) && pick(2)) return {subject, render(hb), "hostile node id on its own subject"};
  static const std::vector<std::pair<std::string, std::string>> wrong = {
      {"node", "5"},        {"seq", "\"1\""},      {"boot_id", "7"}, {"interval_ms", "\"1000\""}, {"sent_at", "\"now\""},
      {"capacity", "[]"},   {"use", "\"x\""},      {"vms", "{}"},    {"checks", "{}"},            {"addresses", "[]"}};
  static const std::vector<std::pair<std::string, std::string>> numbers = {
      {"seq", "-1"}, {"seq", "1.5"}, {"seq", "18446744073709551616"}, {"seq", "-9223372036854775808"},
      {"interval_ms", "0"}, {"interval_ms", "-1000"}, {"interval_ms", "1.5"}, {"interval_ms", "1e308"}};
  static const std::vector<std::string> required = {"node", "seq", "boot_id", "interval_ms"};
  switch (pick(13)) {
    case 0: {
      std::vector<std::string> others = {"ghost-0"};
      for (const auto& n : world_.nodes)
        if (n != subject_node) others.push_back(n);
      set(hb, "node", quote(others[pick(others.size())]));
      return {subject, render(hb), "another node's id"};
    }
    case 1: set(hb, "node", quote(hostile_id())); return {subject, render(hb), "hostile node id"};
    case 2: {
      const auto& f = required[pick(required.size())];
      hb.erase(find(hb, f));
      return {subject, render(hb), "missing " + f};
    }
    case 3: {
      const auto& [f, v] = wrong[pick(wrong.size())];
      set(hb, f, v);
      return {subject, render(hb), "wrong type in " + f};
    }
    case 4: {
      const auto& [f, v] = numbers[pick(numbers.size())];
      set(hb, f, v);
      return {subject, render(hb), "bad number in " + f};
    }
    case 5: set(hb, "boot_id", "\"\""); return {subject, render(hb), "empty boot_id"};
    case 6: hb.emplace_back(kUnknownKeys[pick(kUnknownKeys.size())], "1"); return {subject, render(hb), "unknown field"};
    case 7: hb.emplace_back("deep", deep(pick(2))); return {subject, render(hb), "deep nesting (unknown field)"};
    case 8: {
      std::string text = render(hb);
      return {subject, text.substr(0, 1 + pick(text.size() - 1)), "truncated json"};
    }
    case 9: return {subject, random_bytes(1 + pick(4096)), "random bytes"};
    case 10: return {subject, "", "empty payload"};
    case 11: return {subject, kNotObjects[pick(kNotObjects.size())], "not an object"};
    default:
      if (!take_oversize()) return {subject, kNotObjects[pick(kNotObjects.size())], "not an object"};
      set(hb, "node", quote(std::string(kOversizeBytes, 'x')));
      return {subject, render(hb), "oversize node id"};
  }
}

Input Generator::check(const std::string& node, const std::string& name) {
  std::string subject = "check." + node + "." + name;
  Body v = {{"node", quote(node)}, {"name", quote(name)}, {"ok", "false"}, {"detail", "\"hostile\""}};
  if (!valid_node_id(node) && pick(2)) return {subject, render(v), "hostile node id on its own subject"};
  switch (pick(12)) {
    case 0: {
      std::vector<std::string> others = {"ghost-0"};
      for (const auto& n : world_.nodes)
        if (n != node) others.push_back(n);
      set(v, "node", quote(others[pick(others.size())]));
      return {subject, render(v), "another node's verdict"};
    }
    case 1: set(v, "node", quote(hostile_id())); return {subject, render(v), "hostile node id"};
    case 2: set(v, "name", quote(name + "-other")); return {subject, render(v), "name not the subject's"};
    case 3: v.erase(find(v, "name")); return {subject, render(v), "missing name"};
    case 4: v.erase(find(v, "ok")); return {subject, render(v), "missing ok"};
    case 5: {
      static const std::vector<std::string> bad = {"\"false\"", "0", "null", "[]"};
      set(v, "ok", bad[pick(bad.size())]);
      return {subject, render(v), "wrong type in ok"};
    }
    case 6: set(v, "name", deep(true)); return {subject, render(v), "deep nesting in name"};
    case 7: {
      std::string text = render(v);
      return {subject, text.substr(0, 1 + pick(text.size() - 1)), "truncated json"};
    }
    case 8: return {subject, random_bytes(1 + pick(4096)), "random bytes"};
    case 9: return {subject, "", "empty payload"};
    case 10: return {subject, kNotObjects[pick(kNotObjects.size())], "not an object"};
    default:
      if (!take_oversize()) return {subject, "{}", "not a verdict"};
      set(v, "node", quote(std::string(kOversizeBytes, 'x')));
      return {subject, render(v), "oversize node id"};
  }
}

Input Generator::garbage(const std::string& subject) {
  switch (pick(4)) {
    case 0: return {subject, random_bytes(1 + pick(4096)), "random bytes"};
    case 1: return {subject, deep(pick(2)), "deep nesting (body)"};
    case 2:
      if (take_oversize()) return {subject, random_bytes(kOversizeBytes), "oversize random bytes"};
      [[fallthrough]];
    default: return {subject, "", "empty payload"};
  }
}

}  // namespace nodeha::test::hostile
