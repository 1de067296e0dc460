// The web page's test cluster: a nats-server with TLS, nkey users from `nodeha auth init` (the
// real CLI, as BusAuth does) and its websocket listener; a controller (heartbeat, scheduler,
// tasks, vms, drain, migrate) with the `web` plugin over HTTPS serving the source tree's web/;
// agents on the libvirt test driver; and a headless Chromium that trusts exactly the servers'
// certificate (its SPKI pinned). Each test's final page is kept as a screenshot.
#pragma once

#include "browser.h"
#include "bus_security.h"
#include "cli_run.h"
#include "host_process.h"
#include "nats_server.h"
#include "test_nodes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace nodeha::test {

class WebCluster : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A host config's tables logged in as `identity` over TLS.
  std::string secured(std::string tables, const std::string& identity) const;
  // Starts the controller: the web plugin (`web_extra`: more keys of its table) after
  // `plugin_tables` (default: heartbeat, scheduler, tasks, vms, drain, migrate).
  void start_controller(const std::string& web_extra = "", const std::string& plugin_tables = kClusterPlugins);
  static const std::string kClusterPlugins;
  // Starts agent `node` with `vms` (test_nodes.h).
  void start_agent(const std::string& node, const std::vector<Vm>& vms);
  // The page signed in as `identity` through the hash parameters; waits until #status says
  // connected. False (with the page's status and console) otherwise.
  ::testing::AssertionResult sign_in(const std::string& identity);
  // `nodeha args...` as `identity`.
  CliRun cli(const std::string& identity, std::vector<std::string> args);
  // The text of node `node`'s cell `field`.
  std::string node_cell(const std::string& node, const std::string& field);

  TempDir dir_;
  int ws_port_ = 0, web_port_ = 0;
  std::unique_ptr<BusSecurity> security_;
  std::unique_ptr<NatsServer> nats_;
  std::unique_ptr<host::Bus> bus_;  // the test's own client, logged in as the controller
  std::unique_ptr<NodeFiles> nodes_;
  std::unique_ptr<HostProcess> controller_;
  std::map<std::string, std::unique_ptr<HostProcess>> agents_;
  std::unique_ptr<Browser> browser_;
};

}  // namespace nodeha::test
