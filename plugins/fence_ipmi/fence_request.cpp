#include "fence_request.h"

namespace nodeha::fence_ipmi {

std::optional<command::Error> decode_fence_request(std::string_view body, Millis default_timeout, FenceRequest* out) {
  using command::Type;
  nlohmann::json req;
  if (auto e = command::decode(body, {{"node", Type::String, true}, {"timeout_ms", Type::Integer}}, &req)) return e;
  if (auto e = command::parse_id("node", req["node"], &out->node)) return e;
  out->timeout = default_timeout;
  if (!req.contains("timeout_ms")) return std::nullopt;
  const auto& t = req["timeout_ms"];
  // Read as what it is: a huge unsigned one must not wrap into range.
  bool in_range = t.is_number_unsigned() ? t.get<uint64_t>() >= 1 && t.get<uint64_t>() <= kMaxFenceTimeoutMs
                                         : t.get<int64_t>() >= 1 && t.get<int64_t>() <= kMaxFenceTimeoutMs;
  if (!in_range)
    return command::Error{command::kBadValue, "field \"timeout_ms\": must be from 1 to " + std::to_string(kMaxFenceTimeoutMs) +
                                                  " (milliseconds), got " + t.dump()};
  out->timeout = Millis(t.get<int64_t>());
  return std::nullopt;
}

}  // namespace nodeha::fence_ipmi
