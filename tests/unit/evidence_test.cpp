// The evidence codec (plugins/common/evidence.h) and the history's reading and timeline
// (cli/event_log.h): pure, no NATS.
#include "event_log.h"
#include "evidence.h"

#include <gtest/gtest.h>

namespace nodeha {
namespace {

using nlohmann::json;

TEST(Evidence, RoundTripsEveryField) {
  evidence::Evidence e;
  e.summary = "silent 3.01 s (3 intervals of 1 s)";
  e.by = "controller-1";
  e.epoch = 4;
  e.requester = "admin";
  e.task = "0123456789abcdef";
  e.facts = {{"silence_s", 3.01}, {"intervals", 3}, {"ping_subject", "nodeha.agent.node-2.ping"}, {"ok", false}};
  json j = evidence::to_json(e);
  EXPECT_EQ(j["v"], 1);
  auto back = evidence::from_json(j);
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(back->summary, e.summary);
  EXPECT_EQ(back->by, "controller-1");
  EXPECT_EQ(back->epoch, 4u);
  EXPECT_EQ(back->requester, "admin");
  EXPECT_EQ(back->task, e.task);
  EXPECT_EQ(back->facts, e.facts);
}

TEST(Evidence, LeavesOutWhatIsEmpty) {
  evidence::Evidence e;
  e.summary = "heartbeats arrive";
  e.by = "node-1";
  json j = evidence::to_json(e);
  EXPECT_EQ(j, (json{{"v", 1}, {"summary", "heartbeats arrive"}, {"by", "node-1"}}));
  ASSERT_TRUE(evidence::from_json(j));
}

TEST(Evidence, RefusesWhatIsNotEvidenceNamingTheField) {
  json good = {{"v", 1}, {"summary", "s"}, {"by", "c"}};
  auto refused = [](json j) {
    auto r = evidence::from_json(j);
    return r ? std::string() : r.status().message();
  };
  EXPECT_NE(refused("text").find("not an object"), std::string::npos);
  json j = good;
  j["v"] = 2;
  EXPECT_NE(refused(j).find("\"v\""), std::string::npos);
  j = good;
  j.erase("summary");
  EXPECT_NE(refused(j).find("\"summary\" is missing"), std::string::npos);
  j = good;
  j["by"] = 7;
  EXPECT_NE(refused(j).find("\"by\" must be a string"), std::string::npos);
  j = good;
  j["epoch"] = -1;
  EXPECT_NE(refused(j).find("\"epoch\""), std::string::npos);
  j = good;
  j["facts"] = {{"nested", {{"a", 1}}}};
  EXPECT_NE(refused(j).find("fact \"nested\""), std::string::npos);
  j = good;
  j["facts"] = json::array();
  EXPECT_NE(refused(j).find("\"facts\" must be an object"), std::string::npos);
}

TEST(Evidence, TheRequesterIsTheInboxPrefixsIdentityOrUnauthenticated) {
  EXPECT_EQ(evidence::requester_of("_INBOX_alice.Xy12.3"), "alice");
  EXPECT_EQ(evidence::requester_of("_INBOX_ctl-1.abc"), "ctl-1");
  EXPECT_EQ(evidence::requester_of("_INBOX.abc.1"), "unauthenticated");
  EXPECT_EQ(evidence::requester_of(""), "unauthenticated");
  EXPECT_EQ(evidence::requester_of("_INBOX_"), "unauthenticated");
  EXPECT_EQ(evidence::requester_of("_INBOX_alice"), "unauthenticated");
  EXPECT_EQ(evidence::requester_of("nodeha.cmd.node.drain"), "unauthenticated");
  EXPECT_EQ(evidence::requester_of("_INBOX_" + std::string(5000, 'a') + ".1"), "unauthenticated");
  EXPECT_EQ(evidence::requester_of("_INBOX_al\xff\xfeice.1"), "unauthenticated");
}

TEST(Evidence, SecondsShowAtMostTwoDecimals) {
  EXPECT_EQ(evidence::seconds(3.0149), "3.01 s");
  EXPECT_EQ(evidence::seconds(0.5), "0.5 s");
  EXPECT_EQ(evidence::seconds(15), "15 s");
}

TEST(EventLog, TheStreamAndTheRequestAreTheHosts) {
  EXPECT_EQ(cli::event_log::stream_name("nodeha"), "NODEHA_EVENTS");
  EXPECT_EQ(cli::event_log::stream_name("site.a"), "SITE_A_EVENTS");
  EXPECT_EQ(cli::event_log::get_subject("nodeha"), "$JS.API.STREAM.MSG.GET.NODEHA_EVENTS");
  EXPECT_EQ(json::parse(cli::event_log::request_body(7, "nodeha.evt.node.n1")),
            (json{{"seq", 7}, {"next_by_subj", "nodeha.evt.node.n1"}}));
}

TEST(EventLog, DecodesAMessageTheEndAndAFailure) {
  // {"event":"monitor"} in base64
  std::string body = R"({"type":"io.nats.jetstream.api.v1.stream_msg_get_response","message":{"subject":"nodeha.evt.node.n1",)"
                     R"("seq":12,"data":"eyJldmVudCI6Im1vbml0b3IifQ==","time":"2026-12-07T02:55:01Z"}})";
  auto a = cli::event_log::decode_answer(body);
  ASSERT_TRUE(std::holds_alternative<cli::event_log::Event>(a));
  auto& e = std::get<cli::event_log::Event>(a);
  EXPECT_EQ(e.seq, 12u);
  EXPECT_EQ(e.subject, "nodeha.evt.node.n1");
  EXPECT_EQ(e.record, (json{{"event", "monitor"}}));
  EXPECT_TRUE(std::holds_alternative<cli::event_log::End>(
      cli::event_log::decode_answer(R"({"error":{"code":404,"err_code":10037,"description":"no message found"}})")));
  auto missing = cli::event_log::decode_answer(R"({"error":{"code":404,"err_code":10059,"description":"stream not found"}})");
  ASSERT_TRUE(std::holds_alternative<cli::event_log::Failure>(missing));
  EXPECT_EQ(std::get<cli::event_log::Failure>(missing).code, 404);
  EXPECT_TRUE(std::holds_alternative<cli::event_log::Failure>(cli::event_log::decode_answer("not json")));
  auto junk = cli::event_log::decode_answer(R"({"message":{"seq":3,"data":"!!!"}})");
  ASSERT_TRUE(std::holds_alternative<cli::event_log::Event>(junk));
  EXPECT_EQ(std::get<cli::event_log::Event>(junk).record["event"], "?");
}

TEST(EventLog, KeepsTheNewestSinceATime) {
  std::vector<cli::event_log::Event> all;
  for (int i = 1; i <= 5; ++i) all.push_back({static_cast<uint64_t>(i), "s", json{{"time", i * 1000}}});
  auto last2 = cli::event_log::newest(all, 2, 0);
  ASSERT_EQ(last2.size(), 2u);
  EXPECT_EQ(last2[0].seq, 4u);
  EXPECT_EQ(last2[1].seq, 5u);
  EXPECT_EQ(cli::event_log::newest(all, 50, 3000).size(), 3u);
}

TEST(EventLog, ATimelineLineSaysWhatChangedWhyWhoAndUnderWhichEpoch) {
  evidence::Evidence e;
  e.summary = "silent 3.01 s (3 intervals of 1 s), ping to nodeha.agent.n1.ping: no answer";
  e.by = "ctl-1";
  e.epoch = 4;
  json r = {{"event", "monitor"}, {"from", "normal"}, {"to", "unreachable"}, {"time", 1796611501120},
            {"evidence", evidence::to_json(e)}};
  std::string line = cli::event_log::timeline_line(r);
  EXPECT_NE(line.find("monitor"), std::string::npos) << line;
  EXPECT_NE(line.find("normal -> unreachable"), std::string::npos) << line;
  EXPECT_NE(line.find(e.summary), std::string::npos) << line;
  EXPECT_NE(line.find("(by ctl-1, epoch 4)"), std::string::npos) << line;
  EXPECT_NE(line.find(".120"), std::string::npos) << line;
  json task = {{"event", "task"}, {"kind", "drain"}, {"state", "succeeded"}, {"time", 1},
               {"steps", {{{"vm", "u1"}, {"name", "web"}, {"state", "succeeded"}, {"summary", "stopped by drain task t step"}}}}};
  line = cli::event_log::timeline_line(task);
  EXPECT_NE(line.find("(no evidence recorded)"), std::string::npos) << line;
  EXPECT_NE(line.find("\n    step web (u1) succeeded: stopped by drain task t step"), std::string::npos) << line;
}

// Found by fuzz/evidence_fuzz.cpp: the stream holds what any controller wrote.
TEST(EventLog, FieldsOfAnotherTypeReadAsNothing) {
  json odd = {{"event", "monitor"}, {"time", "yesterday"}, {"from", 3}, {"evidence", {{"v", 1}}}};
  std::string line = cli::event_log::timeline_line(odd);
  EXPECT_NE(line.find("1970-01-01 00:00:00.000"), std::string::npos) << line;
  EXPECT_NE(line.find("(unreadable evidence: evidence: field \"summary\" is missing)"), std::string::npos) << line;
  EXPECT_EQ(cli::event_log::newest({{1, "s", odd}}, 5, 1000).size(), 0u);
  auto f = cli::event_log::decode_answer(R"({"error":{"code":"404","description":7}})");
  ASSERT_TRUE(std::holds_alternative<cli::event_log::Failure>(f));
  EXPECT_EQ(std::get<cli::event_log::Failure>(f).code, 0);
}

TEST(EventLog, TheStreamsTimesAndLastSequence) {
  EXPECT_EQ(cli::event_log::parse_utc("2026-12-07T03:16:16.830123456Z"), 1796613376830);
  EXPECT_EQ(cli::event_log::parse_utc("1970-01-01T00:00:01Z"), 1000);
  EXPECT_EQ(cli::event_log::parse_utc("1970-01-01T00:00:00.5Z"), 500);
  for (const char* bad : {"", "2026-12-07", "2026-12-07T03:16:16", "2026-13-07T03:16:16Z", "2026-12-07T03:16:16+01:00", "x"})
    EXPECT_FALSE(cli::event_log::parse_utc(bad)) << bad;
  EXPECT_EQ(cli::event_log::last_seq(R"({"state":{"messages":3,"first_seq":1,"last_seq":42}})"), 42u);
  EXPECT_FALSE(cli::event_log::last_seq(R"({"error":{"code":404}})"));
  EXPECT_FALSE(cli::event_log::last_seq(R"({"state":{"last_seq":"42"}})"));
}

TEST(EventLog, SinceTakesSecondsMinutesHoursDays) {
  EXPECT_EQ(cli::event_log::parse_since("90s"), 90'000);
  EXPECT_EQ(cli::event_log::parse_since("7d"), 7LL * 86'400'000);
  for (const char* bad : {"", "5", "0m", "-1h", "1w", "h", "1hh", "9999999999d"})
    EXPECT_FALSE(cli::event_log::parse_since(bad)) << bad;
}

}  // namespace
}  // namespace nodeha
