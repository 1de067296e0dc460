// The vms plugin's pure core: which disks are local (plugins/common/vm_ops.h) and the inventory
// sync's decisions (plugins/vms/sync_plan.h): stale copies, claims, records, supervision.
#include "sync_plan.h"
#include "vm_ops.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::vms {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using json = nlohmann::json;

TEST(Disks, LocalUnlessNetworkOrUnderASharedPath) {
  const char* xml =
      "<domain><devices>"
      "<disk type='file' device='disk'><driver name='qemu'/><source file='/var/lib/images/a.qcow2'/><target "
      "dev='vda'/></disk>"
      "<disk type='file' device='disk'><source file='/srv/shared/b.raw'/><target dev='vdb'/></disk>"
      "<disk type='file' device='disk'><source file='/srv/shared2/c.raw'/><target dev='vdc'/></disk>"
      "<disk type='network' device='disk'><source protocol='rbd' name='pool/d'><host name='h'/></source><target "
      "dev='vdd'/></disk>"
      "<disk type='block' device='disk'><source dev='/dev/sdz'/><target dev='vde'/></disk>"
      "<disk type=\"file\" device=\"cdrom\"><target dev='hdc'/><readonly/></disk>"
      "<disk type='file' device='disk'><source file='/var/lib/images/it&apos;s.img'/><target dev='vdf'/></disk>"
      "</devices></domain>";
  auto disks = vm_ops::parse_disks(xml);
  ASSERT_EQ(disks.size(), 7u);
  EXPECT_EQ(disks[3].type, "network");
  EXPECT_EQ(disks[5].device, "cdrom");
  EXPECT_TRUE(disks[5].source.empty());
  EXPECT_TRUE(disks[5].readonly);
  EXPECT_THAT(vm_ops::local_disk_paths(disks, {"/srv/shared/"}),
              ElementsAre("/var/lib/images/a.qcow2", "/srv/shared2/c.raw", "/dev/sdz", "/var/lib/images/it's.img"));
  EXPECT_THAT(vm_ops::local_disk_paths(vm_ops::parse_disks("<domain><devices/></domain>"), {}), IsEmpty());
}

TEST(Disks, PathUnder) {
  EXPECT_TRUE(vm_ops::path_under("/a/b", "/a"));
  EXPECT_TRUE(vm_ops::path_under("/a", "/a/"));
  EXPECT_FALSE(vm_ops::path_under("/ab", "/a"));
  EXPECT_TRUE(vm_ops::path_under("/anything", "/"));
  EXPECT_FALSE(vm_ops::path_under("/a", ""));
}

Domain domain(const std::string& uuid, int state, int reason = 0) {
  Domain d;
  d.uuid = uuid;
  d.name = "vm-" + uuid;
  d.state = state;
  d.reason = reason;
  d.vcpus = 1;
  d.memory_mib = 64;
  d.xml = "<domain/>";
  return d;
}

SyncInput input(bool first) {
  SyncInput in;
  in.node = "node-a";
  in.first = first;
  return in;
}

void add(SyncInput& in, const Domain& d, const std::string& owner = "", const std::string& desired = "running") {
  in.domains[d.uuid] = d;
  if (owner.empty()) return;
  json r = new_record(d, owner, 1);
  r["desired"] = desired;
  in.records[d.uuid] = r;
}

TEST(SyncPlan, ACopyItsOwnerHasIsStaleAndIncomingMigrationsAreLeftAlone) {
  auto in = input(true);
  add(in, domain("mine", VIR_DOMAIN_RUNNING), "node-a");
  add(in, domain("theirs", VIR_DOMAIN_RUNNING), "node-b");
  add(in, domain("theirs-off", VIR_DOMAIN_SHUTOFF), "node-b");
  add(in, domain("incoming", VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_MIGRATION), "node-b");
  // Listed shut off and transient while libvirt prepares the destination QEMU.
  Domain preparing = domain("preparing", VIR_DOMAIN_SHUTOFF);
  preparing.persistent = false;
  add(in, preparing, "node-b");
  add(in, domain("new", VIR_DOMAIN_RUNNING));
  EXPECT_THAT(needs_owner_view(in), ElementsAre("theirs", "theirs-off"));
  in.owners = {{"theirs", OwnerView::Runs}, {"theirs-off", OwnerView::Defined}};
  auto plan = plan_sync(in);
  EXPECT_THAT(plan.stale, ElementsAre("theirs", "theirs-off"));
  EXPECT_THAT(plan.claim, IsEmpty());
  EXPECT_THAT(plan.create, ElementsAre("new"));
  EXPECT_THAT(plan.update, IsEmpty());
  EXPECT_EQ(plan.mine, (std::set<std::string>{"mine", "new"}));
}

TEST(SyncPlan, WhatWasOursAndWasMovedAwayIsStaleWithoutAsking) {
  auto in = input(true);
  in.owned = {"rebuilt-elsewhere"};
  add(in, domain("rebuilt-elsewhere", VIR_DOMAIN_SHUTOFF), "node-b");
  EXPECT_THAT(needs_owner_view(in), IsEmpty());
  EXPECT_THAT(plan_sync(in).stale, ElementsAre("rebuilt-elsewhere"));
}

// A claim the controller took while this node could not answer may be a lie (a stolen credential
// of the claimer): a copy that still runs here is not removed on the claimer's word.
TEST(SyncPlan, ACopyClaimedAwayWhileThisNodeWasSilentIsRemovedOnlyIfShutOff) {
  auto in = input(false);
  in.owned = {"taken", "migrated", "answered"};
  add(in, domain("taken", VIR_DOMAIN_RUNNING), "node-b");
  add(in, domain("migrated", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_MIGRATED), "node-b");
  add(in, domain("answered", VIR_DOMAIN_RUNNING), "node-b");
  for (const char* u : {"taken", "migrated"}) in.records[u]["claim"] = {{"from", "node-a"}, {"answered", false}};
  in.records["answered"]["claim"] = {{"from", "node-a"}, {"answered", true}};
  EXPECT_THAT(needs_owner_view(in), ElementsAre("taken"));

  in.owners = {{"taken", OwnerView::Runs}};  // the claimer says it runs it: a double, or a lie
  auto plan = plan_sync(in);
  EXPECT_THAT(plan.contested, ElementsAre("taken"));
  EXPECT_THAT(plan.stale, ElementsAre("answered", "migrated"));
  EXPECT_THAT(plan.claim, IsEmpty());
  EXPECT_TRUE(plan.mine.count("taken"));  // still owned: never a copy left behind
  EXPECT_THAT(plan.restart, IsEmpty());

  in.owners = {{"taken", OwnerView::Unknown}};
  EXPECT_THAT(plan_sync(in).contested, ElementsAre("taken"));
  in.owners = {{"taken", OwnerView::Absent}};  // the claimer has no copy: ours is the one
  plan = plan_sync(in);
  EXPECT_THAT(plan.claim, ElementsAre("taken"));
  EXPECT_THAT(plan.contested, IsEmpty());
  EXPECT_TRUE(claimed_unanswered_from(in.records["taken"], "node-a"));
  EXPECT_FALSE(claimed_unanswered_from(in.records["answered"], "node-a"));
  EXPECT_FALSE(claimed_unanswered_from(in.records["taken"], "node-c"));
}

TEST(SyncPlan, TheOnlyCopyIsClaimedWhenItsOwnerDoesNotHaveIt) {
  auto in = input(true);
  add(in, domain("came-while-cut-off", VIR_DOMAIN_RUNNING), "node-b");
  in.owners = {{"came-while-cut-off", OwnerView::Absent}};
  auto plan = plan_sync(in);
  EXPECT_THAT(plan.claim, ElementsAre("came-while-cut-off"));
  EXPECT_THAT(plan.stale, IsEmpty());
  EXPECT_EQ(plan.mine, (std::set<std::string>{"came-while-cut-off"}));
}

TEST(SyncPlan, WithoutAnAnswerOnlyAnArrivalWhileInSyncIsClaimed) {
  auto in = input(false);
  in.seen = {"was-here", "parked"};
  add(in, domain("arrived", VIR_DOMAIN_RUNNING), "node-b");   // came while in sync, runs: landed
  add(in, domain("was-here", VIR_DOMAIN_RUNNING), "node-b");  // here before, never ours: ask again
  add(in, domain("parked", VIR_DOMAIN_SHUTOFF), "node-b");
  add(in, domain("incoming", VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_MIGRATION), "node-b");
  auto plan = plan_sync(in);  // nobody answered
  EXPECT_THAT(plan.claim, ElementsAre("arrived"));
  EXPECT_THAT(plan.stale, IsEmpty());
  EXPECT_THAT(plan.unverified, ElementsAre("parked", "was-here"));
  EXPECT_EQ(plan.mine, (std::set<std::string>{"arrived"}));

  // Right after a start or a reconnect nothing unanswered is taken or removed.
  in.first = true;
  plan = plan_sync(in);
  EXPECT_THAT(plan.claim, IsEmpty());
  EXPECT_THAT(plan.stale, IsEmpty());
  EXPECT_THAT(plan.unverified, ElementsAre("arrived", "parked", "was-here"));
}

TEST(SyncPlan, OwnerUpdatesOnlyWhatChanged) {
  auto in = input(false);
  auto d = domain("a", VIR_DOMAIN_RUNNING);
  add(in, d, "node-a");
  EXPECT_THAT(plan_sync(in).update, IsEmpty());
  in.domains["a"].vcpus = 4;
  EXPECT_THAT(plan_sync(in).update, ElementsAre("a"));
  EXPECT_EQ(owner_changes(in.records["a"], in.domains["a"]), (json{{"vcpus", 4}}));
}

// The node is back and has the VM a rebuild left stranded: its agent writes, so that the record
// desk ends the mark (it never clears it by itself: the desk decides, desk_rules.h).
TEST(SyncPlan, AStrandedVmItsNodeHasAgainIsReportedOnce) {
  auto in = input(false);
  add(in, domain("a", VIR_DOMAIN_RUNNING), "node-a");
  in.records["a"]["stranded"] = {{"node", "node-a"}, {"task", "t1"}, {"since", 5}, {"reason", "local disks"}};
  EXPECT_THAT(plan_sync(in).update, ElementsAre("a"));
  EXPECT_EQ(owner_changes(in.records["a"], in.domains["a"]), (json{{"stranded", nullptr}}));
  in.records["a"].erase("stranded");  // ended by the desk
  EXPECT_THAT(plan_sync(in).update, IsEmpty());
  in.records["a"]["stranded"] = "garbage";  // no mark anyone could read: nothing to report
  EXPECT_THAT(plan_sync(in).update, IsEmpty());
}

TEST(SyncPlan, ADomainAMigrationTookAwayLeavesItsRecordToTheMigration) {
  auto in = input(false);
  add(in, domain("left", VIR_DOMAIN_RUNNING), "node-a");
  add(in, domain("destroyed", VIR_DOMAIN_RUNNING), "node-a");
  in.domains["left"] = domain("left", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_MIGRATED);
  in.domains["destroyed"] = domain("destroyed", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DESTROYED);
  EXPECT_THAT(plan_sync(in).update, ElementsAre("destroyed"));
}

TEST(SyncPlan, AGuestThatShutItselfDownIsToStayStopped) {
  auto d = domain("a", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_SHUTDOWN);
  json record = new_record(domain("a", VIR_DOMAIN_RUNNING), "node-a", 1);
  auto changes = owner_changes(record, d);
  EXPECT_EQ(changes["desired"], "stopped");
  EXPECT_EQ(changes["state"], "shutoff");
  EXPECT_FALSE(needs_restart(record, d));
}

TEST(SyncPlan, SupervisionRestartsWhatStoppedUnasked) {
  auto in = input(false);
  add(in, domain("destroyed", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DESTROYED), "node-a");
  add(in, domain("crashed", VIR_DOMAIN_CRASHED), "node-a");
  add(in, domain("migrated", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_MIGRATED), "node-a");
  add(in, domain("stopped", VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DESTROYED), "node-a", "stopped");
  EXPECT_THAT(plan_sync(in).restart, ElementsAre("crashed", "destroyed"));
  in.may_start = false;  // drained
  EXPECT_THAT(plan_sync(in).restart, IsEmpty());
  in.may_start = true;
  in.supervise = false;
  EXPECT_THAT(plan_sync(in).restart, IsEmpty());
}

TEST(SyncPlan, RecordsWithoutTheirDomainAreMarkedMissingOnce) {
  auto in = input(false);
  in.records["gone"] = new_record(domain("gone", VIR_DOMAIN_RUNNING), "node-a", 1);
  in.records["elsewhere"] = new_record(domain("elsewhere", VIR_DOMAIN_RUNNING), "node-b", 1);
  // Here at the previous sync: it may have just migrated away, its record not moved yet.
  in.seen = {"gone"};
  EXPECT_THAT(plan_sync(in).missing, IsEmpty());
  in.seen.clear();
  EXPECT_THAT(plan_sync(in).missing, ElementsAre("gone"));
  in.records["gone"]["state"] = "missing";
  EXPECT_THAT(plan_sync(in).missing, IsEmpty());
}

TEST(SyncPlan, AutostartIsTurnedOffOnThisNodesDomainsOnly) {
  auto in = input(false);
  Domain mine = domain("mine", VIR_DOMAIN_SHUTOFF), fresh = domain("fresh", VIR_DOMAIN_RUNNING),
         theirs = domain("theirs", VIR_DOMAIN_SHUTOFF), quiet = domain("quiet", VIR_DOMAIN_RUNNING);
  mine.autostart = fresh.autostart = theirs.autostart = true;
  add(in, mine, "node-a");
  add(in, fresh);  // no record yet: recorded here now
  add(in, theirs, "node-b");
  add(in, quiet, "node-a");
  in.owners = {{"theirs", OwnerView::Runs}};
  auto plan = plan_sync(in);
  EXPECT_THAT(plan.autostart_off, ElementsAre("fresh", "mine"));
  EXPECT_THAT(plan.stale, ElementsAre("theirs"));
}

TEST(SyncPlan, ANewRecordStartsAtGenerationOne) {
  auto d = domain("a", VIR_DOMAIN_SHUTOFF);
  d.local_disks = {"/var/lib/images/a.qcow2"};
  json r = new_record(d, "node-a", 7);
  EXPECT_EQ(r["generation"], 1);
  EXPECT_EQ(r["node"], "node-a");
  EXPECT_EQ(r["desired"], "stopped");
  EXPECT_EQ(r["local_disk"], true);
  EXPECT_EQ(r["updated"], 7);
  EXPECT_EQ(r["group"], "");
}

TEST(SyncPlan, ARecordThatNamesNoNodeIsTakenNeverRemoved) {
  auto in = input(true);
  in.domains["a"] = domain("a", VIR_DOMAIN_SHUTOFF);
  in.records["a"] = json{{"node", nullptr}};
  auto plan = plan_sync(in);
  EXPECT_THAT(plan.stale, IsEmpty());
  EXPECT_THAT(plan.claim, ElementsAre("a"));
}

}  // namespace
}  // namespace nodeha::vms
