// Self-fencing by lease, the pure parts (plugins/selffence/fence_lease.h): the records and their strict
// codecs, the witness's signed datagrams, the agent's rule and the leader's judgement.
#include "fence_lease.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::lease {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

std::string renewal_error(const std::string& json) {
  auto r = decode_renewal(json);
  return r ? "accepted" : r.status().message();
}

TEST(LeaseCodec, ARenewalAndAGrantComeBackAsTheyWere) {
  Renewal r{"node-1", 10000, 42, true, 7, 99, false, {{"node-2", 900, 100, -1, -1, 0}, {"node-3", 500, 500, 500, 500, 41}}};
  auto back = decode_renewal(encode(r));
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(*back, r);
  Grant g{10000, 43, Response::kStop, true, true, random_key(), 7, std::vector<Peer>{{"node-2", "10.0.2.2"}}};
  auto g2 = decode_grant(encode(g));
  ASSERT_TRUE(g2) << g2.status().message();
  EXPECT_EQ(*g2, g);
  g.peers.reset();  // the same revision: no list
  EXPECT_EQ(*decode_grant(encode(g)), g);
}

TEST(LeaseCodec, AHostileRenewalIsRefusedWithTheFieldNamed) {
  EXPECT_THAT(renewal_error("[]"), HasSubstr("not a JSON object"));
  EXPECT_THAT(renewal_error(R"({"node":"n1","extra":1})"), HasSubstr("unknown field \"extra\""));
  EXPECT_THAT(renewal_error(R"({"node":"../x"})"), HasSubstr("field \"node\""));
  EXPECT_THAT(renewal_error(R"({"node":"n1","watchdog_ms":-5})"), HasSubstr("watchdog_ms"));
  EXPECT_THAT(renewal_error(R"({"node":"n1","watchdog_ms":600001})"), HasSubstr("watchdog_ms"));
  EXPECT_THAT(renewal_error(R"({"node":"n1","seq":-1})"), HasSubstr("seq"));
  EXPECT_THAT(renewal_error(R"({"node":"n1","heard":[{"node":"n1","any_first_ms":1,"any_last_ms":1}]})"),
              HasSubstr("does not witness itself"));
  EXPECT_THAT(renewal_error(R"({"node":"n1","heard":[{"node":"n2","any_first_ms":1,"any_last_ms":5}]})"),
              HasSubstr("at least as old"));
  EXPECT_THAT(renewal_error(R"({"node":"n1","heard":[{"node":"n2","any_last_ms":5}]})"), HasSubstr("must come with"));
  EXPECT_THAT(renewal_error(R"({"node":"n1","heard":[{"node":"n2"},{"node":"n2"}]})"), HasSubstr("listed twice"));
  EXPECT_THAT(renewal_error(std::string(kMaxRenewalBytes + 1, ' ')), HasSubstr("over"));
  EXPECT_THAT(renewal_error(R"({"node":")" + std::string(5000, 'x') + "\"}"), HasSubstr("field \"node\""));
  EXPECT_THAT(renewal_error("{\"node\":\"n\xff\xfe" "1\"}"), HasSubstr("not a JSON object"));  // not UTF-8
  EXPECT_THAT(renewal_error(R"({"node":7})"), HasSubstr("field \"node\""));
  EXPECT_FALSE(open("{\"kind\":\"probe\",\"from\":\"\xff\"}", random_key()));
  EXPECT_EQ(renewal_error(R"({"node":"n1"})"), "accepted");
}

TEST(LeaseCodec, AGrantWithoutAUsableKeyOrResponseIsRefused) {
  EXPECT_FALSE(decode_grant(R"({"fence_after_ms":1000,"seq":1,"response":"keep","key":"abc"})"));
  EXPECT_FALSE(decode_grant(R"({"fence_after_ms":1000,"seq":1,"response":"maybe","key":")" + random_key() + "\"}"));
  EXPECT_FALSE(decode_grant(R"({"fence_after_ms":1000,"seq":0,"response":"keep","key":")" + random_key() + "\"}"));
  EXPECT_TRUE(decode_grant(R"({"fence_after_ms":1000,"seq":1,"response":"keep","key":")" + random_key() + "\"}"));
}

TEST(Witness, ADatagramOpensOnlyUnderItsKeyAndUntouched) {
  std::string key = random_key(), other = random_key();
  Datagram d{true, "node-1", "node-2", 123456789, true, 77};
  auto text = seal(d, key);
  auto back = open(text, key);
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(*back, d);
  EXPECT_THAT(open(text, other).status().message(), HasSubstr("does not match"));
  // Any field changed breaks the mac: a forged "my lease has ended" cannot keep a node's VMs alive.
  auto forged = nlohmann::json::parse(text);
  forged["valid"] = false;
  EXPECT_FALSE(open(forged.dump(), key));
  forged = nlohmann::json::parse(text);
  forged["nonce"] = 1;
  EXPECT_FALSE(open(forged.dump(), key));
  EXPECT_FALSE(open("not json", key));
  EXPECT_FALSE(open(std::string(kMaxDatagramBytes + 1, 'x'), key));
}

TEST(LeaseRule, AnAgentFencesItselfOnlyWhenNoPeerSaysToWait) {
  // lease valid, self-fence, response, answers, valid answers
  EXPECT_EQ(decide(true, true, Response::kStop, 0, 0), Verdict::kLeased);
  EXPECT_EQ(decide(false, true, Response::kKeep, 0, 0), Verdict::kFence);      // cut off from everything
  EXPECT_EQ(decide(false, true, Response::kKeep, 2, 1), Verdict::kIsolated);   // only this node is cut off
  EXPECT_EQ(decide(false, true, Response::kStop, 2, 1), Verdict::kFence);
  EXPECT_EQ(decide(false, true, Response::kStop, 2, 0), Verdict::kOutage);     // nobody has a lease
  EXPECT_EQ(decide(false, true, Response::kKeep, 2, 0), Verdict::kOutage);
  EXPECT_EQ(decide(false, false, Response::kStop, 0, 0), Verdict::kOutage);    // never without self_fence
  EXPECT_EQ(decide(false, false, Response::kStop, 1, 1), Verdict::kIsolated);
}

class Judge : public ::testing::Test {
 protected:
  Clock::time_point t0 = Clock::now();
  LeaseState lease{t0, 5, 2000, true};  // granted at t0, watchdog 2 s
  WitnessLog log;
  Millis fence_after{3000}, margin{500};
  // The node's time: t0 + 3 s lease + 2 s watchdog + 0.5 s margin.
  Clock::time_point due = t0 + 5500ms;
  // Peers report every second, as agents renew.
  void reports(const std::string& peer, Clock::time_point from, Clock::time_point to, const std::vector<Heard>& heard = {}) {
    for (auto t = from; t <= to; t += 1s) log.add(peer, heard.empty() ? Heard{"node-9"} : heard[0], t);
  }
  Judgement at(Clock::time_point now, Response r = Response::kKeep) {
    return judge("node-1", lease, log, {"node-2", "node-3"}, r, fence_after, margin, now);
  }
};

TEST_F(Judge, ANodeNobodyHeardIsFencedOnceItsTimeHasPassedAndTheReportsAreIn) {
  reports("node-2", t0, due + 2s);
  reports("node-3", t0, due + 2s);
  EXPECT_EQ(at(due - 1ms).kind, Judgement::kWait);
  EXPECT_EQ(at(due + 2s).kind, Judgement::kFenced) << at(due + 2s).why;
}

TEST_F(Judge, APeerWhoseReportsAreMissingHoldsItThenRefusesIt) {
  reports("node-2", t0, due + 10s);
  EXPECT_EQ(at(due + 2s).kind, Judgement::kWait);
  auto j = at(due + 10s);
  EXPECT_EQ(j.kind, Judgement::kRefused);
  EXPECT_THAT(j.why, HasSubstr("node-3"));
}

TEST_F(Judge, HeardAfterItsLeaseEndedItIsIsolatedUnderKeep) {
  // node-2 hears node-1 all along (management cut, business up).
  for (auto t = t0; t <= due + 2s; t += 1s) {
    log.add("node-2", Heard{"node-1", 900, 100, -1, -1, 0}, t);
    log.add("node-3", Heard{"node-9"}, t);
  }
  EXPECT_EQ(at(due + 2s).kind, Judgement::kIsolated);
  // Under stop it fenced itself: the peers that heard it had a lease.
  EXPECT_EQ(at(due + 2s, Response::kStop).kind, Judgement::kFenced);
}

TEST_F(Judge, UnderStopAPeerWithoutALeaseThatHeardItBlocksTheFence) {
  for (auto t = t0; t <= due + 2s; t += 1s) {
    log.add("node-2", Heard{"node-1", 900, 100, 900, 100, 0}, t);
    log.add("node-3", Heard{"node-9"}, t);
  }
  EXPECT_EQ(at(due + 2s, Response::kStop).kind, Judgement::kRefused);
}

TEST_F(Judge, HeardOnlyLongBeforeItsLeaseEndedDoesNotCount) {
  // node-2 heard it until t0 - 10 s, then nothing: the last hearing only ages.
  for (auto t = t0 - 12s; t <= due + 2s; t += 1s) {
    log.add("node-2", t <= t0 - 10s ? Heard{"node-1", 900, 100, -1, -1, 0} : Heard{"node-9"}, t);
    log.add("node-3", Heard{"node-9"}, t);
  }
  EXPECT_EQ(at(due + 2s).kind, Judgement::kFenced) << at(due + 2s).why;
}

TEST_F(Judge, ItsOwnClaimThroughAPeerFencesItAtOnceButOnlyForItsCurrentGrant) {
  reports("node-2", t0, t0 + 4s, {Heard{"node-1", 100, 100, -1, -1, 4}});  // an older grant's claim
  EXPECT_EQ(at(t0 + 4s).kind, Judgement::kWait);
  log.add("node-2", Heard{"node-1", 100, 100, -1, -1, 5}, t0 + 4s);
  EXPECT_EQ(at(t0 + 4s).kind, Judgement::kFenced);
}

TEST_F(Judge, WithoutAWatchdogOrAGrantOrSelfFencingItIsRefused) {
  reports("node-2", t0, due + 2s);
  reports("node-3", t0, due + 2s);
  lease.watchdog_ms = 0;
  EXPECT_THAT(at(due + 2s).why, HasSubstr("watchdog"));
  lease.watchdog_ms = 2000;
  lease.self_fence = false;
  EXPECT_EQ(at(due + 2s).kind, Judgement::kRefused);
  EXPECT_EQ(judge("node-1", LeaseState{}, log, {}, Response::kKeep, fence_after, margin, due + 2s).kind, Judgement::kRefused);
}

TEST_F(Judge, APeerWhoseAgentRestartedMayHaveHeardAnyoneSinceItsLastReport) {
  // node-2's agent restarts around node-1's lease end: what it heard meanwhile is lost.
  for (auto t = t0; t <= due + 2s; t += 1s) {
    log.renewed("node-2", t < t0 + 3s ? 1 : 2, t);
    log.renewed("node-3", 7, t);
  }
  EXPECT_EQ(at(due + 2s).kind, Judgement::kIsolated);
  EXPECT_EQ(at(due + 2s, Response::kStop).kind, Judgement::kRefused);
}

TEST_F(Judge, APeerStoppedCleanlyIsNotWaitedForButWhatItHeardCounts) {
  reports("node-3", t0, due + 2s);
  // node-2 stops cleanly at t0 - 1 s; its last renewal says it heard node-1 just then.
  log.renewed("node-2", 1, t0 - 1s, /*leaving=*/true);
  log.add("node-2", Heard{"node-1", 100, 100, -1, -1, 0}, t0 - 1s);
  EXPECT_EQ(at(due + 2s).kind, Judgement::kFenced) << at(due + 2s).why;  // heard before the window
  log.renewed("node-2", 1, t0 + 4s, /*leaving=*/true);
  log.add("node-2", Heard{"node-1", 100, 100, -1, -1, 0}, t0 + 4s);
  EXPECT_EQ(at(due + 2s).kind, Judgement::kIsolated);  // heard in it
  // Back (a renewal without leaving): its reports are waited for again.
  log.renewed("node-2", 2, t0 + 5s);
  EXPECT_EQ(at(due + 2s).kind, Judgement::kWait);
  WitnessLog fresh;
  fresh.renewed("node-2", 1, t0, true);
  fresh.renewed("node-2", 1, t0 + 1s);
  EXPECT_FALSE(fresh.left("node-2"));
}

TEST(WitnessLogSpans, ContinuousReportsStayOneSpanAndOldOnesGo) {
  WitnessLog log;
  auto t0 = Clock::now();
  for (int i = 0; i < 5000; ++i) log.add("node-2", Heard{"node-1", 900, 100, -1, -1, 0}, t0 + std::chrono::seconds(i));
  EXPECT_TRUE(log.heard("node-1", t0 + 100s, t0 + 101s, false));
  EXPECT_FALSE(log.heard("node-1", t0 + 100s, t0 + 101s, true));
  EXPECT_FALSE(log.heard("node-1", t0 + 6000s, t0 + 6001s, false));
  log.forget("node-1");
  EXPECT_FALSE(log.heard("node-1", t0 + 100s, t0 + 101s, false));
}

}  // namespace
}  // namespace nodeha::lease
