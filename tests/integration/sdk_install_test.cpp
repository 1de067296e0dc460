// The SDK installs, and a plugin builds out of tree against it with find_package(nodeha), loads
// into the host and answers over NATS.
#include "bus.h"
#include "host_process.h"
#include "nats_server.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace nodeha::test {
namespace {

int sh(const std::string& cmd, const TempDir& dir, const std::string& log) {
  return std::system((cmd + " >>" + dir.file(log) + " 2>&1").c_str());
}

TEST(Sdk, OutOfTreeExamplePluginBuildsLoadsAndAnswers) {
  TempDir dir;
  std::string prefix = dir.file("prefix"), build = dir.file("echo-build");
  ASSERT_EQ(sh("cmake --install " NODEHA_BINARY_DIR " --prefix " + prefix, dir, "install.log"), 0)
      << read_file(dir.file("install.log"));
  ASSERT_TRUE(std::filesystem::exists(prefix + "/include/nodeha/plugin.h"));
  ASSERT_TRUE(std::filesystem::exists(prefix + "/include/nodeha/ids.hpp"));  // the id types plugins parse with
  ASSERT_EQ(sh("cmake -S " NODEHA_SOURCE_DIR "/examples/echo-plugin -B " + build + " -G Ninja -DCMAKE_PREFIX_PATH=" +
                   prefix,
               dir, "build.log"),
            0)
      << read_file(dir.file("build.log"));
  ASSERT_EQ(sh("cmake --build " + build, dir, "build.log"), 0) << read_file(dir.file("build.log"));
  std::string library = build + "/nodeha_echo.so";
  ASSERT_TRUE(std::filesystem::exists(library)) << read_file(dir.file("build.log"));
  // The second example, the first-fit scheduler, builds out of tree the same way.
  std::string ff = dir.file("ff-build");
  ASSERT_EQ(sh("cmake -S " NODEHA_SOURCE_DIR "/examples/first-fit-scheduler -B " + ff + " -G Ninja -DCMAKE_PREFIX_PATH=" +
                   prefix + " && cmake --build " + ff,
               dir, "ff.log"),
            0)
      << read_file(dir.file("ff.log"));
  EXPECT_TRUE(std::filesystem::exists(ff + "/nodeha_first_fit.so"));

  NatsServer nats;
  HostProcess host("[host]\nrole = \"agent\"\nnode_id = \"node-x\"\n[nats]\nservers = [\"" + nats.url() +
                   "\"]\n[metrics]\nlisten = \"127.0.0.1:0\"\n[[plugin]]\nlibrary = \"" + library +
                   "\"\nsubject = \"oot.echo\"\nreply_prefix = \"out-of-tree:\"\n");
  ASSERT_TRUE(host.wait_ready()) << host.log();
  auto bus = nats.client();
  ASSERT_TRUE(bus);
  std::string answer;
  EXPECT_TRUE(wait_until([&] {
    auto r = bus->request("oot.echo", "hi", 500ms);
    if (r) answer = r.value();
    return r.is_ok();
  })) << host.log();
  EXPECT_EQ(answer, "out-of-tree:hi");
  EXPECT_EQ(host.metric("nodeha_echo_requests_total{instance=\"echo\"}"), 1);
}

}  // namespace
}  // namespace nodeha::test
