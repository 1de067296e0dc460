// A record of the `tasks` bucket, through every pure reader of it: the task engine (final state,
// the lock it left on a node) and the CLI's views of a task (plan, steps, progress, summary).
#include "fuzz_check.h"
#include "record_readers.h"
#include "task_record.h"
#include "task_view.h"

using namespace nodeha;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json task = fuzz::parse_record(data, size);

  auto state = task_record::final_state(task);
  fuzz::require(task_record::task_final(state), "a final state is final");
  (void)task_record::locked_message("node-b", task);

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
