// A task's steps, kept in chunks (docs/node-operations.md, "Task records"). The `tasks` record of
// a task is its head: every field but the steps, with `step_count`, `step_counts` (steps by
// state) and `chunk_steps`. The steps live in bucket `task_steps`, kChunkSteps at a time, under
// `<task id>.<k>` (chunk k holds steps k*kChunkSteps onwards). A step update rewrites its chunk
// and the head, never the whole task, so a task has no size limit; `task list` and the web
// page's table read heads only. Records written before chunks (steps inline in the record) are
// read as they are.
//
// Why 64 steps a chunk: a step is at most kMaxStepBytes (bound_step cuts its texts to fit), so a
// chunk stays under 64 x 8 KiB = 512 KiB, half of NATS's default 1 MiB max_payload, with room
// for the KV headers and an event's head beside it. A drain's step with its evidence is ~550
// bytes: a chunk is at most ~35 KiB, a 10,000-step task 157 chunks (bench/task_steps).
//
// Pure, except load() and the Get it is given.
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace nodeha::task_steps {

inline constexpr const char* kBucket = "task_steps";
inline constexpr size_t kChunkSteps = 64;
inline constexpr size_t kMaxStepBytes = 8 * 1024;

// "<task id>.<k>": KV keys allow [-/_=.A-Za-z0-9]; a task id is 16 hex digits (TaskId), so the
// key names one task and one chunk, and "<task id>.>" watches a task's chunks.
std::string chunk_key(const std::string& task_id, size_t k);
size_t chunk_count(size_t steps);
size_t chunk_of_step(size_t index);

// Steps by state: {"succeeded": 3, "pending": 1}.
nlohmann::json counts(const nlohmann::json& steps);

// The head of `task` (a whole record): its fields without "steps", with step_count, step_counts
// and chunk_steps. With `step_counts` given (kept up to date by the writer), no step is read.
nlohmann::json head(const nlohmann::json& task);
nlohmann::json head(const nlohmann::json& task, const nlohmann::json& step_counts);

// Chunk k of `task` (a whole record, its epoch written in the chunk so that a newer leader's
// chunk is told apart), encoded: {"task", "chunk", "epoch", "steps"}.
std::string encode_chunk(const nlohmann::json& task, size_t k);

// A chunk as stored. Its bytes come from a bucket others can write: decode checks every field.
struct Chunk {
  std::string task;
  size_t index = 0;
  uint64_t epoch = 0;
  nlohmann::json steps = nlohmann::json::array();  // objects
};
Result<Chunk> decode_chunk(std::string_view body);

// Cuts a step's texts (error, reason, evidence summary) until it is at most kMaxStepBytes; a
// step still larger keeps only its short fields (vm, name, target, state, ...) and "cut".
void bound_step(nlohmann::json& step);

// Reads one key of a bucket (a plugin's Host::kv_get, a bench's or a test's bus): the entry, or a
// status (NODEHA_ERR_NOT_FOUND when absent).
using Get = std::function<Result<KvEntry>(const std::string& bucket, const std::string& key)>;
Get host_get(const Host& host);

// The revisions a task was read at: its head's and each chunk's (for the writes that follow).
struct Revisions {
  uint64_t head = 0;
  std::vector<uint64_t> chunks;
};

// The whole task `id` as every consumer reads it: the head's fields with "steps" filled from its
// chunks. NODEHA_ERR_NOT_FOUND when there is no head; an error naming the chunk when one is
// missing or does not decode as this task's. `revisions` (may be null) gets what was read.
Result<nlohmann::json> load(const std::string& id, const Get& get, Revisions* revisions = nullptr);
// The head of `id` as stored (a record of an earlier version: with its steps inline).
Result<nlohmann::json> load_head(const std::string& id, const Get& get, uint64_t* revision = nullptr);
// Appends to `*steps` the steps of chunks [from, to) of `head` (their revisions to `*revisions`,
// may be null).
Status load_chunks(const nlohmann::json& head, size_t from, size_t to, const Get& get, nlohmann::json* steps,
                   std::vector<uint64_t>* revisions = nullptr);

// Whether `head` keeps its steps in chunks (else they are inline, as before chunks).
bool chunked(const nlohmann::json& head);

// Stores a new task (a whole record): its chunks first, then its head, each created (a key
// already there is an error), so a reader who finds the head finds every chunk. The revisions
// written in `*revisions` (may be null). On failure the chunks it made are deleted again.
Status store_new(const Host& host, const nlohmann::json& task, Revisions* revisions);

}  // namespace nodeha::task_steps
