// A migration's figures (plugins/migrate/progress.h): the remaining-time estimate from the recent
// rate, the JSON that events and task steps carry, and the figures of a finished migration.
#include "progress.h"

#include <gtest/gtest.h>

namespace nodeha::migrate {
namespace {

using json = nlohmann::json;
constexpr uint64_t kMiB = 1024 * 1024;

JobSample reading(uint64_t processed, uint64_t remaining) {
  JobSample s;
  s.data_processed = processed;
  s.data_remaining = remaining;
  s.data_total = processed + remaining;
  return s;
}

TEST(MigrateRemainingTime, NoEstimateBeforeTwoReadingsOrWithoutARate) {
  EXPECT_EQ(estimate_remaining_ms({}, 100), std::nullopt);
  EXPECT_EQ(estimate_remaining_ms({{1000, 50}}, 100), std::nullopt);
  EXPECT_EQ(estimate_remaining_ms({{1000, 50}, {2000, 50}}, 100), std::nullopt) << "nothing moved: the rate is 0";
  EXPECT_EQ(estimate_remaining_ms({{1000, 50}, {1000, 80}}, 100), std::nullopt) << "no time between them";
  EXPECT_EQ(estimate_remaining_ms({{1000, 80}, {2000, 50}}, 100), std::nullopt) << "counters went back";
}

TEST(MigrateRemainingTime, TheRateBetweenTheFirstAndLastReadingGivesTheTimeRoundedUp) {
  EXPECT_EQ(estimate_remaining_ms({{0, 0}, {500, 10 * kMiB}, {1000, 100 * kMiB}}, 300 * kMiB), 3000);
  EXPECT_EQ(estimate_remaining_ms({{0, 0}, {1000, 3}}, 1), 334);  // 333.3 ms
  EXPECT_EQ(estimate_remaining_ms({{0, 0}, {1000, 3}}, 0), 0);
  EXPECT_EQ(estimate_remaining_ms({{0, 0}, {INT64_MAX, 1}}, UINT64_MAX), INT64_MAX) << "no overflow";
}

TEST(MigrateRemainingTime, FollowsTheLastFewSecondsOnly) {
  RemainingTime t(5000);
  EXPECT_EQ(t.observe(0, reading(0, 1000 * kMiB)), std::nullopt) << "one reading";
  EXPECT_EQ(t.observe(1000, reading(0, 1000 * kMiB)), std::nullopt) << "setup: nothing counted yet";
  // 100 MiB/s from 1 s on; the readings at 0 and 1 s leave the window by 7 s.
  for (int s = 2; s <= 7; ++s) t.observe(s * 1000, reading((s - 1) * 100 * kMiB, 1000 * kMiB - (s - 1) * 100 * kMiB));
  EXPECT_EQ(t.observe(8000, reading(700 * kMiB, 300 * kMiB)), 3000);
  // Slower from 8 s on: 10 MiB/s. Once the fast seconds have left the window, only that counts.
  for (int s = 9; s <= 13; ++s) t.observe(s * 1000, reading(700 * kMiB + (s - 8) * 10 * kMiB, 250 * kMiB));
  EXPECT_EQ(t.observe(14000, reading(760 * kMiB, 100 * kMiB)), 10000) << "50 MiB in the last 5 s";
}

TEST(MigrateRemainingTime, LibvirtsOwnFigureWinsAndANewJobStartsTheRateAfresh) {
  RemainingTime t;
  t.observe(0, reading(0, 100));
  JobSample given = reading(50, 50);
  given.time_remaining_ms = 42;
  EXPECT_EQ(t.observe(1000, given), 42);
  EXPECT_EQ(t.observe(2000, reading(100, 0)), 0);
  EXPECT_EQ(t.observe(3000, reading(10, 90)), std::nullopt) << "counters started again: one reading of the new job";
  EXPECT_EQ(t.observe(4000, reading(40, 60)), 2000);
}

TEST(MigrateProgressJson, CarriesMemoryAndDiskApartAndAnUnknownTimeAsNull) {
  JobSample s = reading(60, 40);
  s.memory_total = 30, s.memory_processed = 10, s.memory_remaining = 20;
  s.disk_total = 70, s.disk_processed = 50, s.disk_remaining = 20;
  json j = to_json(s);
  EXPECT_EQ(j, json::parse(R"({"data_total":100,"data_processed":60,"data_remaining":40,"memory_total":30,
      "memory_processed":10,"memory_remaining":20,"disk_total":70,"disk_processed":50,"disk_remaining":20,
      "time_remaining_ms":null})"));
  s.time_remaining_ms = 1500;
  JobSample back = sample_from_json(to_json(s));
  EXPECT_EQ(to_json(back), to_json(s));
  EXPECT_EQ(back.time_remaining_ms, 1500);
}

TEST(MigrateProgressJson, ReadsHostileFiguresAsZeroOrUnknown) {
  auto s = sample_from_json(json::parse(R"({"data_total":"lots","data_processed":-5,"memory_total":1.5e300,
      "disk_total":18446744073709551615,"disk_processed":null,"time_remaining_ms":-1})"));
  EXPECT_EQ(s.data_total, 0u);
  EXPECT_EQ(s.data_processed, 0u);
  EXPECT_EQ(s.memory_total, 0u);
  EXPECT_EQ(s.disk_total, UINT64_MAX);
  EXPECT_EQ(s.disk_processed, 0u);
  EXPECT_EQ(s.time_remaining_ms, std::nullopt);
  EXPECT_EQ(sample_from_json(json::parse(R"({"time_remaining_ms":"soon"})")).time_remaining_ms, std::nullopt);
  EXPECT_EQ(sample_from_json(json::parse(R"({"time_remaining_ms":18446744073709551615})")).time_remaining_ms, std::nullopt);
  EXPECT_EQ(sample_from_json(json::parse(R"({"time_remaining_ms":0})")).time_remaining_ms, 0);
  EXPECT_EQ(to_json(sample_from_json(json::array())), to_json(JobSample{}));
}

TEST(MigrateCompletedSample, TheDestinationsMemoryAndTheSourcesMirror) {
  JobSample source = reading(300, 20);  // the last reading: memory nearly done, the mirror caught up
  source.memory_total = 64, source.memory_processed = 50, source.memory_remaining = 14;
  source.disk_total = 256, source.disk_processed = 250, source.disk_remaining = 6;
  JobSample dest = reading(70, 0);  // libvirt hands the destination QEMU's counters: no mirror
  dest.memory_total = 64, dest.memory_processed = 70;
  JobSample done = completed_sample(source, dest);
  EXPECT_EQ(done.memory_total, 64u);
  EXPECT_EQ(done.memory_processed, 70u);
  EXPECT_EQ(done.disk_total, 256u);
  EXPECT_EQ(done.disk_processed, 256u) << "the migration ends once the mirror has copied all of it";
  EXPECT_EQ(done.data_total, 70u + 256u);
  EXPECT_EQ(done.data_processed, 70u + 256u);
  EXPECT_EQ(done.data_remaining + done.memory_remaining + done.disk_remaining, 0u);
  EXPECT_EQ(done.time_remaining_ms, 0);
}

TEST(MigrateCompletedSample, WithoutTheDestinationTheSourcesLastReadingFinished) {
  JobSample source = reading(90, 10);
  source.memory_total = 100, source.memory_processed = 90, source.memory_remaining = 10;
  JobSample done = completed_sample(source, JobSample{});
  EXPECT_EQ(done.data_total, 100u);
  EXPECT_EQ(done.data_processed, 90u);
  EXPECT_EQ(done.memory_processed, 90u);
  EXPECT_EQ(done.disk_total, 0u);
  EXPECT_EQ(done.data_remaining + done.memory_remaining, 0u);
  // A destination that moved no disk and a source without one: the destination's figures.
  JobSample dest = reading(120, 0);
  EXPECT_EQ(completed_sample(source, dest).data_total, 120u);
  EXPECT_EQ(completed_sample(source, dest).disk_total, 0u);
}

}  // namespace
}  // namespace nodeha::migrate
