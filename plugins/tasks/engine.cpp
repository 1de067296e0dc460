#include "engine.h"

#include "record_fields.h"
#include "task_record.h"
#include "vm_record.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace nodeha::tasks {

namespace {

// Step changes written together: a drain of a thousand VMs changes a step thousands of times a
// minute, and every write carries the whole record.
constexpr Millis kCoalesce{250};

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
  nlohmann::json task;
  std::shared_ptr<const nlohmann::json> header;  // the task without its steps, set once
  // cancel_requested was seen in the store (read without `mu` by the watch, which skips the
  // task's own writes once it knows).
  std::atomic<bool> cancel_known{false};
  uint64_t revision = 0;
  int parallel = 2;
  int active = 0;                   // steps running on workers
  int waiting = 0;                  // steps waiting for their retry timer
  bool cancel_seen = false;         // cancel_requested read and acted on
  bool finishing = false;
  int64_t saved_at = 0;             // when the record was last written
  bool unsaved = false;             // a change is not written yet (coalesced, or the bus is down)
  bool flush_armed = false;         // a timer will write the unsaved changes
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
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
    host_.counter("nodeha_task_steps_total", kStepsHelp,
                  {{"kind", kind_.name}, {"result", result}});
  auto w = host_.kv_watch(task_record::kBucket, ">", [this](const KvEntry& e) { on_task_entry(e); });
  if (!w) return w.status();
  watch_ = w.value();

  // Off the start: a bucket whose stream still elects its leader (a takeover after a server's
  // death) holds a listing for the JetStream timeout, and the host starts its plugins one by one.
  host_.spawn([this] { resume_unfinished(); });
  return Status::ok();
}

// Until the bucket can be read (a controller that leads again while the tasks stream still elects
// its leader, or has no quorum), tried again every retry_every: a task nobody resumes would never
// end.
void Engine::resume_unfinished() {
  if (stopping_) return;
  auto all = host_.kv_list(task_record::kBucket);
  if (!all) {
    host_.warn("cannot read the tasks bucket to resume unfinished " + kind_.name + " tasks: " + all.status().message() +
               "; trying again");
    (void)host_.timer(kind_.retry_every, Millis(0), [this] { host_.spawn([this] { resume_unfinished(); }); });
    return;
  }
  for (const auto& e : all.value()) {
    auto task = nlohmann::json::parse(e.value, nullptr, false);
    if (!task.is_object() || task.value("kind", "") != kind_.name || task_record::task_final(task.value("state", "")))
      continue;
    {
      std::lock_guard lock(mu_);
      if (runs_.count(e.key)) continue;  // submitted here while the bucket could not be listed: runs already
    }
    auto run = std::make_shared<Run>();
    for (auto& s : task["steps"])
      if (!task_record::step_final(s.value("state", ""))) s["state"] = "pending";  // steps are idempotent: run again
    task["state"] = "running";
    task["owner"] = host_.node_id();
    task["epoch"] = host_.epoch().value_or(0);  // taken over: later writes under older epochs lose
    run->parallel = std::max(1, task["params"].value("max_parallel", kind_.parallel));
    run->cancel_known = task.value("cancel_requested", false);
    run->header = header_of(task);
    run->task = std::move(task);
    run->revision = e.revision;
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
}

void Engine::stop() { stopping_ = true; }

Status Engine::submit(nlohmann::json task, int parallel) {
  auto run = std::make_shared<Run>();
  std::string id = task["id"];
  task["state"] = "running";
  task["started"] = unix_ms();
  task["epoch"] = host_.epoch().value_or(0);
  run->parallel = std::max(1, parallel);
  run->header = header_of(task);
  run->task = std::move(task);
  std::string body = run->task.dump();
  auto created = host_.kv_create(task_record::kBucket, id, body);
  if (!created) return created.status();
  run->revision = created.value();
  run->saved_at = unix_ms();
  (void)host_.publish(host_.subject("evt.task." + id), "{\"event\":\"created\"," + body.substr(1));
  {
    std::lock_guard lock(mu_);
    runs_[id] = run;
  }
  return host_.spawn([this, run] { pump(run); });
}

// Starts steps while there is room, cancels what a cancel stops, finishes a task whose steps are
// all final. Runs on a worker.
void Engine::pump(const std::shared_ptr<Run>& run) {
  std::vector<size_t> start;
  std::vector<nlohmann::json> abort;
  bool done = false;
  {
    std::lock_guard lock(run->mu);
    if (run->finishing) return;
    auto& steps = run->task["steps"];
    bool changed = false, cancelled_now = false;
    if (run->task.value("cancel_requested", false) && !run->cancel_seen) {
      run->cancel_seen = cancelled_now = true;
      for (auto& s : steps) {
        std::string st = s.value("state", "");
        if (st == "pending") {
          s["state"] = "cancelled";
          s["finished"] = unix_ms();
          changed = true;
        } else if (st == "running") {
          abort.push_back(s);
        }
      }
    }
    if (!stopping_ && !run->cancel_seen) {
      for (size_t i = 0; i < steps.size() && run->active < run->parallel; ++i) {
        if (steps[i].value("state", "") != "pending") continue;
        steps[i]["state"] = "running";
        steps[i]["started"] = unix_ms();
        steps[i]["error"] = "";
        ++run->active;
        start.push_back(i);
        changed = true;
      }
    }
    if (changed || run->unsaved) save(run, "step", cancelled_now ? Save::Now : Save::Soon);
    if (run->active == 0 && run->waiting == 0) {
      done = true;
      for (const auto& s : steps)
        if (!task_record::step_final(s.value("state", ""))) done = false;
      if (done) run->finishing = true;
    }
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
    auto& s = run->task["steps"][index];
    --run->active;
    using O = StepResult::Outcome;
    if (r.outcome == O::Retry && !run->cancel_seen && !stopping_) {
      s["state"] = "waiting";
      s["error"] = r.detail;
      ++run->waiting;
      retry = true;
    } else if (r.outcome == O::Succeeded) {
      s["state"] = "succeeded";
      s["error"] = "";
      s.update(r.fields);
    } else {
      s["state"] = run->cancel_seen ? "cancelled" : "failed";
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
    save(run, "step", Save::Soon);
  }
  if (retry) {
    auto t = host_.timer(kind_.retry_every, Millis(0), [this, run, index] {
      {
        std::lock_guard lock(run->mu);
        --run->waiting;
        auto& s = run->task["steps"][index];
        if (s.value("state", "") == "waiting") s["state"] = run->cancel_seen ? "cancelled" : "pending";
      }
      host_.spawn([this, run] { pump(run); });
    });
    if (!t) {  // the plugin is stopping: the step stays for the next controller to resume
      std::lock_guard lock(run->mu);
      --run->waiting;
    }
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
  nlohmann::json steps = nlohmann::json::array();
  std::map<std::string, int> counts;
  for (const auto& s : task.value("steps", nlohmann::json::array())) {
    ++counts[s.value("state", "")];
    nlohmann::json one = {{"vm", s.value("vm", "")}, {"name", s.value("name", "")}, {"state", s.value("state", "")}};
    if (s.contains("target")) one["target"] = s["target"];
    if (s.contains("evidence") && s["evidence"].is_object()) one["summary"] = s["evidence"].value("summary", "");
    steps.push_back(std::move(one));
  }
  std::string tally;
  for (const auto& [st, n] : counts) tally += (tally.empty() ? "" : ", ") + std::to_string(n) + " " + st;
  auto ev = evidence::decided(host_, kind_.name + " task " + id + " " + state + " (" + (tally.empty() ? "no steps" : tally) +
                                         "), requested by identity " + task.value("requested_by", std::string("?")));
  ev.task = id;
  ev.requester = task.value("requested_by", "");
  for (const auto& [st, n] : counts) ev.facts[st.empty() ? "unknown" : st] = n;
  (void)host_.publish(host_.subject("evt.node." + node),
                      nlohmann::json{{"event", "task"}, {"node", node}, {"task", id}, {"kind", kind_.name}, {"state", state},
                                     {"steps", steps}, {"time", unix_ms()}, {"evidence", evidence::to_json(ev)}}
                          .dump());
}

// Writes the record with the revision last written; a conflict is a cancel request written by
// the tasks plugin in between: keep it and write again. Publishes the record as an event.
// Called with run->mu held. False when the store could not be reached (the change stays in
// memory and goes with the next write).
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
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::string body = run->task.dump();
    auto w = host_.kv_update(task_record::kBucket, id, body, run->revision);
    if (w) {
      run->revision = w.value();
      run->saved_at = now;
      run->unsaved = false;
      (void)host_.publish(host_.subject("evt.task." + id), "{\"event\":\"" + std::string(event) + "\"," + body.substr(1));
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
    run->revision = cur->revision;
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
  for (auto& s : run->task["steps"])
    if (s.value("vm", "") == vm && s.value("state", "") == "running") s["progress"] = progress;
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
    if (e.revision > run->revision) run->revision = e.revision;
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
