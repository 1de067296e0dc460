// tasks (controller): what operators ask of tasks — list, show, cancel —, the task desk where
// agents report their journal's local tasks (record_desk.h: agents may not write the bucket), and
// the housekeeping of node locks: the age of every lock as a metric, and locks whose task is gone
// or finished cleared at start (a controller that died between locking a node and storing its task).
#include "engine.h"
#include "evidence.h"
#include "record_desk.h"
#include "record_fields.h"
#include "task_record.h"
#include "task_steps.h"

#include <nodeha/plugin.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>

namespace nodeha::tasks {
namespace {

using command::Type;

// task.show's replies stay under max_payload as pages do (command.h): a chunk is at most 512 KiB
// (task_steps.h), and a reply takes chunks until it holds command::kPageBytes.

class TasksPlugin : public Plugin {
 public:
  explicit TasksPlugin(Host h) : Plugin(std::move(h)) {}

  Status start() override {
    if (host().following()) return follow();
    if (Status s = desk::ensure_bucket(host(), task_record::kBucket); !s)
      host().warn("cannot bind the tasks bucket yet: " + s.message());
    clear_stale_locks();
    std::vector<std::pair<const char*, void (TasksPlugin::*)(const Message&)>> cmds = {
        {"cmd.task.list", &TasksPlugin::list},
        {"cmd.task.show", &TasksPlugin::show},
        {"cmd.task.cancel", &TasksPlugin::cancel},
        {"ctl.*.task.report", &TasksPlugin::report}};
    for (auto [subject, fn] : cmds)
      if (auto r = serve(subject, fn); !r) return r.status();
    if (auto w = host().kv_watch(kNodesBucket, ">", [this](const KvEntry& e) { on_node(e); }); !w) return w.status();
    if (auto t = host().timer(Millis(1000), Millis(1000), [this] { lock_ages(); }); !t) return t.status();
    return Status::ok();
  }

 private:
  // A following controller's instance: task.list and task.show from the bucket, in the same
  // queue group as the leader's (one of them answers each); nothing that writes.
  Status follow() {
    for (auto [subject, fn] : {std::pair{"cmd.task.list", &TasksPlugin::list}, std::pair{"cmd.task.show", &TasksPlugin::show}})
      if (auto r = serve(subject, fn); !r) return r.status();
    return Status::ok();
  }

  Result<uint64_t> serve(const char* subject, void (TasksPlugin::*fn)(const Message&)) {
    return host().subscribe(host().subject(subject), [this, fn](const Message& m) {
      host().spawn([this, fn, m] { (this->*fn)(m); });  // KV reads: off the event thread
    }, "nodeha-controller");
  }

  // Newest first, in pages (command.h): tasks are kept, and a year of them is over 1 MiB. A
  // page's key is the newest-first rank: the time left to the end of int64 ms, then the id.
  void list(const Message& m) {
    nlohmann::json req;
    std::optional<NodeId> node;
    std::string after;
    auto bad = command::decode(
        m.data, {{"node", Type::String}, {"state", Type::String}, {"kind", Type::String}, {"after", Type::String}}, &req);
    if (!bad && req.contains("node")) bad = command::parse_id("node", req["node"], &node);
    if (!bad) bad = command::page_after(req, &after);
    if (bad) return (void)host().respond(m.reply, command::fail(*bad));
    auto all = host().kv_list(task_record::kBucket);
    if (!all)
      return (void)host().respond(
          m.reply, command::fail(command::kUnavailable, "cannot read the tasks bucket: " + all.status().message()));
    std::map<std::string, nlohmann::json> tasks;
    for (const auto& e : all.value()) {
      auto t = nlohmann::json::parse(e.value, nullptr, false);
      if (!t.is_object()) continue;
      bool keep = true;
      for (const char* f : {"node", "state", "kind"})
        if (req.contains(f) && record::text(t, f) != req[f].get<std::string>()) keep = false;
      if (!keep) continue;
      int64_t created = std::clamp<int64_t>(record::integer(t, "created"), 0, INT64_MAX);
      char rank[24];
      std::snprintf(rank, sizeof rank, "%020lld", static_cast<long long>(INT64_MAX - created));
      std::string key = std::string(rank) + "." + e.key;
      if (key <= after) continue;
      if (!task_steps::chunked(t)) {  // a record from before chunks: its steps inline
        t["step_counts"] = task_steps::counts(record::field(t, "steps"));
        t.erase("steps");
      }
      tasks.emplace(std::move(key), std::move(t));
    }
    command::Page page;
    for (auto& [key, t] : tasks)
      if (!page.add(key, std::move(t))) break;
    nlohmann::json result = nlohmann::json::object();
    std::move(page).put(&result, "tasks");
    host().respond(m.reply, command::ok(result));
  }

  std::optional<command::Error> read_task(const Message& m, std::string* id, KvEntry* entry) {
    nlohmann::json req;
    if (auto e = command::decode(m.data, {{"task", Type::String, true}}, &req)) return e;
    std::optional<TaskId> task;
    if (auto e = command::parse_id("task", req["task"], &task)) return e;
    *id = task->str();
    auto cur = host().kv_get(task_record::kBucket, *id);
    if (!cur && cur.status().code() == NODEHA_ERR_NOT_FOUND)
      return command::Error{kUnknownTask, "no task " + *id + "; `nodeha task list` shows the tasks"};
    if (!cur) return command::Error{command::kUnavailable, "cannot read task " + *id + ": " + cur.status().message()};
    *entry = cur.value();
    return std::nullopt;
  }

  // The task with its steps, read by the one reader (task_steps.h). A task whose steps do not
  // fit in one reply comes in pages: the steps of the chunks from `chunk` on (0 first) that fit in
  // command::kPageBytes, `steps_from` (the first one's index) and `next_chunk` while more remain.
  void show(const Message& m) {
    auto refuse = [&](const command::Error& e) { host().respond(m.reply, command::fail(e)); };
    nlohmann::json req;
    if (auto e = command::decode(m.data, {{"task", Type::String, true}, {"chunk", Type::Integer}}, &req)) return refuse(*e);
    std::optional<TaskId> task;
    if (auto e = command::parse_id("task", req["task"], &task)) return refuse(*e);
    const std::string id = task->str();
    const int64_t from = req.contains("chunk") ? req["chunk"].get<int64_t>() : 0;
    if (from < 0 || from > (1 << 24)) return refuse({command::kBadValue, "\"chunk\" must be from 0 to 16777216"});
    size_t bytes = 0;
    task_steps::Get get = [&](const std::string& bucket, const std::string& key) {
      auto e = host().kv_get(bucket, key);
      if (e) bytes += e->value.size();
      return e;
    };
    auto head = task_steps::load_head(id, get);
    if (!head) return refuse(read_error(id, head.status()));
    nlohmann::json t = std::move(head.value());
    if (!task_steps::chunked(t)) return (void)host().respond(m.reply, command::ok(t));  // steps inline
    const size_t chunks = task_steps::chunk_count(t["step_count"].get<size_t>());
    if (from > 0 && static_cast<size_t>(from) >= chunks)
      return refuse({command::kBadValue, "\"chunk\" must be from 0 to " + std::to_string(chunks ? chunks - 1 : 0) +
                                             " (task " + id + " has " + std::to_string(chunks) + " chunks of steps)"});
    nlohmann::json steps = nlohmann::json::array();
    size_t k = static_cast<size_t>(from);
    for (; k < chunks && (k == static_cast<size_t>(from) || bytes < command::kPageBytes); ++k)
      if (Status s = task_steps::load_chunks(t, k, k + 1, get, &steps); !s) return refuse(read_error(id, s));
    t["steps"] = std::move(steps);
    if (from > 0) t["steps_from"] = static_cast<size_t>(from) * task_steps::kChunkSteps;
    if (k < chunks) t["next_chunk"] = k;
    host().respond(m.reply, command::ok(t));
  }

  static command::Error read_error(const std::string& id, const Status& s) {
    if (s.code() == NODEHA_ERR_NOT_FOUND && s.message().rfind("chunk", 0) != 0)
      return {kUnknownTask, "no task " + id + "; `nodeha task list` shows the tasks"};
    if (s.code() == NODEHA_ERR_INVALID || s.code() == NODEHA_ERR_NOT_FOUND)
      return {command::kInternal, "task " + id + " cannot be read: " + s.message()};
    return {command::kUnavailable, "cannot read task " + id + ": " + s.message()};
  }

  // Sets cancel_requested; the controller running the task stops starting steps and aborts the
  // running ones (engine.cpp).
  void cancel(const Message& m) {
    std::string id;
    KvEntry entry;
    if (auto e = read_task(m, &id, &entry)) {
      host().respond(m.reply, command::fail(*e));
      return;
    }
    for (int attempt = 0; attempt < 8; ++attempt) {
      auto t = nlohmann::json::parse(entry.value, nullptr, false);
      if (!t.is_object()) break;
      if (task_record::task_final(record::text(t, "state"))) {
        host().respond(m.reply, command::fail(kTaskFinished, "task " + id + " already ended " + record::text(t, "state") +
                                                                 "; there is nothing to cancel"));
        return;
      }
      if (record::flag(t, "cancel_requested")) {
        host().respond(m.reply, command::ok(t));
        return;
      }
      t["cancel_requested"] = true;
      auto w = host().kv_update(task_record::kBucket, id, t.dump(), entry.revision);
      if (w) {
        host().info("cancel requested for task " + id);
        host().respond(m.reply, command::ok(t));
        return;
      }
      if (w.status().code() != NODEHA_ERR_CONFLICT) break;
      auto cur = host().kv_get(task_record::kBucket, id);
      if (!cur) break;
      entry = cur.value();
    }
    host().respond(m.reply, command::fail(command::kUnavailable, "could not write the cancel request of task " + id + "; try again"));
  }

  // A finished local task from the journal of the node named by the subject: stored once (a
  // report sent again finds its own task and is answered ok), then published on evt.task.<id>.
  void report(const Message& m) {
    auto refuse = [&](const std::string& node, const command::Error& e) {
      host().warn("refused a local task report from " + (node.empty() ? std::string("?") : node) + ": " + e.message);
      host().respond(m.reply, command::fail(e));
    };
    std::string node;
    if (auto e = desk::node_of(host(), m.subject, &node)) return refuse("", *e);
    desk::TaskReport r;
    if (auto e = desk::decode(m.data, &r)) return refuse(node, *e);
    if (auto e = task_record::check_local_report(node, r.task)) return refuse(node, *e);
    const std::string id = r.task["id"].get<std::string>();
    stamp_local_evidence(node, r.task);
    if (!r.task["steps"].is_array()) r.task["steps"] = nlohmann::json::array();
    Status created = task_steps::store_new(host(), r.task, nullptr);
    if (!created && created.code() == NODEHA_ERR_CONFLICT) {
      auto there = host().kv_get(task_record::kBucket, id);
      auto t = there ? nlohmann::json::parse(there->value, nullptr, false) : nlohmann::json();
      if (there && record::text(t, "node") == node && record::text(t, "kind") == r.task["kind"])
        return (void)host().respond(m.reply, command::ok({{"created", false}}));
      if (there || there.status().code() == NODEHA_ERR_NOT_FOUND)
        return refuse(node, {desk::kNotYours, "task id " + id + " is another task's"});
      created = there.status();
    }
    if (!created) return (void)host().respond(m.reply, command::fail(command::kUnavailable, created.message()));
    nlohmann::json event = task_steps::head(r.task);
    event["event"] = "reported";
    (void)host().publish(host().subject("evt.task." + id), event.dump());
    host().info("stored local task " + id + " (" + r.task["kind"].get<std::string>() + ") reported by " + node);
    host().respond(m.reply, command::ok({{"created", true}}));
  }

  // A local task's steps were decided on the node, by its own administrator: that node is `by`
  // (an agent's own evidence is not taken; the controller vouches only for who reported it).
  static void stamp_local_evidence(const std::string& node, nlohmann::json& task) {
    auto steps = task.find("steps");
    if (steps == task.end() || !steps->is_array()) return;
    for (auto& s : *steps) {
      if (!s.is_object()) continue;
      std::string state = record::text(s, "state"), error = record::text(s, "error");
      evidence::Evidence ev;
      ev.summary = record::text(task, "kind") + " on " + node + " (its local socket): " + record::text(s, "vm") + " " + state +
                   (error.empty() ? "" : ": " + error);
      ev.by = node;
      ev.task = record::text(task, "id");
      ev.facts = {{"state", state}};
      s["evidence"] = evidence::to_json(ev);
      task_steps::bound_step(s);
    }
  }

  void on_node(const KvEntry& e) {
    if (e.deleted) {
      locks_.erase(e.key);
      return;
    }
    auto j = nlohmann::json::parse(e.value, nullptr, false);
    if (!j.is_object()) return;
    auto& g = gauges_[e.key];
    if (!g) g = host().gauge("nodeha_node_locked_seconds", "how long the node has been locked by a task (0: not locked)", {{"node", e.key}});
    if (j.contains("lock") && j["lock"].is_object()) locks_[e.key] = record::integer(j["lock"], "since");
    else locks_.erase(e.key);
    lock_ages();
  }

  void lock_ages() {
    int64_t now = unix_ms();
    for (auto& [node, g] : gauges_) {
      auto it = locks_.find(node);
      g.set(it == locks_.end() ? 0.0 : (now - it->second) / 1000.0);
    }
  }

  // A lock whose task does not exist or has ended: its controller died between the two writes.
  void clear_stale_locks() {
    auto nodes = host().kv_list(kNodesBucket);
    if (!nodes) return;
    for (const auto& e : nodes.value()) {
      auto j = nlohmann::json::parse(e.value, nullptr, false);
      if (!j.is_object() || !j.contains("lock") || !j["lock"].is_object()) continue;
      std::string id = record::text(j["lock"], "task");
      auto t = host().kv_get(task_record::kBucket, id);
      if (t && !task_record::task_final(record::text(nlohmann::json::parse(t->value, nullptr, false), "state")))
        continue;
      if (!t && t.status().code() != NODEHA_ERR_NOT_FOUND) continue;
      if (unlock_node(host(), e.key, id)) host().warn("cleared the lock of " + e.key + ": its task " + id + " is gone or ended");
    }
  }

  std::map<std::string, Metric> gauges_;
  std::map<std::string, int64_t> locks_;  // node -> lock since
};

}  // namespace
}  // namespace nodeha::tasks

NODEHA_PLUGIN_WITH_FLAGS(nodeha::tasks::TasksPlugin, "tasks", "0.1.0", "task.list, task.show, task.cancel; node locks",
                         nodeha::kControllerRole, NODEHA_NO_KEYS, nodeha::kServesFollowers)
