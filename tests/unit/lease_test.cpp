// The leader lease's decisions (host/src/lease.h), on a made-up clock: who may take it, when the
// holder must stop, and that a conflict always makes a controller follow.
#include "lease.h"

#include <gtest/gtest.h>

namespace nodeha::host {
namespace {

constexpr int64_t kLease = 2000;

LeaseView held_by(const std::string& holder, uint64_t epoch, uint64_t revision, int64_t lease = kLease) {
  LeaseView v;
  v.present = true;
  v.record = {holder, epoch, lease, 0};
  v.revision = revision;
  return v;
}

Result<uint64_t> wrote(uint64_t revision) { return revision; }
Result<uint64_t> conflict() { return Status(NODEHA_ERR_CONFLICT, "wrong last sequence"); }

TEST(Lease, TheFirstControllerCreatesItAtEpochOne) {
  LeaseKeeper k("ctl-1", kLease);
  LeaseStep s = k.on_read(0, LeaseView{});
  ASSERT_EQ(s.kind, LeaseStep::kCreate);
  EXPECT_EQ(s.write.holder, "ctl-1");
  EXPECT_EQ(s.write.epoch, 1u);
  k.on_written(s, 0, wrote(7));
  EXPECT_TRUE(k.leads());
  EXPECT_EQ(k.epoch(), 1u);
  EXPECT_EQ(k.acting_until(), kLease - kLease / 4) << "stops a margin before the lease ends";
}

TEST(Lease, AFollowerWaitsAWholeLeaseFromWhenItSawTheRevisionThenTakesItWithTheNextEpoch) {
  LeaseKeeper k("ctl-2", kLease);
  EXPECT_EQ(k.on_read(1000, held_by("ctl-1", 4, 10)).kind, LeaseStep::kWait);
  EXPECT_EQ(k.leader(), "ctl-1");
  EXPECT_EQ(k.on_read(2999, held_by("ctl-1", 4, 10)).kind, LeaseStep::kWait);
  // Renewed meanwhile: the wait starts again.
  EXPECT_EQ(k.on_read(3100, held_by("ctl-1", 4, 11)).kind, LeaseStep::kWait);
  EXPECT_EQ(k.on_read(5099, held_by("ctl-1", 4, 11)).kind, LeaseStep::kWait);
  LeaseStep s = k.on_read(5100, held_by("ctl-1", 4, 11));
  ASSERT_EQ(s.kind, LeaseStep::kTake);
  EXPECT_EQ(s.expected, 11u) << "checked against the revision it saw";
  EXPECT_EQ(s.write.epoch, 5u);
  EXPECT_EQ(s.write.holder, "ctl-2");
}

TEST(Lease, AHolderWithALongerLeaseIsWaitedForAsLongAsItsOwn) {
  LeaseKeeper k("ctl-2", kLease);
  EXPECT_EQ(k.on_read(0, held_by("ctl-1", 1, 3, 5000)).kind, LeaseStep::kWait);
  EXPECT_EQ(k.on_read(4999, held_by("ctl-1", 1, 3, 5000)).kind, LeaseStep::kWait);
  EXPECT_EQ(k.on_read(5000, held_by("ctl-1", 1, 3, 5000)).kind, LeaseStep::kTake);
}

TEST(Lease, AReleasedLeaseOrOneNamingThisControllerIsTakenAtOnce) {
  LeaseKeeper a("ctl-2", kLease);
  EXPECT_EQ(a.on_read(0, held_by("", 3, 9)).kind, LeaseStep::kTake);
  LeaseKeeper b("ctl-1", kLease);  // restarted: its own lease from before
  LeaseStep s = b.on_read(0, held_by("ctl-1", 3, 9));
  ASSERT_EQ(s.kind, LeaseStep::kTake);
  EXPECT_EQ(s.write.epoch, 4u) << "a new term even for the same controller";
}

TEST(Lease, TwoTakersOfOneRevisionCannotBothWin) {
  LeaseKeeper a("ctl-2", kLease), b("ctl-3", kLease);
  a.on_read(0, held_by("ctl-1", 1, 5));
  b.on_read(0, held_by("ctl-1", 1, 5));
  LeaseStep sa = a.on_read(kLease, held_by("ctl-1", 1, 5));
  LeaseStep sb = b.on_read(kLease, held_by("ctl-1", 1, 5));
  ASSERT_EQ(sa.kind, LeaseStep::kTake);
  ASSERT_EQ(sb.kind, LeaseStep::kTake);
  a.on_written(sa, kLease, wrote(6));  // the store took a's checked write first
  b.on_written(sb, kLease, conflict());
  EXPECT_TRUE(a.leads());
  EXPECT_FALSE(b.leads());
  EXPECT_EQ(b.acting_until(), 0);
}

TEST(Lease, TheHolderRenewsEveryQuarterLeaseAndStopsAMarginBeforeItsLeaseEndsWhenRenewalsFail) {
  LeaseKeeper k("ctl-1", kLease);
  LeaseStep s = k.on_read(0, LeaseView{});
  k.on_written(s, 0, wrote(1));
  EXPECT_EQ(k.on_tick(499).kind, LeaseStep::kWait);
  LeaseStep r = k.on_tick(500);
  ASSERT_EQ(r.kind, LeaseStep::kRenew);
  EXPECT_EQ(r.expected, 1u);
  EXPECT_EQ(r.write.epoch, 1u) << "renewing keeps the epoch";
  k.on_written(r, 500, wrote(2));
  EXPECT_EQ(k.acting_until(), 500 + kLease - kLease / 4);
  // Cut off: every renewal fails; it may act until 1500 ms after the last one that succeeded
  // was sent, and a follower takes over no sooner than 2000 ms after it saw that one.
  LeaseStep r2 = k.on_tick(1000);
  k.on_written(r2, 1000, Status(NODEHA_ERR_TIMEOUT, "timed out"));
  EXPECT_TRUE(k.leads());
  EXPECT_EQ(k.acting_until(), 2000);
  EXPECT_EQ(k.on_tick(1999).kind, LeaseStep::kRenew);
  EXPECT_EQ(k.on_tick(2000).kind, LeaseStep::kStepDown);
}

TEST(Lease, ARenewalThatFindsAnotherRevisionEndsLeadershipAtOnce) {
  LeaseKeeper k("ctl-1", kLease);
  LeaseStep s = k.on_read(0, LeaseView{});
  k.on_written(s, 0, wrote(1));
  LeaseStep r = k.on_tick(600);
  k.on_written(r, 600, conflict());
  EXPECT_FALSE(k.leads());
  EXPECT_EQ(k.acting_until(), 0);
}

TEST(Lease, AfterSteppingDownItWaitsAWholeLeaseAgainForAnotherHolder) {
  LeaseKeeper k("ctl-1", kLease);
  LeaseStep s = k.on_read(0, LeaseView{});
  k.on_written(s, 0, wrote(1));
  k.stepped_down();
  EXPECT_FALSE(k.leads());
  EXPECT_EQ(k.on_read(3000, held_by("ctl-2", 2, 4)).kind, LeaseStep::kWait) << "seen now: the wait starts now";
  EXPECT_EQ(k.on_read(4999, held_by("ctl-2", 2, 4)).kind, LeaseStep::kWait);
  LeaseStep t = k.on_read(5000, held_by("ctl-2", 2, 4));
  EXPECT_EQ(t.kind, LeaseStep::kTake);
  EXPECT_EQ(t.write.epoch, 3u);
}

TEST(Lease, ARecreatedKeyNeverGoesBackInEpoch) {
  LeaseKeeper k("ctl-2", kLease);
  k.on_read(0, held_by("ctl-1", 41, 100));
  LeaseStep s = k.on_read(10, LeaseView{});  // someone deleted it
  ASSERT_EQ(s.kind, LeaseStep::kCreate);
  EXPECT_EQ(s.write.epoch, 42u);
}

TEST(Lease, ReleaseNamesNoHolderAndKeepsTheEpoch) {
  LeaseKeeper k("ctl-1", kLease);
  EXPECT_FALSE(k.release());
  LeaseStep s = k.on_read(0, held_by("ctl-1", 6, 8));
  k.on_written(s, 0, wrote(9));
  auto r = k.release();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->write.holder, "");
  EXPECT_EQ(r->write.epoch, 7u);
  EXPECT_EQ(r->expected, 9u);
}

TEST(Lease, TheRecordsCodecRefusesWhatIsNotALease) {
  auto ok = decode_lease(encode_lease({"ctl-1", 3, 2000, 17}));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok.value().holder, "ctl-1");
  EXPECT_EQ(ok.value().epoch, 3u);
  EXPECT_EQ(ok.value().lease_ms, 2000);
  EXPECT_TRUE(decode_lease(encode_lease({"", 3, 2000, 0}))) << "released: no holder";
  const std::string long_id(5000, 'a');
  for (const std::string& bad :
       {std::string(), std::string("[]"), std::string("{\"holder\":1,\"epoch\":1,\"lease_ms\":2000}"),
        std::string("{\"holder\":\"a\",\"epoch\":-1,\"lease_ms\":2000}"),
        std::string("{\"holder\":\"a\",\"epoch\":1,\"lease_ms\":0}"), std::string("{\"holder\":\"a\",\"epoch\":1}"),
        std::string("{\"holder\":\"a\",\"epoch\":\"1\",\"lease_ms\":2000}"),
        // nobody could outwait it, nor outnumber it
        std::string("{\"holder\":\"a\",\"epoch\":1,\"lease_ms\":9223372036854775807}"),
        std::string("{\"holder\":\"a\",\"epoch\":18446744073709551615,\"lease_ms\":2000}"),
        // not a node id: too long, a space, bytes that are not UTF-8
        "{\"holder\":\"" + long_id + "\",\"epoch\":1,\"lease_ms\":2000}",
        std::string("{\"holder\":\"ctl 1\",\"epoch\":1,\"lease_ms\":2000}"),
        std::string("{\"holder\":\"ctl-\xff\",\"epoch\":1,\"lease_ms\":2000}")})
    EXPECT_FALSE(decode_lease(bad)) << bad.substr(0, 80);
  LeaseKeeper k("ctl-2", kLease);
  LeaseView junk;
  junk.present = true;
  junk.readable = false;
  junk.revision = 5;
  EXPECT_EQ(k.on_read(0, junk).kind, LeaseStep::kWait) << "unreadable: waited out like a silent holder";
  EXPECT_EQ(k.on_read(kLease, junk).kind, LeaseStep::kTake);
}

}  // namespace
}  // namespace nodeha::host
