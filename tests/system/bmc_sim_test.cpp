// The BMC simulator (tests/support/bmc_sim.h) where the system tests put it: inside a node's
// namespace on its management address, reached from the controller's namespace over the
// management bridge, as the fence_ipmi plugin reaches a node's BMC. Power off runs the test's
// command; nothing of the simulator outlives it.
#include "bmc_sim.h"
#include "netns.h"

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>

namespace nodeha::test {
namespace {

TEST(BmcSim, InANodesNamespacePoweredOffFromTheControllers) {
  TestNetwork net(1);
  ASSERT_TRUE(net.ready()) << net.error();
  TempDir dir;
  pid_t machine = 0;
  {
    BmcSim bmc({.netns = net.node_ns(1), .address = net.node_address(1, Network::kManagement), .port = 623,
                .on_power_off = "touch " + dir.file("powered-off")});
    ASSERT_TRUE(bmc.ok()) << bmc.error();
    EXPECT_EQ(bmc.power_status(), true);
    machine = bmc.machine_pid();
    ASSERT_NE(machine, 0);

    Process off(TestNetwork::argv_in(net.controller_ns(), {"ipmitool", "-I", "lanplus", "-C", "3", "-H", bmc.address(),
                                                           "-p", "623", "-U", "admin", "-f", bmc.password_file(),
                                                           "chassis", "power", "off"}),
                dir.file("ipmitool.log"));
    EXPECT_EQ(off.wait_exit(10s), 0) << off.output();
    EXPECT_TRUE(wait_until([&] { return bmc.power_status() == false; }, 5s)) << bmc.log();
    EXPECT_EQ(bmc.machine_pid(), 0);
    EXPECT_TRUE(std::filesystem::exists(dir.file("powered-off")));

    ASSERT_TRUE(bmc.power_on()) << bmc.log();
    EXPECT_NE(bmc.machine_pid(), machine);
    machine = bmc.machine_pid();
  }
  // The destructor took the running machine with it.
  EXPECT_NE(kill(machine, 0), 0);
}

}  // namespace
}  // namespace nodeha::test
