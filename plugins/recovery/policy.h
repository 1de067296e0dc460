// The pure rules of automatic recovery (docs/operations.md, "Automatic recovery"): the fence
// ladder as configured, and the budget that keeps a partition on the controller's side from
// turning into a mass rebuild.
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace nodeha::recovery {

// "ack" waits for `nodeha node fence-ack`; any other method is asked of the fence plugin serving
// `<prefix>.cmd.fence.<method>` (docs/plugins.md, "Fence plugins").
inline constexpr const char* kAck = "ack";
// "lease" waits until the node fenced itself by its lease (plugins/selffence/fence_lease.h).
inline constexpr const char* kLease = "lease";

struct Rung {
  std::string method;
  Millis timeout{0};  // how long the method may take; 0 for ack
};

// The `fence` tables of the config, in order: {method, timeout}. A method is a label (it ends a
// subject) and appears once; its timeout is a duration from 1 ms to 10 min ("10s"). ack takes no
// timeout (it waits for the operator) and may only come last; lease takes none either (its time is
// the lease's, the watchdog's and the margin's).
Result<std::vector<Rung>> parse_ladder(const nlohmann::json& tables);

struct Budget {
  int max_nodes = 1;       // nodes unreachable at once, at most, for automatic recovery
  double max_share = 0.34; // and at most this share of the known nodes
};

// Why no node may be recovered automatically while `unreachable` of `known` nodes are; nullopt
// when the budget allows it.
std::optional<std::string> budget_refusal(size_t unreachable, size_t known, const Budget& budget);

}  // namespace nodeha::recovery
