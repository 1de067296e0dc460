#include "evidence.h"

#include <nodeha/ids.hpp>

#include <cmath>
#include <cstdio>

namespace nodeha::evidence {

nlohmann::json to_json(const Evidence& e) {
  nlohmann::json j = {{"v", kVersion}, {"summary", e.summary}, {"by", e.by}};
  if (e.epoch != 0) j["epoch"] = e.epoch;
  if (!e.requester.empty()) j["requester"] = e.requester;
  if (!e.task.empty()) j["task"] = e.task;
  if (e.facts.is_object() && !e.facts.empty()) j["facts"] = e.facts;
  return j;
}

namespace {

Status bad(const std::string& what) { return Status(NODEHA_ERR_INVALID, "evidence: " + what); }

}  // namespace

Result<Evidence> from_json(const nlohmann::json& j) {
  if (!j.is_object()) return bad("not an object");
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer() || v->get<int64_t>() != kVersion)
    return bad("field \"v\" must be " + std::to_string(kVersion));
  Evidence e;
  for (auto [name, out] : {std::pair{"summary", &e.summary}, std::pair{"by", &e.by}, std::pair{"requester", &e.requester},
                           std::pair{"task", &e.task}}) {
    auto f = j.find(name);
    bool required = std::string_view(name) == "summary" || std::string_view(name) == "by";
    if (f == j.end()) {
      if (required) return bad(std::string("field \"") + name + "\" is missing");
      continue;
    }
    if (!f->is_string()) return bad(std::string("field \"") + name + "\" must be a string");
    *out = f->get<std::string>();
  }
  if (auto f = j.find("epoch"); f != j.end()) {
    if (!f->is_number_unsigned() && !(f->is_number_integer() && f->get<int64_t>() >= 0))
      return bad("field \"epoch\" must be a non-negative integer");
    e.epoch = f->get<uint64_t>();
  }
  if (auto f = j.find("facts"); f != j.end()) {
    if (!f->is_object()) return bad("field \"facts\" must be an object");
    for (const auto& [name, value] : f->items())
      if (!value.is_primitive() || value.is_null()) return bad("fact \"" + name + "\" must be a string, number or bool");
    e.facts = *f;
  }
  return e;
}

std::string requester_of(std::string_view reply) {
  constexpr std::string_view kPrefix = "_INBOX_";
  if (reply.substr(0, kPrefix.size()) != kPrefix) return kUnauthenticated;
  std::string_view rest = reply.substr(kPrefix.size());
  std::string_view name = rest.substr(0, rest.find('.'));
  if (name.empty() || name.size() == rest.size()) return kUnauthenticated;  // "_INBOX_x" with no token after it
  // Anyone names the reply subject: only an identity name (a DNS label, as `auth init` makes them)
  // goes into records; 5,000 characters or bytes that are not UTF-8 would break every record
  // holding it (a JSON dump throws on them).
  if (!NodeId::parse(name)) return kUnauthenticated;
  return std::string(name);
}

std::string seconds(double s) {
  char buf[32];
  double rounded = std::round(s * 100) / 100;
  if (rounded == std::floor(rounded)) std::snprintf(buf, sizeof buf, "%.0f s", rounded);
  else if (rounded * 10 == std::floor(rounded * 10)) std::snprintf(buf, sizeof buf, "%.1f s", rounded);
  else std::snprintf(buf, sizeof buf, "%.2f s", rounded);
  return buf;
}

}  // namespace nodeha::evidence
