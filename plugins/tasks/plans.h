// Plans that run exactly as shown (docs/operations.md, "Plans"). A dry run of a node operation
// (drain, migrate, rebuild, maintenance) keeps what its plan was made from (plan_basis.h) in KV
// bucket `plans`, key = the plan id (plan_id.h: 32 hex digits, 128 random bits), so that whichever
// controller leads when the operator answers can run it. The same command with `"plan": ID`
// runs that plan: the handler builds the basis again from the records as they are now, pins
// each VM to its planned target (the scheduler must still fit it there; the room is reserved
// as for any task), and refuses with plan_drifted and the changes when anything differs. A plan
// runs at most once (its record is marked used in a revision-checked write) and expires after
// the plugin's `plan_ttl`; the leader's plugins remove expired plans every minute (every
// plan_ttl when that is shorter).
//
// A handler's part, in order (plugins/drain/drain.cpp is the smallest):
//   keeper.open(command, req, &kept)        after decode; fills in the plan's request fields
//   keeper.check_records(kept, record, vms) before the handler's own refusals
//   place_pinned(...)                       with a plan, instead of tasks::place
//   Keeper::check_plan(kept, plan, found)   the plan built now, action and target per VM
//   dry run: keeper.keep(...)               else lock (Keeper::check_source in its check),
//                                           keeper.use(*kept, task) before the task is stored
// Threads: every call blocks on KV; call from a worker.
#pragma once

#include "engine.h"
#include "plan_basis.h"
#include "plan_id.h"

#include <nodeha/plugin.hpp>

#include <optional>
#include <string>

namespace nodeha::plans {

inline constexpr const char* kBucket = "plans";
inline constexpr const char* kPlanDrifted = "plan_drifted";
inline constexpr const char* kPlanExpired = "plan_expired";
inline constexpr const char* kUnknownPlan = "unknown_plan";
inline constexpr const char* kPlanUsed = "plan_used";

// The config key of every plugin that makes plans.
nodeha_config_key ttl_key();

// A plan as kept, opened for a run.
struct Kept {
  std::string id;
  uint64_t revision = 0;
  nlohmann::json basis;
};

// A request's own fields: what a plan is made for (not dry_run, not plan).
nlohmann::json request_of(const nlohmann::json& req);

class Keeper {
 public:
  // Reads `plan_ttl` (ConfigError outside 1 s .. 24 h).
  explicit Keeper(const Host& host);
  Keeper(const Keeper&) = delete;
  Keeper& operator=(const Keeper&) = delete;
  Status start();  // the sweep of expired plans
  void stop();

  // Nothing (and *out empty) when `req` has no `plan`. Otherwise: bad_value (a bad id, or with
  // dry_run), unknown_plan, plan_expired (then removed), plan_used, or plan_drifted when the plan
  // is another command's, another node's, or a field given differs from the plan's; fields the
  // plan's request has and `req` lacks are filled in, so `{"node", "plan"}` is enough.
  std::optional<command::Error> open(const std::string& command, nlohmann::json& req, std::optional<Kept>* out) const;

  // plan_drifted naming every change when the records differ from the plan's: the source node's
  // record, `vms` (the records the command would list now) and the records of the plan's
  // targets. Nothing without a plan. Before the handler's own refusals (a lock is a drift).
  std::optional<command::Error> check_records(const std::optional<Kept>& kept, const nlohmann::json& node_record,
                                              const std::vector<nlohmann::json>& vms) const;
  // plan_drifted when the plan built now differs (action, target per VM), or `found` (changes
  // seen by place_pinned) is not empty. Nothing without a plan.
  static std::optional<command::Error> check_plan(const std::optional<Kept>& kept, const nlohmann::json& plan,
                                                  const nlohmann::json& found);
  // For lock_node's check: the node's record as the lock write sees it.
  static std::optional<command::Error> check_source(const std::optional<Kept>& kept, const nlohmann::json& node_record);

  // Keeps a dry run's plan with what it was made from; sets result["plan_id"] and ["expires_at"].
  std::optional<command::Error> keep(const std::string& command, const std::string& node, const nlohmann::json& req,
                                     const nlohmann::json& node_record, const std::vector<nlohmann::json>& vms,
                                     const nlohmann::json& plan, nlohmann::json& result) const;

  // Marks the plan used by `task`: plan_used when another run took it first.
  std::optional<command::Error> use(const Kept& kept, const std::string& task) const;

  // The `targets` section now: each target of `plan` as its record says, with the room the plan
  // needs there (`vms` a vms section). A target without a record is "no record".
  Result<nlohmann::json> targets_now(const nlohmann::json& plan, const nlohmann::json& vms) const;

 private:
  void sweep() const;

  Host host_;
  Millis ttl_;
  uint64_t timer_ = 0;
};

// tasks::place with each VM of `movable` pinned to its target in `planned` (a plan section): one
// scheduler request per target, reserving for `task` when reserve_s > 0. A VM the scheduler no
// longer fits there adds a change to `found` (target_full, or target_state when the target is
// refused as a whole). VMs the plan did not place are not placed now either.
Result<tasks::Placements> place_pinned(const Host& host, const std::vector<nlohmann::json>& movable,
                                       const std::string& node, const nlohmann::json& planned, double reserve_s,
                                       const std::string& task, nlohmann::json& found);

}  // namespace nodeha::plans
