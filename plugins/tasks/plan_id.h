// A plan's id, beside the ids of host/sdk/include/nodeha/ids.hpp and made the same way: only its
// parse makes one. 32 hex digits (128 random bits, plans.cpp makes them): a client cannot guess
// another's plan, and the id, a key of KV bucket `plans`, reaches no other key. Header-only.
#pragma once

#include <nodeha/ids.hpp>

namespace nodeha {

inline constexpr size_t kPlanIdLength = 32;

// Either case is accepted and kept in lower case, as they are made.
class PlanId : public ids_detail::IdBase<PlanId> {
 public:
  static constexpr const char* kRule = "32 hex digits, as a dry run returned it";

  static Result<PlanId> parse(std::string_view s) {
    bool ok = s.size() == kPlanIdLength;
    for (char c : s) ok = ok && ids_detail::hex(c);
    if (!ok) return Status(NODEHA_ERR_INVALID, echo_value(s) + " is not a plan id: " + kRule);
    return PlanId(ids_detail::lower(s));
  }

 private:
  friend class Result<PlanId>;
  PlanId() = default;
  explicit PlanId(std::string v) : IdBase(std::move(v)) {}
};

}  // namespace nodeha
