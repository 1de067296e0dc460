#include "web_cluster.h"

#include "credential.h"

#include <iostream>

namespace nodeha::test {

void WebCluster::SetUp() {
  ws_port_ = free_port();
  web_port_ = free_port();
  security_ = std::make_unique<BusSecurity>(
      dir_.file("bus"), BusIdentities{.nodes = {"node-1", "node-2", "node-3"}, .controllers = {"ctl"},
                                      .admins = {"alice"}, .viewers = {"bob"}, .websocket_port = ws_port_});
  ASSERT_TRUE(security_->ok()) << security_->error();
  NatsServerOptions o;
  o.include = security_->server_config();
  nats_ = std::make_unique<NatsServer>(o);
  ASSERT_THAT(nats_->log(), ::testing::HasSubstr("Listening for websocket clients on wss://"));
  auto bus = host::Bus::create(security_->settings(nats_->settings(), "ctl"), "web-test", nullptr);
  ASSERT_TRUE(bus) << bus.status().message();
  bus_ = std::move(bus.value());
  ASSERT_TRUE(bus_->wait_connected(5s));
  nodes_ = std::make_unique<NodeFiles>(dir_);
  browser_ = std::make_unique<Browser>(BrowserOptions{.trusted_spki = {spki_pin(dir_.file("bus/server-cert.pem"))}});
  ASSERT_TRUE(browser_->ok()) << browser_->error();
}

void WebCluster::TearDown() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  if (browser_ && browser_->ok()) {
    browser_->screenshot(std::string(info->test_suite_name()) + "." + info->name());
    if (HasFailure()) std::cerr << "page console:\n" << browser_->console();
  }
  if (HasFailure() && controller_) std::cerr << "controller log:\n" << controller_->log();
  if (HasFailure() && nats_) std::cerr << "nats-server log (tail):\n" << nats_->log().substr(nats_->log().size() > 4000 ? nats_->log().size() - 4000 : 0);
  browser_.reset();
}

std::string WebCluster::secured(std::string tables, const std::string& identity) const {
  size_t at = tables.find("[nats]\n") + 7;
  return tables.insert(at, security_->host_keys(identity));
}

const std::string WebCluster::kClusterPlugins =
    "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 2\nping_timeout = \"300ms\"\n"
    "[[plugin]]\nlibrary = \"scheduler\"\nreserve_vcpus = 0\nreserve_memory_mib = 0\ncpu_ratio = 32.0\n"
    "[[plugin]]\nlibrary = \"tasks\"\n"
    "[[plugin]]\nlibrary = \"vms\"\n"
    "[[plugin]]\nlibrary = \"drain\"\nstop_timeout = \"0s\"\nretry_every = \"300ms\"\n"
    "[[plugin]]\nlibrary = \"migrate\"\n";

void WebCluster::start_controller(const std::string& web_extra, const std::string& plugin_tables) {
  std::string web = "[[plugin]]\nlibrary = \"web\"\nlisten = \"127.0.0.1:" + std::to_string(web_port_) +
                    "\"\ntls_cert = \"" + dir_.file("bus/server-cert.pem") + "\"\ntls_key = \"" +
                    dir_.file("bus/server-key.pem") + "\"\nfiles = \"" NODEHA_SOURCE_DIR "/web\"\n" +
                    "servers = [\"wss://127.0.0.1:" + std::to_string(ws_port_) + "\"]\n" + web_extra;
  controller_ = std::make_unique<HostProcess>(
      secured(host_tables("controller", "ctl", nats_->url()), "ctl") + plugin_tables + web);
  ASSERT_TRUE(controller_->wait_ready()) << controller_->log();
}

void WebCluster::start_agent(const std::string& node, const std::vector<Vm>& vms) {
  auto a = std::make_unique<HostProcess>(secured(test_agent_config(node, nodes_->path(node, vms), {nats_->url()}), node));
  ASSERT_TRUE(a->wait_ready()) << a->log();
  agents_[node] = std::move(a);
}

::testing::AssertionResult WebCluster::sign_in(const std::string& identity) {
  auto cred = auth::parse_credential(read_file(security_->credential(identity)));
  if (!cred) return ::testing::AssertionFailure() << cred.status().message();
  std::string url = "https://127.0.0.1:" + std::to_string(web_port_) + "/#servers=wss://127.0.0.1:" +
                    std::to_string(ws_port_) + "&user=" + identity + "&seed=" + cred->seed + "&connect=1";
  if (!browser_->open(url)) return ::testing::AssertionFailure() << browser_->error();
  if (!browser_->wait_for("document.querySelector('#status')?.dataset.state === 'connected'", 15s))
    return ::testing::AssertionFailure() << "not connected: #status " << browser_->eval(
               "(() => { const s = document.querySelector('#status'); return s ? s.dataset.state + ': ' + s.textContent : 'missing'; })()")
                                         << "\nconsole:\n" << browser_->console();
  return ::testing::AssertionSuccess();
}

CliRun WebCluster::cli(const std::string& identity, std::vector<std::string> args) {
  std::vector<std::string> argv = {"--server", nats_->url()};
  for (const auto& a : security_->cli_args(identity)) argv.push_back(a);
  argv.insert(argv.end(), args.begin(), args.end());
  return run_cli(argv, dir_);
}

std::string WebCluster::node_cell(const std::string& node, const std::string& field) {
  return browser_->text("tr[data-node=\"" + node + "\"] td[data-field=" + field + "]");
}

}  // namespace nodeha::test
