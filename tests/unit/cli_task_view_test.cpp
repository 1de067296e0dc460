// What the nodeha CLI shows of plans and tasks, from records alone: tables, the live view, the
// lines a log gets, the summary, and the advice after a refusal.
#include "controller.h"
#include "permissions.h"
#include "table.h"
#include "task_view.h"
#include "watch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using json = nlohmann::json;

json step(const std::string& name, const std::string& state, const std::string& error = "") {
  return {{"vm", "uuid-" + name}, {"name", name}, {"target", "node-b"}, {"state", state}, {"reason", ""},
          {"error", error}, {"started", 1000}, {"finished", state == "succeeded" || state == "failed" ? 2500 : 0},
          {"progress", {{"data_total", 0}, {"data_processed", 0}, {"data_remaining", 0}}}};
}

json task(const std::string& state, std::vector<json> steps, const std::string& kind = "migrate") {
  return {{"id", "7f3c000000000001"}, {"kind", kind}, {"node", "node-a"}, {"state", state}, {"started", 1000},
          {"finished", task_final(state) ? 5200 : 0}, {"error", ""}, {"steps", steps}};
}

TEST(CliTable, ColumnsLineUpOnWhatShows) {
  Table t({"A", "B"});
  t.add({"\033[32mok\033[0m", "x"});
  t.add({"näme", "y"});
  EXPECT_THAT(t.lines(), ElementsAre("A     B", "\033[32mok\033[0m    x", "näme  y"));
}

TEST(CliTaskView, ThePlanSaysWhereEachVmGoesOrWhyNot) {
  json plan = json::array({{{"vm", "u1"}, {"name", "web-1"}, {"target", "node-b"}, {"action", "migrate"}, {"reason", ""}},
                           {{"vm", "u2"}, {"name", "db-1"}, {"target", nullptr}, {"action", "skip"}, {"reason", "has local disks"}}});
  EXPECT_THAT(plan_lines(plan), ElementsAre("VM  NAME   ACTION   TARGET  WHY", "u1  web-1  migrate  node-b  -",
                                            "u2  db-1   skip     -       has local disks"));
}

TEST(CliTaskView, TheLiveViewCountsStepsAndShowsMigratedBytes) {
  json running = step("web-1", "running");
  running["progress"] = {{"data_total", 1LL << 30}, {"data_processed", 1LL << 29}, {"data_remaining", 1LL << 29}};
  auto lines = progress_lines(task("running", {step("web-0", "succeeded"), running, step("web-2", "waiting", "node-b is away")}), 10);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "migration of node-a (task 7f3c000000000001): running, 1/3 steps done, 1 running, 1 waiting");
  EXPECT_THAT(lines[1], HasSubstr("STATE"));
  EXPECT_THAT(lines[3], HasSubstr("running    512.0 MiB of 1.0 GiB (50%)"));
  EXPECT_THAT(lines[4], HasSubstr("waiting    -                           node-b is away"));
}

TEST(CliTaskView, AMigrationWithALocalDiskShowsDiskAndMemoryApartAndTheTimeLeft) {
  json running = step("db-1", "running");
  running["progress"] = {{"data_total", 320 << 20},   {"data_processed", 132 << 20}, {"data_remaining", 188 << 20},
                         {"memory_total", 64 << 20},  {"memory_processed", 12 << 20}, {"memory_remaining", 52 << 20},
                         {"disk_total", 256 << 20},   {"disk_processed", 120 << 20},  {"disk_remaining", 136 << 20},
                         {"time_remaining_ms", 3200}};
  auto lines = progress_lines(task("running", {running}), 10);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[2], HasSubstr("running  disk 120/256 MiB · mem 12/64 MiB · ~4 s left"));
  // No disk copied: the memory alone; an unknown time says nothing rather than a guess.
  running["progress"]["disk_total"] = 0;
  running["progress"]["time_remaining_ms"] = nullptr;
  EXPECT_THAT(progress_lines(task("running", {running}), 10)[2], HasSubstr("running  mem 12/64 MiB  "));
  running["progress"].erase("time_remaining_ms");
  EXPECT_THAT(step_lines(task("running", {running}))[1], Not(HasSubstr("left")));
}

TEST(CliTaskView, FiguresAndTimesReadForPeople) {
  EXPECT_EQ(moved_text({{"disk_total", 1LL << 30}, {"disk_processed", 1LL << 29}, {"memory_total", 512},
                        {"memory_processed", 1024}}),
            "disk 0.5/1.0 GiB · mem 1.0/0.5 KiB");
  EXPECT_EQ(moved_text({{"memory_total", 100}, {"memory_processed", -3}}), "mem 0/100 B");
  EXPECT_EQ(moved_text({{"data_total", 100}}), "") << "data_* alone is the older PROGRESS text's";
  EXPECT_EQ(moved_text(json("not an object")), "");
  EXPECT_EQ(time_left_text({{"time_remaining_ms", 0}}), "<1 s left");
  EXPECT_EQ(time_left_text({{"time_remaining_ms", 119'000}}), "~119 s left");
  EXPECT_EQ(time_left_text({{"time_remaining_ms", 150'000}}), "~3 min left");
  EXPECT_EQ(time_left_text({{"time_remaining_ms", 3 * 3'600'000}}), "~3 h left");
  EXPECT_EQ(time_left_text({{"time_remaining_ms", INT64_MAX}}), "~2562047788015 h left");
  EXPECT_EQ(time_left_text({{"time_remaining_ms", -1}}), "");
  EXPECT_EQ(time_left_text({{"time_remaining_ms", nullptr}}), "");
  EXPECT_EQ(time_left_text({{"time_remaining_ms", "soon"}}), "");
}

TEST(CliTable, ALineIsCutToTheTerminalWithoutSplittingACharacter) {
  EXPECT_EQ(cut_to_width("mem 1 · disk 2", 7), "mem 1 ·");
  EXPECT_EQ(cut_to_width("mem 1 · disk 2", 6), "mem 1 ");
  EXPECT_EQ(cut_to_width("\033[32mok\033[0m done", 2), "\033[32mok\033[0m") << "the reset before the cut stays";
  EXPECT_EQ(cut_to_width("short", 80), "short");
}

TEST(CliTaskView, ALongTaskShowsWhatStillMovesFirst) {
  auto lines = step_lines(task("running", {step("a", "succeeded"), step("b", "succeeded"), step("c", "running")}), 1);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[1], HasSubstr(" c "));
  EXPECT_EQ(lines[2], "... and 2 more steps");
}

TEST(CliTaskView, TheSummaryCountsResultsAndSaysWhatToDoAboutFailures) {
  auto partial = summary_lines(task("partial", {step("a", "succeeded"), step("b", "failed", "no room")}, "rebuild"));
  EXPECT_EQ(partial[0], "rebuild of node-a (task 7f3c000000000001): partial in 4.2s (1 succeeded, 1 failed, 0 skipped)");
  EXPECT_THAT(partial[1], HasSubstr("RESULT     DURATION  DETAIL"));
  EXPECT_THAT(partial[3], HasSubstr("failed     1.5s      no room"));
  EXPECT_THAT(partial.back(), HasSubstr("run the command again for what is left"));
  auto ok = summary_lines(task("succeeded", {step("a", "succeeded")}));
  EXPECT_THAT(ok.back(), Not(HasSubstr("again")));
  EXPECT_EQ(exit_of_task(task("succeeded", {})), 0);
  EXPECT_EQ(exit_of_task(task("partial", {})), 1);
  EXPECT_EQ(exit_of_task(task("failed", {})), 1);
}

TEST(CliTaskView, ALogGetsEachChangeOnce) {
  ChangeLog log;
  auto t = task("running", {step("a", "pending"), step("b", "running")});
  EXPECT_THAT(log.update(t), ElementsAre("migration of node-a (task 7f3c000000000001): running, 2 steps",
                                         "  b uuid-b -> node-b: running"));
  EXPECT_THAT(log.update(t), IsEmpty());
  t["steps"][1] = step("b", "waiting", "node-b is away");
  EXPECT_THAT(log.update(t), ElementsAre("  b uuid-b -> node-b: waiting: node-b is away"));
  t["steps"][1] = step("b", "running", "node-b is away");  // tried again: nothing new to say
  EXPECT_THAT(log.update(t), IsEmpty());
  t["steps"][0] = step("a", "succeeded");
  t["steps"][1] = step("b", "failed", "migration_failed: boom");
  EXPECT_THAT(log.update(t), ElementsAre("  a uuid-a -> node-b: succeeded", "  b uuid-b -> node-b: failed: migration_failed: boom"));
  EXPECT_THAT(log.update(t), IsEmpty());
}

TEST(CliAdvice, ALockedNodeNamesTheCommandsForItsTask) {
  EXPECT_EQ(hint_for("node_locked", "node-b is locked by task 7f3c000000000001 (drain, running since …)"),
            "wait for it (`nodeha task watch 7f3c000000000001`) or cancel it (`nodeha task cancel 7f3c000000000001`)");
  EXPECT_THAT(hint_for("no_room", "1 of 2 VM(s) cannot be placed"), HasSubstr("--target"));
  EXPECT_EQ(hint_for("unknown_node", "no node named \"x\"; `nodeha node list` shows the known nodes"), "");
}

// Followers answer exactly what a viewer may ask (auth/permissions.cpp): the CLI asks a follower
// whether controllers run only for the commands that change something.
TEST(CliAdvice, TheReadOnlyCommandsAreTheViewers) {
  const std::string cmd = "nodeha.cmd.";
  int commands = 0;
  for (const auto& subject : auth::permissions_for({"vic", auth::Role::kViewer}, "nodeha").publish) {
    if (subject.rfind(cmd, 0) != 0) continue;  // its KV reads
    ++commands;
    EXPECT_TRUE(read_only(subject.substr(cmd.size()))) << subject;
  }
  EXPECT_EQ(commands, 5);
  for (const char* op : {"node.enable", "node.disable", "node.drain", "node.migrate", "node.rebuild", "task.cancel", "vm.list.x", ""})
    EXPECT_FALSE(read_only(op)) << op;
}

// Found by fuzz/task_record_fuzz.cpp: a task that is not an object made value() throw, a
// progress figure like 1e300 was cast to int64 (undefined), and done * 100 overflowed.
TEST(CliTaskView, RecordsOfAnyShapeAreShown) {
  EXPECT_THAT(progress_lines(nlohmann::json(), 5)[0], HasSubstr("0/0 steps done"));
  nlohmann::json task = {{"kind", "drain"}, {"node", "node-b"}, {"state", "running"}, {"cancel_requested", "yes"},
                         {"steps", {{{"vm", "vm-1"}, {"state", "running"},
                                     {"progress", {{"data_total", 1}, {"data_processed", int64_t(1) << 62}}}},
                                    {{"vm", "vm-2"}, {"state", "running"},
                                     {"progress", {{"data_total", 1e300}, {"data_processed", 1e300}}}}}}};
  auto lines = progress_lines(task, 5);
  EXPECT_THAT(lines[0], ::testing::Not(HasSubstr("cancel requested")));
  EXPECT_THAT(lines[2], HasSubstr("(100%)"));
  EXPECT_THAT(lines[3], HasSubstr(" - "));
}

// `nodeha task watch` follows a task of chunked steps: each event carries the head and, when steps
// changed, one chunk, laid over the steps it holds at the chunk's place; older events are ignored.
TEST(CliTaskWatch, AChunkEventIsLaidOverTheStepsHeld) {
  json task = {{"id", "t1"}, {"updated", 10}, {"state", "running"}, {"chunk_steps", 2},
               {"steps", {step("a", "pending"), step("b", "pending"), step("c", "pending")}}};
  json event = {{"event", "step"}, {"id", "t1"}, {"updated", 11}, {"state", "running"}, {"chunk_steps", 2},
                {"step_count", 3}, {"chunk", {{"task", "t1"}, {"chunk", 1}, {"epoch", 0}, {"steps", {step("c", "succeeded")}}}}};
  EXPECT_EQ(apply_event(event.dump(), "t1", &task), "step");
  ASSERT_EQ(task["steps"].size(), 3u);
  EXPECT_EQ(task["steps"][0]["state"], "pending");
  EXPECT_EQ(task["steps"][2]["state"], "succeeded");
  EXPECT_EQ(task["updated"], 11);
  EXPECT_FALSE(task.contains("event"));
  EXPECT_FALSE(task.contains("chunk"));
  event["updated"] = 5;  // older than what is held
  event["chunk"]["steps"] = {step("c", "failed")};
  EXPECT_EQ(apply_event(event.dump(), "t1", &task), "");
  EXPECT_EQ(task["steps"][2]["state"], "succeeded");
  EXPECT_EQ(apply_event(R"({"id":"t2","updated":99})", "t1", &task), "");  // another task's
  EXPECT_EQ(task["updated"], 11);
  // A change written in two chunks: `steps` first (more of it to come), then the change itself.
  event = {{"event", "steps"}, {"id", "t1"}, {"updated", 12}, {"state", "succeeded"}, {"chunk_steps", 2}, {"step_count", 3},
           {"chunk", {{"task", "t1"}, {"chunk", 0}, {"epoch", 0}, {"steps", {step("a", "succeeded"), step("b", "succeeded")}}}}};
  EXPECT_EQ(apply_event(event.dump(), "t1", &task), "steps");
  EXPECT_EQ(task["steps"][1]["state"], "succeeded");
}

}  // namespace
}  // namespace nodeha::cli
