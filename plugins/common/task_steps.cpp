#include "task_steps.h"

#include "record_fields.h"
#include "task_record.h"

namespace nodeha::task_steps {

std::string chunk_key(const std::string& task_id, size_t k) { return task_id + "." + std::to_string(k); }
size_t chunk_count(size_t steps) { return (steps + kChunkSteps - 1) / kChunkSteps; }
size_t chunk_of_step(size_t index) { return index / kChunkSteps; }

nlohmann::json counts(const nlohmann::json& steps) {
  nlohmann::json out = nlohmann::json::object();
  if (!steps.is_array()) return out;
  for (const auto& s : steps) {
    std::string state = record::text(s, "state", "?");
    out[state] = record::integer(out, state.c_str()) + 1;
  }
  return out;
}

nlohmann::json head(const nlohmann::json& task) { return head(task, counts(record::field(task, "steps"))); }

nlohmann::json head(const nlohmann::json& task, const nlohmann::json& step_counts) {
  nlohmann::json h = nlohmann::json::object();
  for (const auto& [key, value] : task.items())
    if (key != "steps") h[key] = value;
  const auto& steps = record::field(task, "steps");
  h["step_count"] = steps.is_array() ? steps.size() : 0;
  h["step_counts"] = step_counts;
  h["chunk_steps"] = kChunkSteps;
  return h;
}

std::string encode_chunk(const nlohmann::json& task, size_t k) {
  const auto& steps = task["steps"];
  size_t first = k * kChunkSteps, last = std::min(steps.size(), first + kChunkSteps);
  nlohmann::json part = nlohmann::json::array();
  for (size_t i = first; i < last; ++i) part.push_back(steps[i]);
  return nlohmann::json{{"task", task["id"]}, {"chunk", k}, {"epoch", record::integer(task, "epoch", 0)}, {"steps", std::move(part)}}
      .dump();
}

Result<Chunk> decode_chunk(std::string_view body) {
  auto bad = [](const std::string& why) { return Status(NODEHA_ERR_INVALID, "a task_steps chunk " + why); };
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object()) return bad("is not a JSON object");
  Chunk c;
  if (auto id = TaskId::parse(record::text(j, "task")); id) c.task = id->str();
  else return bad("\"task\": " + id.status().message());
  const auto& index = record::field(j, "chunk");
  if (!index.is_number_unsigned() || index.get<uint64_t>() > (1u << 24)) return bad("\"chunk\" must be an index");
  c.index = index.get<size_t>();
  const auto& epoch = record::field(j, "epoch");
  if (!epoch.is_number_unsigned()) return bad("\"epoch\" must be a count");
  c.epoch = epoch.get<uint64_t>();
  auto steps = j.find("steps");
  if (steps == j.end() || !steps->is_array() || steps->size() > kChunkSteps)
    return bad("\"steps\" must be an array of at most " + std::to_string(kChunkSteps));
  for (const auto& s : *steps)
    if (!s.is_object()) return bad("step is not an object");
  c.steps = std::move(*steps);
  return c;
}

void bound_step(nlohmann::json& step) {
  if (!step.is_object() || step.dump().size() <= kMaxStepBytes) return;
  auto cut = [&](nlohmann::json& owner, const char* key) {
    auto it = owner.is_object() ? owner.find(key) : owner.end();
    if (it != owner.end() && it->is_string() && it->get_ref<const std::string&>().size() > 1000)
      *it = it->get<std::string>().substr(0, 1000) + "… (cut)";
  };
  cut(step, "error");
  cut(step, "reason");
  if (step.contains("evidence")) cut(step["evidence"], "summary");
  if (step.dump().size() > kMaxStepBytes && step.contains("evidence"))  // facts too large: the summary stays
    step["evidence"] = {{"summary", record::text(step["evidence"], "summary")}, {"facts_cut", true}};
  if (step.dump().size() <= kMaxStepBytes) return;
  // Still too large (a plugin's figures, a record someone else wrote): the fields a person reads.
  nlohmann::json kept = nlohmann::json::object();
  for (const char* key : {"vm", "name", "target", "state", "error", "reason", "started", "finished"}) {
    const auto& value = record::field(step, key);
    if (value.is_string()) kept[key] = value.get<std::string>().substr(0, 256);
    else if (value.is_number() || value.is_null() || value.is_boolean()) kept[key] = value;
  }
  kept["cut"] = true;
  step = std::move(kept);
}

Get host_get(const Host& host) {
  return [&host](const std::string& bucket, const std::string& key) { return host.kv_get(bucket, key); };
}

bool chunked(const nlohmann::json& head) { return head.is_object() && head.contains("chunk_steps"); }

Result<nlohmann::json> load_head(const std::string& id, const Get& get, uint64_t* revision) {
  auto e = get(task_record::kBucket, id);
  if (!e) return e.status();
  if (revision) *revision = e->revision;
  auto j = nlohmann::json::parse(e->value, nullptr, false);
  if (!j.is_object()) return Status(NODEHA_ERR_INVALID, "the record of task " + id + " is not a JSON object");
  if (chunked(j) && (record::integer(j, "chunk_steps") != static_cast<int64_t>(kChunkSteps) ||
                     !record::field(j, "step_count").is_number_unsigned()))
    return Status(NODEHA_ERR_INVALID, "the record of task " + id + " has no step_count, or chunks of another size");
  return j;
}

Status load_chunks(const nlohmann::json& head, size_t from, size_t to, const Get& get, nlohmann::json* steps,
                   std::vector<uint64_t>* revisions) {
  const std::string id = record::text(head, "id");
  const size_t count = record::field(head, "step_count").get<size_t>();
  for (size_t k = from; k < to; ++k) {
    auto e = get(kBucket, chunk_key(id, k));
    if (!e) return Status(e.status().code(), "chunk " + std::to_string(k) + " of task " + id + ": " + e.status().message());
    auto c = decode_chunk(e->value);
    if (!c) return c.status();
    size_t expect = std::min(kChunkSteps, count - std::min(count, k * kChunkSteps));
    if (c->task != id || c->index != k || c->steps.size() != expect)
      return Status(NODEHA_ERR_INVALID, "chunk " + std::to_string(k) + " of task " + id + " holds another task's steps or " +
                                            std::to_string(c->steps.size()) + " of " + std::to_string(expect));
    for (auto& s : c->steps) steps->push_back(std::move(s));
    if (revisions) revisions->push_back(e->revision);
  }
  return Status::ok();
}

Result<nlohmann::json> load(const std::string& id, const Get& get, Revisions* revisions) {
  auto h = load_head(id, get, revisions ? &revisions->head : nullptr);
  if (!h || !chunked(h.value())) return h;
  nlohmann::json task = std::move(h.value());
  nlohmann::json steps = nlohmann::json::array();
  size_t chunks = chunk_count(task["step_count"].get<size_t>());
  if (Status s = load_chunks(task, 0, chunks, get, &steps, revisions ? &revisions->chunks : nullptr); !s) return s;
  task["steps"] = std::move(steps);
  return task;
}

Status store_new(const Host& host, const nlohmann::json& task, Revisions* revisions) {
  const std::string id = task["id"];
  Revisions written;
  auto undo = [&](Status why) {
    for (size_t k = 0; k < written.chunks.size(); ++k) (void)host.kv_delete(kBucket, chunk_key(id, k));
    return why;
  };
  for (size_t k = 0; k < chunk_count(task["steps"].size()); ++k) {
    auto w = host.kv_create(kBucket, chunk_key(id, k), encode_chunk(task, k));
    if (!w) return undo(w.status());
    written.chunks.push_back(w.value());
  }
  auto w = host.kv_create(task_record::kBucket, id, head(task).dump());
  if (!w) return undo(w.status());
  written.head = w.value();
  if (revisions) *revisions = std::move(written);
  return Status::ok();
}

}  // namespace nodeha::task_steps
