// The task engine the controller's operation plugins (migrate, drain, rebuild) run on
// (docs/node-operations.md): node locks, task records written with revision checks, steps run
// `parallel` at a time on workers, retried while a node cannot be reached, cancelled on request,
// and resumed after a controller restart. An operation plugin supplies only what a step does.
#pragma once

#include "command.h"
#include "evidence.h"
#include "thread_set.h"

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace nodeha::tasks {

// Error codes of the operations, beyond those of command.h.
inline constexpr const char* kNodeLocked = "node_locked";
inline constexpr const char* kNodeUnreachable = "node_unreachable";
inline constexpr const char* kNodeNotDrained = "node_not_drained";
inline constexpr const char* kNodeDrained = "node_drained";
inline constexpr const char* kNoRoom = "no_room";
inline constexpr const char* kUnknownTask = "unknown_task";
inline constexpr const char* kTaskFinished = "task_finished";
inline constexpr const char* kUnknownVm = command::kUnknownVm;
inline constexpr const char* kUnknownNetwork = "unknown_network";

inline constexpr const char* kNodesBucket = "nodes";

int64_t unix_ms();

// Reads a node record; unknown_node / unavailable as a command error. The id was checked
// (command::parse_id): only a NodeId reaches the KV key.
std::optional<command::Error> read_node(const Host& host, const NodeId& node, nlohmann::json* record);

// Takes `node`'s lock for `task` (its id, kind, owner) in one revision-checked write of the node
// record. `check` sees the record as read and may refuse (its error is returned) or change it
// (e.g. drain sets management); the lock and the change are written together, so no other
// command can slip in between the check and the lock.
std::optional<command::Error> lock_node(const Host& host, const std::string& node, const nlohmann::json& task,
                                        const std::function<std::optional<command::Error>(nlohmann::json&)>& check);

// lock_node that also sets the node's `management` to `to` in the same write, after `check` (may
// be empty) let it; a node whose state changes gets its `management` event (from, to, task).
std::optional<command::Error> lock_and_set_management(const Host& host, const std::string& node, const nlohmann::json& task,
                                                      const std::string& to,
                                                      const std::function<std::optional<command::Error>(nlohmann::json&)>& check);

// lock_node that also makes the node drained in the same write (drain, recover), after `check`
// (may be empty) let it; a node that was not drained yet gets its `management` event.
std::optional<command::Error> lock_and_drain(const Host& host, const std::string& node, const nlohmann::json& task,
                                             const std::function<std::optional<command::Error>(nlohmann::json&)>& check);

// Releases the lock if it still names `task_id`.
Status unlock_node(const Host& host, const std::string& node, const std::string& task_id);

// What a step came to.
struct StepResult {
  enum class Outcome { Succeeded, Failed, Retry } outcome;
  std::string detail;  // the error, or why it waits
  nlohmann::json fields = nlohmann::json::object();  // set in the step when it succeeded (its figures)
  // The step's evidence (evidence.h): its summary and facts; the engine fills who decided, the
  // epoch and the task. Empty summary: "<kind> task <id>: <vm> <state>[: detail]".
  std::string summary = "";
  nlohmann::json facts = nlohmann::json::object();
  StepResult&& because(std::string why, nlohmann::json named = nlohmann::json::object()) && {
    summary = std::move(why);
    facts = std::move(named);
    return std::move(*this);
  }
  static StepResult ok(nlohmann::json fields = nlohmann::json::object()) {
    return {Outcome::Succeeded, "", std::move(fields)};
  }
  static StepResult failed(std::string why) { return {Outcome::Failed, std::move(why)}; }
  // Not done and not failed: run it again after the kind's retry interval (the node cannot be
  // reached yet). The step shows `waiting` with the reason.
  static StepResult retry(std::string why) { return {Outcome::Retry, std::move(why)}; }
};

struct Kind {
  std::string name;  // task kind: "migrate", "drain", "rebuild"
  Millis retry_every{2000};
  // Steps at a time of a task resumed after a restart (the plugin's own setting; a task's
  // params.max_parallel wins when present).
  int parallel = 2;
  // Runs one step; blocking, on a thread of the engine's own (not a host worker). `task` is the
  // record without its steps (the id, node,
  // params, ...: what is fixed when the task is created); `step` a snapshot of its step.
  std::function<StepResult(const nlohmann::json& task, const nlohmann::json& step)> run_step;
  // Called once, on a worker, when every step is final and before the node is unlocked (release
  // reservations, ...); `task` is the whole record. Optional.
  std::function<void(const nlohmann::json& task)> on_finish;
  // Called once, on a worker, for a task this engine resumes (left unfinished by a controller
  // that stopped), once it is marked resumed and before its steps run again; `task` is the
  // whole record. Optional.
  std::function<void(const nlohmann::json& task)> on_resume;
  // Called on a worker for each step that is running when the task is cancelled (abort a
  // migration); `task` as for run_step. Optional.
  std::function<void(const nlohmann::json& task, const nlohmann::json& step)> on_cancel;
};

class Engine {
 public:
  Engine(const Host& host, Kind kind);
  // Waits for the steps still running (their threads are the engine's).
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Watches the tasks bucket for cancellations and resumes, on a worker, every unfinished task of
  // this kind (steps that were running are run again: steps are idempotent).
  Status start();
  // No new steps start; steps already running go on to their end.
  void stop();

  // Stores `task` (its steps filled in, the node locked by the caller; a head and chunks:
  // task_steps.h) and runs it, `parallel` steps at a time. On failure (the store cannot be
  // reached) the caller unlocks the node.
  Status submit(nlohmann::json task, int parallel);

  // A step's progress (a migration's bytes); saved at most once a second per task.
  void progress(const std::string& task_id, const std::string& vm, const nlohmann::json& progress);

 private:
  struct Run;
  void resume_unfinished();
  void pump(const std::shared_ptr<Run>& run);
  void run_step(const std::shared_ptr<Run>& run, size_t index);
  void arm_retry(const std::shared_ptr<Run>& run);
  void retry_due(const std::shared_ptr<Run>& run);
  void finish(const std::shared_ptr<Run>& run);
  // A finished task's outcome on evt.node.<node>, so the node's history shows its steps.
  void publish_outcome(const nlohmann::json& task);
  // How soon a change is written: at once (created, finished, cancelled, resumed), or with the
  // other changes of the next `kCoalesce` (steps starting and ending), or at most a second after
  // the last write (a migration's progress; in between it stays in memory for the next write).
  enum class Save { Now, Soon, Throttled };
  bool save(const std::shared_ptr<Run>& run, const char* event, Save when);
  std::optional<std::string> write_chunk(const std::shared_ptr<Run>& run, size_t k);
  // The head (JSON), alone or with each chunk written, on evt.task.<id>: `event` once, with the
  // last chunk; the chunks before it as `steps`.
  void publish_event(const std::string& id, const char* event, const std::string& head, const std::vector<std::string>& chunks);
  void flush_later(const std::shared_ptr<Run>& run);
  void on_task_entry(const KvEntry& e);

  Host host_;
  Kind kind_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Run>> runs_;
  uint64_t watch_ = 0;
  Metric running_;
  std::map<std::string, Metric> step_results_;  // nodeha_task_steps_total by result; made in start()
  // Steps block for as long as a VM's shutdown or migration takes: they run here, at most each
  // task's `parallel`, never on the host's shared workers, which the other plugins need
  // meanwhile (node commands, heartbeat writes, task.show). Last: joined before the rest goes.
  ThreadSet steps_;
};

}  // namespace nodeha::tasks

namespace nodeha::tasks {

// An answer from an agent or another controller plugin, in the reply envelope.
struct Reply {
  bool ok = false;
  bool unreachable = false;  // no answer: timeout, no responder, bus down
  nlohmann::json result;
  std::string code, message;
};
Reply call(const Host& host, const std::string& subject, const nlohmann::json& body, Millis timeout);
// call(), asked again every `every` while no answer came, until `total` has passed. A reply sent
// across a nats-server restart is lost (with auth on, the server refuses it: docs/security.md), so
// a long request is not one wait but many. Only for a request the agent treats as one however
// often it is asked (vm.migrate with its task: plugins/migrate/answers.h).
Reply call_until(const Host& host, const std::string& subject, const nlohmann::json& body, Millis total, Millis every);

// The records of the vms bucket that name `node`, by name.
Result<std::vector<nlohmann::json>> vms_on(const Host& host, const std::string& node);

// What the scheduler says for `vms` (records): uuid -> target node, or uuid -> the reason it
// could not be placed. `reserve_s` > 0 holds the room for `task` until released.
struct Placements {
  std::map<std::string, std::string> node;
  std::map<std::string, std::string> refused;  // uuid -> "code: message"
  std::map<std::string, std::string> refused_code;
};
Result<Placements> place(const Host& host, const std::vector<nlohmann::json>& vms, const std::string& exclude,
                         const std::string& target, double reserve_s, const std::string& task);
void release(const Host& host, const std::string& task);
// Holds again, for `reserve`, the room of the unfinished steps of `task` (a whole record) on
// their targets: reservations live in the scheduler's process, and a resumed task must not find
// its targets filled meanwhile. Steps whose VM's record names its target already are counted
// there by the scheduler and are left out. A scheduler that does not answer is asked again for
// 15 s (a new leader's starts at the same time), then logged: the steps run all the same.
void hold_again(const Host& host, const nlohmann::json& task, Millis reserve);

// A named target that cannot take every one of the `movable` VMs, or room nowhere for any:
// the command is refused with no_room, naming the first reason.
std::optional<command::Error> no_room(const Placements& placed, size_t movable, const std::string& node,
                                      const std::string& target);

// One VM of `vm` (a record) in the plan and in the task, side by side: skipped with `skip_reason`
// when it is not empty, else `action` to its placement, else `unplaced` (a failed step).
void plan_vm(nlohmann::json& plan, nlohmann::json& task, const nlohmann::json& vm, const Placements& placed,
             const std::string& action, const std::string& skip_reason);

}  // namespace nodeha::tasks
