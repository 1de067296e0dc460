#include "engine.h"

#include "record_fields.h"
#include "task_record.h"
#include "task_steps.h"
#include "vm_record.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

namespace nodeha::tasks {

namespace {

// Step changes written together: a drain of a thousand VMs changes a step thousands of times a
// minute; each write carries the chunks changed and the head.
constexpr Millis kCoalesce{250};

// Steps named in a finished task's evt.node event, at most.
constexpr size_t kOutcomeSteps = 500;

constexpr const char* kStepsHelp = "task steps run to an end (or to a wait), by kind and outcome";

// What run_step gets: the record without its steps.
std::shared_ptr<const nlohmann::json> header_of(const nlohmann::json& task) {
  auto h = std::make_shared<nlohmann::json>(nlohmann::json::object());
  for (const auto& [key, value] : task.items())
    if (key != "steps") (*h)[key] = value;
  return h;
}

}  // namespace

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::optional<command::Error> read_node(const Host& host, const NodeId& id, nlohmann::json* record) {
  const std::string& node = id.str();
  auto cur = host.kv_get(kNodesBucket, node);
  if (!cur && cur.status().code() == NODEHA_ERR_NOT_FOUND)
    return command::Error{command::kUnknownNode, "no node named \"" + node + "\"; `nodeha node list` shows the known nodes"};
  if (!cur) return command::Error{command::kUnavailable, "cannot read the record of " + node + ": " + cur.status().message()};
  *record = nlohmann::json::parse(cur->value, nullptr, false);
  if (!record->is_object()) return command::Error{command::kInternal, "the record of " + node + " is not JSON"};
  return std::nullopt;
}

std::optional<command::Error> lock_node(const Host& host, const std::string& node, const nlohmann::json& task,
                                        const std::function<std::optional<command::Error>(nlohmann::json&)>& check) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto cur = host.kv_get(kNodesBucket, node);
    if (!cur && cur.status().code() == NODEHA_ERR_NOT_FOUND)
      return command::Error{command::kUnknownNode, "no node named \"" + node + "\"; `nodeha node list` shows the known nodes"};
    if (!cur) return command::Error{command::kUnavailable, "cannot read the record of " + node + ": " + cur.status().message()};
    auto record = nlohmann::json::parse(cur->value, nullptr, false);
    if (!record.is_object()) return command::Error{command::kInternal, "the record of " + node + " is not JSON"};
    if (record.contains("lock") && record["lock"].is_object())
      return command::Error{kNodeLocked, task_record::locked_message(node, record["lock"])};
    if (auto e = check(record)) return e;
    record["lock"] = {{"task", task["id"]}, {"kind", task["kind"]}, {"since", unix_ms()}, {"owner", task["owner"]},
                      {"epoch", host.epoch().value_or(0)}};
    auto w = host.kv_update(kNodesBucket, node, record.dump(), cur->revision);
    if (w) return std::nullopt;
    if (w.status().code() != NODEHA_ERR_CONFLICT)
      return command::Error{command::kUnavailable, "cannot lock " + node + ": " + w.status().message()};
  }
  return command::Error{command::kUnavailable, "the record of " + node + " kept changing; try again"};
}

std::optional<command::Error> lock_and_set_management(const Host& host, const std::string& node, const nlohmann::json& task,
                                                      const std::string& to,
                                                      const std::function<std::optional<command::Error>(nlohmann::json&)>& check) {
  std::string before;
  auto refused = lock_node(host, node, task, [&](nlohmann::json& r) -> std::optional<command::Error> {
    if (check)
      if (auto e = check(r)) return e;
    before = r.value("management", "enabled");
    r["management"] = to;
    return std::nullopt;
  });
  if (!refused && before != to) {
    std::string id = task["id"], kind = task.value("kind", "");
    auto ev = evidence::decided(host, to + " by " + kind + " task " + id + ", requested by identity " +
                                          task.value("requested_by", std::string(evidence::kUnauthenticated)));
    ev.task = id;
    ev.requester = task.value("requested_by", "");
    ev.facts = {{"kind", kind}};
    (void)host.publish(host.subject("evt.node." + node),
                       nlohmann::json{{"event", "management"}, {"node", node}, {"from", before}, {"to", to},
                                      {"task", id}, {"time", unix_ms()}, {"evidence", evidence::to_json(ev)}}
                           .dump());
  }
  return refused;
}

std::optional<command::Error> lock_and_drain(const Host& host, const std::string& node, const nlohmann::json& task,
                                             const std::function<std::optional<command::Error>(nlohmann::json&)>& check) {
  return lock_and_set_management(host, node, task, "drained", check);
}

Status unlock_node(const Host& host, const std::string& node, const std::string& task_id) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto cur = host.kv_get(kNodesBucket, node);
    if (!cur) return cur.status().code() == NODEHA_ERR_NOT_FOUND ? Status::ok() : cur.status();
    auto record = nlohmann::json::parse(cur->value, nullptr, false);
    if (!record.is_object() || !record.contains("lock") || !record["lock"].is_object() ||
        record["lock"].value("task", "") != task_id)
      return Status::ok();
    record["lock"] = nullptr;
    auto w = host.kv_update(kNodesBucket, node, record.dump(), cur->revision);
    if (w) return Status::ok();
    if (w.status().code() != NODEHA_ERR_CONFLICT) return w.status();
  }
  return Status(NODEHA_ERR_CONFLICT, "the record of " + node + " kept changing");
}

// One task being run. Everything in it is guarded by `mu`, which is also held while the record
// is written, so that writes of one task never overtake each other.
struct Engine::Run {
  std::mutex mu;
  nlohmann::json task;  // the whole record, steps and all; stored as a head and chunks (task_steps.h)
  std::shared_ptr<const nlohmann::json> header;  // the task without its steps, set once
  // cancel_requested was seen in the store (read without `mu` by the watch, which skips the
  // task's own writes once it knows).
  std::atomic<bool> cancel_known{false};
  task_steps::Revisions revision;   // of the head and of each chunk, as last written or read
  std::set<size_t> dirty;           // chunks changed since they were written
  nlohmann::json counts = nlohmann::json::object();  // steps by state, for the head
  std::set<size_t> pending;         // steps in state pending, started lowest first
  size_t unfinished = 0;            // steps not final
  // Steps run again after a wait, whose stored state says `waiting`: until their outcome differs
  // (another state, another reason) their comings and goings are not written. A dead node's
  // drain of 10,000 VMs retries every step every retry_every: written, that rewrote every chunk
  // four times a second (docs/performance.md, "Tasks at 10,000 steps").
  std::set<size_t> quiet;
  // Waiting steps in the order their retry comes (retry_every is the same for all): one timer per
  // task, for the first of them, not one per step (the host's timers are a list: 10,000 of them
  // made its event loop scan 10,000 entries at every wake-up).
  std::deque<std::pair<std::chrono::steady_clock::time_point, size_t>> retry_due;
  bool retry_armed = false;
  int parallel = 2;
  int active = 0;                   // steps running on workers
  int waiting = 0;                  // steps waiting for their retry timer
  bool cancel_seen = false;         // cancel_requested read and acted on
  bool finishing = false;
  int64_t saved_at = 0;             // when the record was last written
  bool unsaved = false;             // a change is not written yet (coalesced, or the bus is down)
  bool flush_armed = false;         // a timer will write the unsaved changes
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  nlohmann::json& step(size_t i) {
    dirty.insert(task_steps::chunk_of_step(i));
    return task["steps"][i];
  }
  // Every change of a step's state goes here: the counts, the pending set and (unless `written`
  // is false: a quiet retry) the chunk follow.
  void set_state(size_t i, const std::string& to, bool written = true) {
    auto& s = written ? step(i) : task["steps"][i];
    tally(record::text(s, "state", "?"), -1, i);
    tally(to, +1, i);
    s["state"] = to;
  }
  // The counts and sets of the steps as they are (a new or resumed task).
  void index_steps() {
    counts = nlohmann::json::object();
    pending.clear();
    unfinished = 0;
    const auto& steps = task["steps"];
    for (size_t i = 0; i < steps.size(); ++i) tally(record::text(steps[i], "state", "?"), +1, i);
  }

 private:
  void tally(const std::string& state, int by, size_t i) {
    int64_t n = record::integer(counts, state.c_str()) + by;
    if (n > 0) counts[state] = n;
    else counts.erase(state);
    if (!task_record::step_final(state)) unfinished += by;
    if (state == "pending") by > 0 ? (void)pending.insert(i) : (void)pending.erase(i);
  }
};

Engine::Engine(const Host& host, Kind kind) : host_(host), kind_(std::move(kind)) {}

Engine::~Engine() {
  stop();
  steps_.join();  // a step that ends may still call pump(): everything it uses stays until then
}

Status Engine::start() {
  running_ = host_.gauge("nodeha_tasks_running", "tasks being run by this controller", {{"kind", kind_.name}});
  for (const char* result : {"succeeded", "failed", "partial"})
    host_.counter("nodeha_tasks_total", "finished tasks by kind and result", {{"kind", kind_.name}, {"result", result}});
  for (const char* result : {"succeeded", "failed", "cancelled", "waiting"})
    step_results_[result] = host_.counter("nodeha_task_steps_total", kStepsHelp, {{"kind", kind_.name}, {"result", result}});
  auto w = host_.kv_watch(task_record::kBucket, ">", [this](const KvEntry& e) { on_task_entry(e); });
  if (!w) return w.status();
  watch_ = w.value();

  // Off the start: a bucket whose stream still elects its leader (a takeover after a server's
  // death) holds a listing for the JetStream timeout, and the host starts its plugins one by one.
  host_.spawn([this] { resume_unfinished(); });
  return Status::ok();
}

void Engine::resume_unfinished() {
  if (stopping_) return;
  auto all = host_.kv_list(task_record::kBucket);
  bool again = !all;
  if (!all)
    host_.warn("cannot read the tasks bucket to resume unfinished " + kind_.name + " tasks: " + all.status().message() +
               "; trying again");
  for (const auto& e : all ? all.value() : std::vector<KvEntry>{}) {
    auto head = nlohmann::json::parse(e.value, nullptr, false);
    if (!head.is_object() || head.value("kind", "") != kind_.name || task_record::task_final(head.value("state", "")))
      continue;
    {
      std::lock_guard lock(mu_);
      if (runs_.count(e.key)) continue;  // submitted here while the bucket could not be listed: runs already
    }
    auto run = std::make_shared<Run>();
    auto loaded = task_steps::load(e.key, task_steps::host_get(host_), &run->revision);
    if (!loaded) {
      bool broken = loaded.status().code() == NODEHA_ERR_INVALID || loaded.status().code() == NODEHA_ERR_NOT_FOUND;
      host_.warn("cannot read " + kind_.name + " task " + e.key + " to resume it: " + loaded.status().message() +
                 (broken ? "; it stays as it is" : "; trying again"));
      again |= !broken;
      continue;
    }
    nlohmann::json task = std::move(loaded.value());
    if (!task["steps"].is_array()) task["steps"] = nlohmann::json::array();
    for (auto& s : task["steps"])
      if (!task_record::step_final(s.value("state", ""))) s["state"] = "pending";  // steps are idempotent: run again
    task["state"] = "running";
    task["owner"] = host_.node_id();
    task["epoch"] = host_.epoch().value_or(0);  // taken over: later writes under older epochs lose
    run->parallel = std::max(1, task["params"].value("max_parallel", kind_.parallel));
    run->cancel_known = task.value("cancel_requested", false);
    run->header = header_of(task);
    run->task = std::move(task);
    run->index_steps();
    // Every chunk is written again under this epoch, so that a deposed leader's write to any of
    // them conflicts and reads the newer epoch (a record from before chunks gets its chunks now).
    for (size_t k = 0; k < task_steps::chunk_count(run->task["steps"].size()); ++k) run->dirty.insert(k);
    host_.info("resuming " + kind_.name + " task " + e.key + " on " + run->task.value("node", "?"));
    {
      std::lock_guard lock(mu_);
      runs_[e.key] = run;
    }
    host_.spawn([this, run] {
      nlohmann::json task;
      {
        std::lock_guard lock(run->mu);
        save(run, "resumed", Save::Now);
        task = run->task;
      }
      if (kind_.on_resume) kind_.on_resume(task);
      pump(run);
    });
  }
  // Until the bucket can be read (a controller that leads again while the tasks stream still
  // elects its leader, or has no quorum), tried again every retry_every: a task nobody resumes
  // would never end.
  if (again) (void)host_.timer(kind_.retry_every, Millis(0), [this] { host_.spawn([this] { resume_unfinished(); }); });
}

void Engine::stop() { stopping_ = true; }

Status Engine::submit(nlohmann::json task, int parallel) {
  auto run = std::make_shared<Run>();
  std::string id = task["id"];
  task["state"] = "running";
  task["started"] = unix_ms();
  task["epoch"] = host_.epoch().value_or(0);
  for (auto& s : task["steps"]) task_steps::bound_step(s);
  run->parallel = std::max(1, parallel);
  run->header = header_of(task);
  run->task = std::move(task);
  run->index_steps();
  if (Status s = task_steps::store_new(host_, run->task, &run->revision); !s) return s;
  run->saved_at = unix_ms();
  publish_event(id, "created", task_steps::head(run->task, run->counts).dump(), {});
  {
    std::lock_guard lock(mu_);
    runs_[id] = run;
  }
  return host_.spawn([this, run] { pump(run); });
}

// Starts steps while there is room, cancels what a cancel stops, finishes a task whose steps are
// all final. Runs on a worker. O(steps started) but for a cancel, which looks at every step once.
void Engine::pump(const std::shared_ptr<Run>& run) {
  std::vector<size_t> start;
  std::vector<nlohmann::json> abort;
  bool done = false;
  {
    std::lock_guard lock(run->mu);
    if (run->finishing) return;
    const auto& steps = run->task["steps"];
    bool changed = false, cancelled_now = false;
    if (run->task.value("cancel_requested", false) && !run->cancel_seen) {
      run->cancel_seen = cancelled_now = true;
      for (size_t i = 0; i < steps.size(); ++i) {
        std::string st = steps[i].value("state", "");
        if (st == "pending") {
          run->set_state(i, "cancelled");
          run->step(i)["finished"] = unix_ms();
          changed = true;
        } else if (st == "running") {
          abort.push_back(steps[i]);
        }
      }
    }
    if (!stopping_ && !run->cancel_seen) {
      while (!run->pending.empty() && run->active < run->parallel) {
        size_t i = *run->pending.begin();
        ++run->active;
        start.push_back(i);
        if (run->quiet.count(i)) {  // still waiting, as far as anyone reading can tell
          run->set_state(i, "running", false);
          continue;
        }
        run->set_state(i, "running");
        auto& s = run->step(i);
        s["started"] = unix_ms();
        s["error"] = "";
        changed = true;
      }
    }
    if (changed || run->unsaved) save(run, "step", cancelled_now ? Save::Now : Save::Soon);
    if (run->active == 0 && run->waiting == 0 && run->unfinished == 0) done = run->finishing = true;
  }
  for (const auto& s : abort)
    if (kind_.on_cancel) host_.spawn([this, run, s] { kind_.on_cancel(*run->header, s); });
  for (size_t i : start)
    if (!steps_.start([this, run, i] { run_step(run, i); })) break;  // stopping: resumed at the next start
  if (done) finish(run);
  running_.set(static_cast<double>([&] {
    std::lock_guard lock(mu_);
    return runs_.size();
  }()));
}

void Engine::run_step(const std::shared_ptr<Run>& run, size_t index) {
  std::shared_ptr<const nlohmann::json> task;
  nlohmann::json step;
  {
    std::lock_guard lock(run->mu);
    task = run->header;
    step = run->task["steps"][index];
  }
  StepResult r = kind_.run_step(*task, step);
  bool retry = false;
  {
    std::lock_guard lock(run->mu);
    --run->active;
    using O = StepResult::Outcome;
    // Stopping (a step-down, a clean stop) is no reason to fail a step that would be tried again:
    // it waits, and the next leader resumes it (arm_retry arms nothing then).
    const bool again = r.outcome == O::Retry && !run->cancel_seen;
    if (run->quiet.erase(index) && again && run->task["steps"][index].value("error", "") == r.detail) {
      run->set_state(index, "waiting", false);  // waiting as it was, for the same reason: nothing to write
      run->quiet.insert(index);
      ++run->waiting;
      retry = true;
      if (auto m = step_results_.find("waiting"); m != step_results_.end()) m->second.inc();
    } else {
      auto& s = run->step(index);
      if (again) {
        run->set_state(index, "waiting");
        s["error"] = r.detail;
        ++run->waiting;
        retry = true;
      } else if (r.outcome == O::Succeeded) {
        run->set_state(index, "succeeded");
        s["error"] = "";
        s.update(r.fields);
      } else {
        run->set_state(index, run->cancel_seen ? "cancelled" : "failed");
        s["error"] = r.detail;
      }
      if (!retry) s["finished"] = unix_ms();
      std::string id = run->task["id"], state = s.value("state", "");
      auto ev = evidence::decided(host_, !r.summary.empty() ? r.summary
                                         : kind_.name + " task " + id + ": " + s.value("vm", "") + " " + state +
                                               (r.detail.empty() ? "" : ": " + r.detail));
      ev.task = id;
      ev.facts = r.facts;
      ev.facts["state"] = state;
      s["evidence"] = evidence::to_json(ev);
      task_steps::bound_step(s);
      if (auto m = step_results_.find(state); m != step_results_.end()) m->second.inc();
      save(run, "step", Save::Soon);
    }
  }
  if (retry) {
    std::lock_guard lock(run->mu);
    run->retry_due.emplace_back(std::chrono::steady_clock::now() + kind_.retry_every, index);
    arm_retry(run);
  }
  pump(run);
}

// Arms the task's one retry timer for its first waiting step. Called with run->mu held.
void Engine::arm_retry(const std::shared_ptr<Run>& run) {
  if (run->retry_armed || run->retry_due.empty()) return;
  auto left = std::chrono::duration_cast<Millis>(run->retry_due.front().first - std::chrono::steady_clock::now());
  auto t = host_.timer(std::max(Millis(0), left), Millis(0), [this, run] { host_.spawn([this, run] { retry_due(run); }); });
  run->retry_armed = static_cast<bool>(t);
  if (!t) {  // the plugin is stopping: the steps stay waiting for the next controller to resume
    run->waiting -= static_cast<int>(run->retry_due.size());
    run->retry_due.clear();
  }
}

// The waiting steps whose retry has come are pending again (quietly: still waiting as far as the
// store says), and the timer is armed for the next. Worker.
void Engine::retry_due(const std::shared_ptr<Run>& run) {
  {
    std::lock_guard lock(run->mu);
    run->retry_armed = false;
    auto now = std::chrono::steady_clock::now();
    while (!run->retry_due.empty() && run->retry_due.front().first <= now) {
      size_t index = run->retry_due.front().second;
      run->retry_due.pop_front();
      --run->waiting;
      if (run->task["steps"][index].value("state", "") != "waiting") continue;
      if (run->cancel_seen) {
        run->set_state(index, "cancelled");
      } else {
        run->quiet.insert(index);
        run->set_state(index, "pending", false);
      }
    }
    arm_retry(run);
  }
  pump(run);
}

void Engine::finish(const std::shared_ptr<Run>& run) {
  nlohmann::json snapshot;
  {
    std::lock_guard lock(run->mu);
    snapshot = run->task;
  }
  if (kind_.on_finish) kind_.on_finish(snapshot);
  std::string id, node, state;
  {
    std::lock_guard lock(run->mu);
    run->task["state"] = state = task_record::final_state(run->task);
    run->task["finished"] = unix_ms();
    id = run->task["id"];
    node = run->task.value("node", "");
    if (!save(run, "finished", Save::Now)) {
      // The store cannot be reached: keep the task and try again; the node stays locked.
      run->finishing = false;
      run->unsaved = true;
      host_.warn("cannot write the end of task " + id + "; retrying");
      (void)host_.timer(kind_.retry_every, Millis(0), [this, run] { host_.spawn([this, run] { pump(run); }); });
      return;
    }
  }
  if (auto s = unlock_node(host_, node, id); !s) host_.warn("cannot unlock " + node + " after task " + id + ": " + s.message());
  {
    std::lock_guard lock(run->mu);
    publish_outcome(run->task);
  }
  host_.counter("nodeha_tasks_total", "finished tasks by kind and result", {{"kind", kind_.name}, {"result", state}}).inc();
  host_.histogram("nodeha_task_duration_seconds", "time from a task's start to its end", {1, 5, 15, 60, 300, 900, 3600},
                  {{"kind", kind_.name}})
      .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - run->started).count());
  host_.info(kind_.name + " task " + id + " on " + node + " " + state);
  std::lock_guard lock(mu_);
  runs_.erase(id);
}

void Engine::publish_outcome(const nlohmann::json& task) {
  std::string id = task.value("id", ""), node = task.value("node", ""), state = task.value("state", "");
  // The steps that did not succeed first, then the others, kOutcomeSteps at most: the event stays
  // far under the bus's payload limit however many steps the task has.
  nlohmann::json listed = nlohmann::json::array(), succeeded = nlohmann::json::array();
  std::map<std::string, int> counts;
  for (const auto& s : task.value("steps", nlohmann::json::array())) {
    ++counts[s.value("state", "")];
    auto& into = s.value("state", "") == "succeeded" ? succeeded : listed;
    if (into.size() >= kOutcomeSteps) continue;
    nlohmann::json one = {{"vm", s.value("vm", "")}, {"name", s.value("name", "")}, {"state", s.value("state", "")}};
    if (s.contains("target")) one["target"] = s["target"];
    if (s.contains("evidence") && s["evidence"].is_object()) one["summary"] = s["evidence"].value("summary", "");
    into.push_back(std::move(one));
  }
  for (auto& s : succeeded)
    if (listed.size() < kOutcomeSteps) listed.push_back(std::move(s));
  std::string tally;
  for (const auto& [st, n] : counts) tally += (tally.empty() ? "" : ", ") + std::to_string(n) + " " + st;
  auto ev = evidence::decided(host_, kind_.name + " task " + id + " " + state + " (" + (tally.empty() ? "no steps" : tally) +
                                         "), requested by identity " + task.value("requested_by", std::string("?")));
  ev.task = id;
  ev.requester = task.value("requested_by", "");
  for (const auto& [st, n] : counts) ev.facts[st.empty() ? "unknown" : st] = n;
  size_t total = task.value("steps", nlohmann::json::array()).size();
  nlohmann::json event = {{"event", "task"}, {"node", node}, {"task", id}, {"kind", kind_.name}, {"state", state},
                          {"steps", std::move(listed)}, {"time", unix_ms()}, {"evidence", evidence::to_json(ev)}};
  if (total > kOutcomeSteps) event["steps_omitted"] = total - event["steps"].size();
  (void)host_.publish(host_.subject("evt.node." + node), event.dump());
}

void Engine::publish_event(const std::string& id, const char* event, const std::string& head,
                           const std::vector<std::string>& chunks) {
  const std::string subject = host_.subject("evt.task." + id);
  auto open = [](const std::string& name) { return "{\"event\":\"" + name + "\","; };
  if (chunks.empty()) (void)host_.publish(subject, open(event) + head.substr(1));
  // One event per change: the chunks but the last go first as `steps`, the change with the last.
  for (size_t i = 0; i < chunks.size(); ++i)
    (void)host_.publish(subject, open(i + 1 < chunks.size() ? "steps" : event) + "\"chunk\":" + chunks[i] + "," + head.substr(1));
}

// Writes chunk k with the revision last written; on a conflict, the chunk as stored decides: a
// newer leader's (a higher epoch) wins and this controller writes no more; else (this one's
// own write whose answer was lost) it is written again at the stored revision. Called with
// run->mu held. The chunk as written, or nullopt.
std::optional<std::string> Engine::write_chunk(const std::shared_ptr<Run>& run, size_t k) {
  const std::string id = run->task["id"], key = task_steps::chunk_key(id, k);
  const uint64_t epoch = run->task.value("epoch", uint64_t{0});
  auto& revs = run->revision.chunks;
  if (revs.size() <= k) revs.resize(k + 1, 0);
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::string body = task_steps::encode_chunk(run->task, k);
    auto w = revs[k] ? host_.kv_update(task_steps::kBucket, key, body, revs[k]) : host_.kv_create(task_steps::kBucket, key, body);
    if (w) {
      revs[k] = w.value();
      run->dirty.erase(k);
      return body;
    }
    if (w.status().code() != NODEHA_ERR_CONFLICT) return std::nullopt;
    auto cur = host_.kv_get(task_steps::kBucket, key);
    if (!cur) return std::nullopt;
    if (auto stored = task_steps::decode_chunk(cur->value); stored && stored->epoch > epoch) {
      host_.warn("task " + id + " is run under epoch " + std::to_string(stored->epoch) + " now (its chunk " +
                 std::to_string(k) + "); this controller's epoch " + std::to_string(epoch) + " writes it no more");
      return std::nullopt;
    }
    revs[k] = cur->revision;
  }
  return std::nullopt;
}

// Writes the changed chunks, then the head with the revision last written; a conflict on the
// head is a cancel request written by the tasks plugin in between: keep it and write again.
// Publishes the head, with each chunk written, as events. Called with run->mu held. False when
// the store could not be reached (the change stays in memory and goes with the next write).
bool Engine::save(const std::shared_ptr<Run>& run, const char* event, Save when) {
  int64_t now = unix_ms();
  if (when == Save::Throttled && now - run->saved_at < 1000) return true;
  if (when == Save::Soon && now - run->saved_at < kCoalesce.count()) {
    run->unsaved = true;
    flush_later(run);
    return true;
  }
  run->task["updated"] = now;
  std::string id = run->task["id"];
  std::vector<std::string> written;
  for (size_t k : std::vector<size_t>(run->dirty.begin(), run->dirty.end())) {
    auto body = write_chunk(run, k);
    if (!body) {
      run->unsaved = true;
      return false;
    }
    written.push_back(std::move(*body));
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::string body = task_steps::head(run->task, run->counts).dump();
    auto w = host_.kv_update(task_record::kBucket, id, body, run->revision.head);
    if (w) {
      run->revision.head = w.value();
      run->saved_at = now;
      run->unsaved = false;
      publish_event(id, event, body, written);
      return true;
    }
    if (w.status().code() != NODEHA_ERR_CONFLICT) break;
    auto cur = host_.kv_get(task_record::kBucket, id);
    if (!cur) break;
    auto stored = nlohmann::json::parse(cur->value, nullptr, false);
    // A newer leader runs it now (its epoch is written at takeover): this one's write must not
    // win by retrying over it. The host refuses a deposed leader's writes already; this holds
    // even for one whose deadline has not come on its own clock.
    if (stored.is_object() && stored.value("epoch", uint64_t{0}) > run->task.value("epoch", uint64_t{0})) {
      host_.warn("task " + id + " is run under epoch " + std::to_string(stored.value("epoch", uint64_t{0})) +
                 " now; this controller's epoch " + std::to_string(run->task.value("epoch", uint64_t{0})) + " writes it no more");
      return false;
    }
    if (stored.is_object() && stored.value("cancel_requested", false)) {
      run->task["cancel_requested"] = true;
      run->cancel_known = true;
    }
    run->revision.head = cur->revision;
  }
  run->unsaved = true;
  return false;
}

// Writes the changes made meanwhile once kCoalesce has passed. Called with run->mu held.
void Engine::flush_later(const std::shared_ptr<Run>& run) {
  if (run->flush_armed) return;
  auto t = host_.timer(kCoalesce, Millis(0), [this, run] {
    host_.spawn([this, run] {
      std::lock_guard lock(run->mu);
      run->flush_armed = false;
      if (run->unsaved) save(run, "step", Save::Now);
    });
  });
  run->flush_armed = static_cast<bool>(t);  // no timer: the plugin is stopping; the next write takes it
}

void Engine::progress(const std::string& task_id, const std::string& vm, const nlohmann::json& progress) {
  std::shared_ptr<Run> run;
  {
    std::lock_guard lock(mu_);
    auto it = runs_.find(task_id);
    if (it == runs_.end()) return;
    run = it->second;
  }
  std::lock_guard lock(run->mu);
  const auto& steps = run->task["steps"];
  for (size_t i = 0; i < steps.size(); ++i)
    if (steps[i].value("vm", "") == vm && steps[i].value("state", "") == "running") run->step(i)["progress"] = progress;
  save(run, "progress", Save::Throttled);
}

void Engine::on_task_entry(const KvEntry& e) {
  // Most entries are this controller's own writes of its running tasks, whole records: look for
  // a cancel without parsing them.
  if (e.deleted || e.value.find("\"cancel_requested\":true") == std::string::npos) return;
  std::shared_ptr<Run> run;
  {
    std::lock_guard lock(mu_);
    auto it = runs_.find(e.key);
    if (it == runs_.end()) return;
    run = it->second;
  }
  if (run->cancel_known) return;
  auto stored = nlohmann::json::parse(e.value, nullptr, false);
  if (!stored.is_object() || !stored.value("cancel_requested", false)) return;
  {
    std::lock_guard lock(run->mu);
    run->cancel_known = true;
    if (run->task.value("cancel_requested", false)) return;
    run->task["cancel_requested"] = true;
    if (e.revision > run->revision.head) run->revision.head = e.revision;
  }
  host_.info("cancelling " + kind_.name + " task " + e.key);
  host_.spawn([this, run] { pump(run); });
}

}  // namespace nodeha::tasks

namespace nodeha::tasks {
namespace {

// A VM of a scheduler request (sched.place, sched.hold), from its record.
nlohmann::json placement_vm(const nlohmann::json& record) {
  nlohmann::json vm = {{"uuid", record::text(record, "uuid")},
                       {"vcpus", std::max<int64_t>(record::integer(record, "vcpus", 0), 1)},
                       {"memory_mib", record::integer(record, "memory_mib", 0)},
                       {"disk_gib", record::integer(record, "disk_gib", 0)},
                       {"local_disk", record::flag(record, "local_disk")}};
  if (!record::text(record, "group").empty()) vm["group"] = record["group"];
  if (auto ha = vm_record::ha_priority(record); ha && *ha > 0) vm["priority"] = *ha;
  return vm;
}

}  // namespace

Reply call_until(const Host& host, const std::string& subject, const nlohmann::json& body, Millis total, Millis every) {
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + total;
  for (;;) {
    auto asked = Clock::now();
    auto left = std::chrono::duration_cast<Millis>(deadline - asked);
    Reply r = call(host, subject, body, std::max(Millis(1), std::min(every, left)));
    if (!r.unreachable || Clock::now() >= deadline) return r;
    // An answer `unavailable` comes at once: ask again only when `every` has passed.
    std::this_thread::sleep_until(std::min(asked + every, deadline));
  }
}

Reply call(const Host& host, const std::string& subject, const nlohmann::json& body, Millis timeout) {
  Reply out;
  auto r = host.request(subject, body.dump(), timeout);
  if (!r) {
    out.unreachable = true;
    out.code = command::kUnavailable;
    out.message = r.status().code() == NODEHA_ERR_TIMEOUT ? "no answer within " + std::to_string(timeout.count()) + " ms"
                                                           : r.status().message();
    return out;
  }
  auto reply = command::parse_envelope(r.value());
  out.ok = reply.ok;
  out.result = std::move(reply.result);
  out.code = reply.code;
  out.message = reply.malformed ? "malformed answer on " + subject : reply.message;
  // An agent still reading its inventory answers `unavailable`: as good as no answer yet.
  out.unreachable = !out.ok && out.code == command::kUnavailable;
  return out;
}

Result<std::vector<nlohmann::json>> vms_on(const Host& host, const std::string& node) {
  auto all = host.kv_list("vms");
  if (!all) return all.status();
  std::vector<nlohmann::json> out;
  for (const auto& e : all.value()) {
    auto j = nlohmann::json::parse(e.value, nullptr, false);
    if (record::text(j, "node") == node) out.push_back(std::move(j));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::make_pair(record::text(a, "name"), record::text(a, "uuid")) <
           std::make_pair(record::text(b, "name"), record::text(b, "uuid"));
  });
  return out;
}

Result<Placements> place(const Host& host, const std::vector<nlohmann::json>& vms, const std::string& exclude,
                         const std::string& target, double reserve_s, const std::string& task) {
  nlohmann::json req = {{"vms", nlohmann::json::array()}, {"exclude", {exclude}}};
  for (const auto& v : vms) req["vms"].push_back(placement_vm(v));
  if (!target.empty()) req["target"] = target;
  if (reserve_s > 0) {
    req["reserve"] = reserve_s;
    req["task"] = task;
  }
  Reply r = call(host, host.subject("cmd.sched.place"), req, Millis(10000));
  if (!r.ok)
    return Status(NODEHA_ERR_UNAVAILABLE, "the scheduler " + std::string(r.unreachable ? "did not answer" : "refused") +
                                              " (" + r.code + "): " + r.message);
  Placements out;
  for (const auto& p : r.result.value("placements", nlohmann::json::array())) {
    std::string uuid = p.value("uuid", "");
    if (p.contains("node")) {
      out.node[uuid] = p["node"];
    } else {
      out.refused[uuid] = p.value("message", "no room");
      out.refused_code[uuid] = p.value("code", "");
    }
  }
  return out;
}

void hold_again(const Host& host, const nlohmann::json& task, Millis reserve) {
  std::map<std::string, nlohmann::json> by_node;  // target -> vms
  for (const auto& s : task.value("steps", nlohmann::json::array())) {
    if (task_record::step_final(s.value("state", "")) || !s.contains("target") || !s["target"].is_string()) continue;
    std::string uuid = s.value("vm", ""), target = s["target"];
    auto rec = host.kv_get("vms", uuid);
    if (!rec) continue;  // no record, nothing to size: its step fails on its own
    auto v = nlohmann::json::parse(rec->value, nullptr, false);
    if (!v.is_object() || v.value("node", "") == target) continue;
    v["uuid"] = uuid;
    by_node[target].push_back(placement_vm(v));
  }
  nlohmann::json held = nlohmann::json::array();
  for (auto& [node, vms] : by_node) held.push_back({{"node", node}, {"vms", std::move(vms)}});
  if (held.empty()) return;
  std::string id = task.value("id", "");
  // Asked again while nobody answers: a new leader starts its plugins side by side, and its
  // scheduler may take its requests a moment after this resume (a hold replaces the task's own).
  Reply r = call_until(host, host.subject("cmd.sched.hold"),
                       {{"task", id}, {"reserve", static_cast<double>(reserve.count()) / 1000.0}, {"held", held}},
                       Millis(15000), Millis(1000));
  if (!r.ok)
    host.warn("the room of task " + id + "'s unfinished steps is not held again: the scheduler " +
              (r.unreachable ? "did not answer" : "refused (" + r.code + "): " + r.message) +
              "; placements meanwhile may take it");
  else
    host.info("holding again the room of " + std::to_string(r.result.value("held", 0)) + " VM(s) of task " + id);
}

void release(const Host& host, const std::string& task) {
  (void)call(host, host.subject("cmd.sched.release"), {{"task", task}}, Millis(5000));
}

std::optional<command::Error> no_room(const Placements& placed, size_t movable, const std::string& node,
                                      const std::string& target) {
  if (movable == 0 || (!placed.node.empty() && (target.empty() || placed.refused.empty()))) return std::nullopt;
  std::string why = placed.refused.empty() ? "" : ": " + placed.refused.begin()->second;
  return command::Error{kNoRoom, std::to_string(placed.refused.size()) + " of " + std::to_string(movable) + " VM(s) of " +
                                     node + " cannot be placed" + (target.empty() ? "" : " on " + target) + why};
}

void plan_vm(nlohmann::json& plan, nlohmann::json& task, const nlohmann::json& vm, const Placements& placed,
             const std::string& action, const std::string& skip_reason) {
  std::string uuid = record::text(vm, "uuid"), name = record::text(vm, "name");
  auto target = placed.node.find(uuid);
  if (!skip_reason.empty()) {
    plan.push_back({{"vm", uuid}, {"name", name}, {"target", nullptr}, {"action", "skip"}, {"reason", skip_reason}});
    task["steps"].push_back(task_record::make_step(uuid, name, nullptr, skip_reason));
  } else if (target != placed.node.end()) {
    plan.push_back({{"vm", uuid}, {"name", name}, {"target", target->second}, {"action", action}, {"reason", ""}});
    task["steps"].push_back(task_record::make_step(uuid, name, target->second));
  } else {
    auto refused = placed.refused.find(uuid);
    std::string why = "no room: " + (refused == placed.refused.end() ? std::string("not placed") : refused->second);
    plan.push_back({{"vm", uuid}, {"name", name}, {"target", nullptr}, {"action", "unplaced"}, {"reason", why}});
    auto step = task_record::make_step(uuid, name, nullptr);
    step["state"] = "failed";
    step["error"] = why;
    task["steps"].push_back(std::move(step));
  }
}

}  // namespace nodeha::tasks
