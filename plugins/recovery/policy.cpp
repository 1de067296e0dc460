#include "policy.h"

#include <nodeha/ids.hpp>

#include <fmt/format.h>

#include <set>

namespace nodeha::recovery {
namespace {

Millis parse_duration(const std::string& text, bool* ok) {
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (...) {
    *ok = false;
    return Millis(0);
  }
  std::string unit = text.substr(used);
  *ok = n >= 0;
  if (unit == "ms") return Millis(n);
  if (unit == "s") return Millis(n * 1000);
  if (unit == "m") return Millis(n * 60000);
  *ok = false;
  return Millis(0);
}

}  // namespace

Result<std::vector<Rung>> parse_ladder(const nlohmann::json& tables) {
  auto bad = [](const std::string& why) { return Status(NODEHA_ERR_INVALID, "fence: " + why); };
  if (!tables.is_array() || tables.empty()) return bad("list at least one method ([[plugin.fence]] method = \"ack\")");
  std::vector<Rung> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < tables.size(); ++i) {
    const auto& t = tables[i];
    std::string at = fmt::format("entry {}", i + 1);
    if (!t.is_object()) return bad(at + " is not a table");
    for (const auto& [k, v] : t.items())
      if (k != "method" && k != "timeout") return bad(at + ": unknown key " + k + " (known: method, timeout)");
    if (!t.contains("method") || !t["method"].is_string()) return bad(at + ": method (a string) is required");
    Rung r{t["method"].get<std::string>(), Millis(0)};
    if (!NodeId::parse(r.method)) return bad(at + ": method \"" + r.method + "\" must be a label like ipmi or pdu");
    if (!seen.insert(r.method).second) return bad(at + ": method " + r.method + " is listed twice");
    if (r.method == kAck) {
      if (t.contains("timeout")) return bad(at + ": ack takes no timeout: it waits for the operator as long as it takes");
      if (i + 1 != tables.size()) return bad(at + ": ack waits for the operator as long as it takes, so it can only be last");
    } else if (r.method == kLease) {
      if (t.contains("timeout")) return bad(at + ": lease takes no timeout: it lasts fence_after + the watchdog's timeout + lease_margin");
    } else {
      bool ok = false;
      if (t.contains("timeout") && t["timeout"].is_string()) r.timeout = parse_duration(t["timeout"].get<std::string>(), &ok);
      if (!ok || r.timeout < Millis(1) || r.timeout > Millis(600000))
        return bad(at + ": method " + r.method + " needs a timeout, a duration from 1ms to 10m like \"10s\"");
    }
    out.push_back(r);
  }
  return out;
}

std::optional<std::string> budget_refusal(size_t unreachable, size_t known, const Budget& budget) {
  if (unreachable <= static_cast<size_t>(budget.max_nodes) &&
      static_cast<double>(unreachable) <= budget.max_share * static_cast<double>(known))
    return std::nullopt;
  return fmt::format(
      "{} of {} nodes are unreachable or silent at once, more than automatic recovery acts on (max_auto_nodes {}, "
      "max_auto_share {:.2f}): most likely the controller's side of the network is cut; nothing is done "
      "automatically. Check the network; `nodeha node fence-ack NODE` recovers a node you confirmed off, "
      "drain and rebuild stay possible",
      unreachable, known, budget.max_nodes, budget.max_share);
}

}  // namespace nodeha::recovery
