// The request of the fence contract (docs/plugins.md, "Fence plugins"), decoded strictly in one
// place: {"node": "<node id>", "timeout_ms": <1..600000, optional>}. Pure.
#pragma once

#include "command.h"

#include <nodeha/ids.hpp>

#include <optional>
#include <string_view>

namespace nodeha::fence_ipmi {

inline constexpr int64_t kMaxFenceTimeoutMs = 600000;

struct FenceRequest {
  std::optional<NodeId> node;  // set once decoded
  Millis timeout{0};
};

// The request, or the error envelope's code and message (bad_json, unknown_field, bad_type,
// missing_field, bad_value); `default_timeout` when it names none.
std::optional<command::Error> decode_fence_request(std::string_view body, Millis default_timeout, FenceRequest* out);

}  // namespace nodeha::fence_ipmi
