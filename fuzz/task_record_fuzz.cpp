// A record of the `tasks` bucket, through every pure reader of it: the task engine (final state,
// the lock it left on a node), the chunked steps' reader (task_steps.h: the input as a head and
// as every chunk, the chunk decoder, the step bound) and the CLI's views of a task (plan, steps,
// progress, summary).
#include "fuzz_check.h"
#include "record_readers.h"
#include "task_record.h"
#include "task_steps.h"
#include "task_view.h"

using namespace nodeha;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json task = fuzz::parse_record(data, size);

  auto state = task_record::final_state(task);
  fuzz::require(task_record::task_final(state), "a final state is final");
  (void)task_record::locked_message("node-b", task);

  const std::string body(reinterpret_cast<const char*>(data), size);
  if (auto chunk = task_steps::decode_chunk(body))
    fuzz::require(chunk->steps.is_array() && chunk->steps.size() <= task_steps::kChunkSteps, "a chunk holds at most its size");
  auto as_every_key = [&](const std::string&, const std::string&) -> Result<KvEntry> { return KvEntry{"", "", body, 1}; };
  if (auto whole = task_steps::load("0123456789abcdef", as_every_key); whole && task_steps::chunked(*whole))
    fuzz::require(whole->contains("steps") && (*whole)["steps"].is_array(), "a chunked task loads with its steps");
  (void)task_steps::head(task);
  if (task.is_object() && task.contains("steps") && task["steps"].is_array())
    for (auto step : task["steps"]) {
      task_steps::bound_step(step);
      fuzz::require(!step.is_object() || step.dump().size() <= task_steps::kMaxStepBytes, "a bound step is at most its bound");
    }

  (void)cli::task_title(task);
  (void)cli::plan_lines(task);
  (void)cli::step_lines(task, 5);
  (void)cli::progress_lines(task, 5);
  (void)cli::summary_lines(task);
  (void)cli::exit_of_task(task);
  cli::ChangeLog log;
  (void)log.update(task);
  (void)log.update(task);
  return 0;
}
