// `nodeha local drain|migrate`, the built binary against a real nodeha-host (agent, no NATS at
// all) whose local.drain/local.migrate are served by a TEST DOUBLE (fixtures/local_ops_double.cpp):
// canned replies of the documented shapes, so that what is tested here is the CLI: the requests
// it sends, dry run against --confirm, its tables, --json, and the exit codes 0/1/2/3.
#include "cli_run.h"
#include "host_process.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;

// No server listens on the NATS port: the node-local path must not need it.
std::string agent(const std::string& plugins) {
  return "[host]\nrole = \"agent\"\nnode_id = \"node-a\"\nplugin_path = [\"{fixtures}\"]\n"
         "[nats]\nservers = [\"nats://127.0.0.1:" + std::to_string(free_port()) + "\"]\nconnect_timeout = \"200ms\"\nreconnect_wait = \"100ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:0\"\n[libvirt]\nuri = \"test:///default\"\n\n" + plugins;
}

class CliLocal : public ::testing::Test {
 protected:
  void SetUp() override {
    host_ = std::make_unique<HostProcess>(agent("[[plugin]]\nlibrary = \"local_ops_double\"\n"));
    ASSERT_TRUE(host_->wait_ready()) << host_->log();
    socket_ = host_->dir().file("state/local.sock");
    // Served once the plugin has started, just after the host is ready.
    ASSERT_TRUE(wait_until([&] { return run({"local", "drain"}).status != 3; })) << host_->log();
  }

  // Runs `nodeha --socket <the agent's> args...` to the end.
  CliRun run(std::vector<std::string> args, bool with_socket = true) {
    if (with_socket) args.insert(args.begin(), {"--socket", socket_});
    return run_cli(args, dir_, 30s);
  }

  std::unique_ptr<HostProcess> host_;
  std::string socket_;
  TempDir dir_;
};

const std::vector<std::string> kMigrateAll{"local", "migrate", "--interface", "eth1", "--dest", "10.0.0.3", "--all"};

std::vector<std::string> with(std::vector<std::string> args, std::initializer_list<std::string> more) {
  args.insert(args.end(), more);
  return args;
}

TEST_F(CliLocal, DrainDryRunShowsThePlanAndHowToConfirm) {
  auto r = run({"local", "drain"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("DRY RUN: would stop 2 VMs:"));
  EXPECT_THAT(r.out, HasSubstr("VM                                    NAME   ACTION"));
  EXPECT_THAT(r.out, HasSubstr("7d1f0c3e-0000-4000-8000-000000000002  db-1   stop"));
  EXPECT_THAT(r.out, HasSubstr("--confirm"));
}

TEST_F(CliLocal, DrainConfirmedPrintsEachVmAndTheJournalTask) {
  auto r = run({"local", "drain", "--confirm"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("drain: succeeded (2 succeeded, 0 failed, 0 skipped)"));
  EXPECT_THAT(r.out, HasSubstr("RESULT     DURATION  ERROR"));
  EXPECT_THAT(r.out, HasSubstr("web-1  succeeded  1.5s"));
  EXPECT_THAT(r.out, HasSubstr("Journal task 00000000000000d1"));
  EXPECT_THAT(r.out, Not(HasSubstr("DRY RUN")));
}

TEST_F(CliLocal, DrainWithAVmThatFailedExits1) {
  auto r = run({"local", "drain", "--confirm", "--timeout-vm", "1"});  // the double fails db-1 at 1000 ms
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr("drain: partial (1 succeeded, 1 failed, 0 skipped)"));
  EXPECT_THAT(r.out, HasSubstr("db-1   failed     1.5s      did not stop within 1s; destroy failed"));
}

TEST_F(CliLocal, MigrateDryRunShowsDestinationsAndWhatIsSkipped) {
  auto r = run(kMigrateAll);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("DRY RUN: would migrate 1 VM to 10.0.0.3 over eth1 (1 skipped):"));
  EXPECT_THAT(r.out, HasSubstr("NAME   DESTINATION  ACTION   REASON"));
  EXPECT_THAT(r.out, HasSubstr("db-1   10.0.0.3     skip     has local disks"));
  auto disks = run(with(kMigrateAll, {"--with-local-disks"}));
  EXPECT_EQ(disks.status, 0) << disks.err;
  EXPECT_THAT(disks.out, HasSubstr("DRY RUN: would migrate 2 VMs to 10.0.0.3 over eth1:"));
  auto one = run({"local", "migrate", "--interface", "eth1", "--dest", "10.0.0.3", "--vm", "web-1"});
  EXPECT_EQ(one.status, 0) << one.err;
  EXPECT_THAT(one.out, HasSubstr("would migrate 1 VM to"));
  EXPECT_THAT(one.out, Not(HasSubstr("db-1")));
}

TEST_F(CliLocal, MigrateConfirmedSucceedsOrExits1WhenAMigrationFailed) {
  auto ok = run(with(kMigrateAll, {"--confirm"}));
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("migrate to 10.0.0.3 over eth1: succeeded (1 succeeded, 0 failed, 1 skipped)"));
  // What each migration moved: the memory alone without a disk; with one, the disk apart.
  EXPECT_THAT(ok.out, HasSubstr("RESULT     DURATION  MOVED          ERROR"));
  EXPECT_THAT(ok.out, HasSubstr("web-1  10.0.0.3     succeeded  1.5s      mem 64/64 MiB  -"));
  EXPECT_THAT(ok.out, HasSubstr("db-1   10.0.0.3     skipped    -         -              has local disks"));
  auto disks = run(with(kMigrateAll, {"--with-local-disks", "--confirm"}));
  EXPECT_EQ(disks.status, 0) << disks.err;
  EXPECT_THAT(disks.out, HasSubstr("db-1   10.0.0.3     succeeded  1.5s      disk 256/256 MiB · mem 64/64 MiB  -"));

  auto failed = run({"local", "migrate", "--interface", "eth1", "--dest", "10.9.9.9", "--all", "--confirm"});
  EXPECT_EQ(failed.status, 1) << failed.err;
  EXPECT_THAT(failed.out, HasSubstr("failed (0 succeeded, 1 failed, 1 skipped)"));
  EXPECT_THAT(failed.out, HasSubstr("unable to connect to 10.9.9.9: Connection refused"));
  EXPECT_THAT(failed.out, HasSubstr("Journal task 00000000000000e1"));
}

TEST_F(CliLocal, RefusedRequestsAndUsageErrorsExit2) {
  auto unknown = run({"local", "migrate", "--interface", "eth1", "--dest", "10.0.0.3", "--vm", "no-such-vm"});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_THAT(unknown.err, HasSubstr("refused (unknown_vm): \"no-such-vm\" is not on this node"));
  auto which = run({"local", "migrate", "--interface", "eth1", "--dest", "10.0.0.3"});
  EXPECT_EQ(which.status, 2);
  EXPECT_THAT(which.err, HasSubstr("--all, or --vm UUID"));
  EXPECT_EQ(run({"local", "migrate", "--interface", "eth1", "--all"}).status, 2);  // no --dest
  EXPECT_EQ(run(with(kMigrateAll, {"--vm", "web-1"})).status, 2);               // --all and --vm
  EXPECT_EQ(run({"--timeout", "soon", "local", "drain"}).status, 2);
  EXPECT_EQ(run({"local"}).status, 2);
}

TEST_F(CliLocal, UnreachableAgentExits3WithAdvice) {
  auto r = run({"--socket", dir_.file("nowhere.sock"), "local", "drain"}, false);
  EXPECT_EQ(r.status, 3);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the local agent at " + dir_.file("nowhere.sock") +
                               ": No such file or directory; is nodeha-host (agent) running on this node? "
                               "(--socket or NODEHA_LOCAL_SOCKET to point elsewhere)"));
  // An agent without the plugin that serves it.
  HostProcess bare(agent("[[plugin]]\nlibrary = \"local_echo\"\n"));
  ASSERT_TRUE(bare.wait_ready()) << bare.log();
  auto unserved = run({"--socket", bare.dir().file("state/local.sock"), "local", "drain"}, false);
  EXPECT_EQ(unserved.status, 3) << unserved.err;
  EXPECT_THAT(unserved.err, HasSubstr("does not serve local.drain: is the vms plugin in its config?"));
}

TEST_F(CliLocal, SocketFromTheEnvironment) {
  setenv("NODEHA_LOCAL_SOCKET", socket_.c_str(), 1);
  auto r = run({"local", "drain"}, false);
  unsetenv("NODEHA_LOCAL_SOCKET");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("DRY RUN"));
}

TEST_F(CliLocal, JsonPrintsTheResultOrTheErrorAsOneDocument) {
  auto plan = run({"--json", "local", "drain"});
  EXPECT_EQ(plan.status, 0) << plan.err;
  auto p = json::parse(plan.out);
  ASSERT_EQ(p["plan"].size(), 2u);
  EXPECT_EQ(p["plan"][0]["action"], "stop");

  auto failed = run({"local", "migrate", "--interface", "eth1", "--dest", "10.9.9.9", "--all", "--confirm", "--json"});
  EXPECT_EQ(failed.status, 1) << failed.err;
  auto f = json::parse(failed.out);
  EXPECT_EQ(f["task"], "00000000000000e1");
  EXPECT_EQ(f["state"], "failed");
  EXPECT_EQ(f["steps"][0]["state"], "failed");

  auto refused = run({"--json", "local", "migrate", "--interface", "eth1", "--dest", "10.0.0.3", "--vm", "nope"});
  EXPECT_EQ(refused.status, 2);
  EXPECT_EQ(json::parse(refused.out)["error"]["code"], "unknown_vm");

  auto unreachable = run({"--json", "--socket", dir_.file("nowhere.sock"), "local", "drain"}, false);
  EXPECT_EQ(unreachable.status, 3);
  EXPECT_EQ(json::parse(unreachable.out)["error"]["code"], "unreachable");
}

TEST_F(CliLocal, NoAnswerInTimeExits1) {
  // The double never answers a drain with a 999 s VM timeout; the CLI gives up after 1 s.
  auto r = run({"--timeout", "1s", "local", "drain", "--confirm", "--timeout-vm", "999"});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("no answer within 1.0s (--timeout); the drain may still be running"));
}

}  // namespace
}  // namespace nodeha::test
