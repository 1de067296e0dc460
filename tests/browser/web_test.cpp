// The web page (web/) in Debian's headless Chromium against a real cluster: nats-server with TLS,
// nkey users and its websocket listener, a controller serving the page over HTTPS, agents on the
// libvirt test driver (web_cluster.h). Assertions follow the page's DOM contract
// (docs/operations.md "The web page"). Figures are printed as "figure: ...".
#include "alert_stack.h"
#include "credential.h"
#include "nkey.h"
#include "node_record.h"
#include "web_cluster.h"

#include <chrono>
#include <iostream>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The public nkey of `identity`, as nats-server's log names it.
std::string nkey_of(const BusSecurity& security, const std::string& identity) {
  auto cred = auth::parse_credential(read_file(security.credential(identity)));
  auto key = cred ? auth::public_key_of_seed(cred->seed) : Result<std::string>(cred.status());
  return key ? key.value() : "(no key: " + key.status().message() + ")";
}

std::string row(const std::string& node) { return "tr[data-node=\"" + node + "\"]"; }

TEST_F(WebCluster, NodesShowBothStatesReasonHeartbeatAndLockAndChangeLive) {
  start_controller();
  start_agent("node-1", vms_of(1, 2));
  start_agent("node-2", vms_of(2, 1));
  ASSERT_TRUE(sign_in("alice"));
  for (std::string node : {"node-1", "node-2"}) {
    ASSERT_TRUE(browser_->wait_for("document.querySelector('" + row(node) + " td[data-field=monitor]')?.textContent.includes('normal')"))
        << node << ": " << browser_->eval("document.querySelector('#nodes')?.outerHTML");
    EXPECT_THAT(node_cell(node, "management"), HasSubstr("enabled"));
    for (std::string field : {"reason", "lock"})
      EXPECT_EQ(browser_->eval("!!document.querySelector('" + row(node) + " td[data-field=" + field + "]')"), true) << field;
    std::string age = node_cell(node, "heartbeat");
    EXPECT_TRUE(!age.empty() && std::isdigit(static_cast<unsigned char>(age[0]))) << "heartbeat age: \"" << age << "\"";
  }
  EXPECT_EQ(browser_->eval("document.body.dataset.role"), "admin");

  // The time the cell changes, taken in the page, against the time the record was written.
  browser_->eval(
      "window.__disabledAt = 0; new MutationObserver(() => { const c = document.querySelector('" + row("node-2") +
      " td[data-field=management]'); if (!window.__disabledAt && c && c.textContent.includes('disabled')) "
      "window.__disabledAt = Date.now(); }).observe(document.body, {subtree: true, childList: true, characterData: true}); true");
  auto disable = cli("alice", {"node", "disable", "node-2", "--yes"});
  ASSERT_EQ(disable.status, 0) << disable.out << disable.err;
  auto written = bus_->kv_get("nodes", "node-2");
  ASSERT_TRUE(written) << written.status().message();
  ASSERT_THAT(written->value, HasSubstr("\"disabled\"")) << "the disable's own revision, to time from";
  ASSERT_TRUE(browser_->wait_for("window.__disabledAt > 0", 5s)) << node_cell("node-2", "management");
  double delay_ms = browser_->eval("window.__disabledAt").get<double>() - written->created_unix_ns / 1e6;
  std::cout << "figure: node disable shown on the page " << delay_ms << " ms after the record was written" << std::endl;
  EXPECT_LT(delay_ms, 1000);
  EXPECT_EQ(browser_->eval("location.hash.includes('seed=')"), false) << "the seed stays in the address bar";

  // An agent that stops: its node turns unreachable on the page, without a reload.
  browser_->eval("window.__loaded = performance.timeOrigin; true");
  agents_["node-1"]->process().signal(SIGKILL);
  EXPECT_TRUE(browser_->wait_for("!document.querySelector('" + row("node-1") + " td[data-field=monitor]')?.textContent.includes('normal')", 15s))
      << node_cell("node-1", "monitor");
  EXPECT_EQ(browser_->eval("window.__loaded === performance.timeOrigin"), true);
}

TEST_F(WebCluster, AnAdminDrainsANodeFromThePage) {
  start_controller();
  start_agent("node-1", vms_of(1, 2));
  start_agent("node-2", {});
  start_agent("node-3", {});
  ASSERT_TRUE(sign_in("alice"));
  ASSERT_TRUE(browser_->wait_for("document.body.dataset.role === 'admin'"));
  ASSERT_TRUE(browser_->wait_for("document.querySelectorAll('tr[data-vm]').length >= 2"));
  ASSERT_TRUE(browser_->click(row("node-1")));
  ASSERT_TRUE(browser_->wait_for("document.querySelector('#node-detail')?.dataset.node === 'node-1' && "
                                 "document.querySelector('#node-detail button[data-action=drain]')"));
  ASSERT_TRUE(browser_->click("#node-detail button[data-action=drain]"));
  ASSERT_TRUE(browser_->wait_for("document.querySelectorAll('#plan tr[data-vm]').length === 2"))
      << browser_->eval("document.querySelector('#plan')?.outerHTML");
  EXPECT_THAT(node_cell("node-1", "management"), HasSubstr("enabled")) << "the dry run changed nothing";
  ASSERT_TRUE(browser_->click("#plan-confirm"));
  ASSERT_TRUE(browser_->wait_for("document.querySelector('#action-result')?.dataset.ok === 'true'"))
      << browser_->eval("document.querySelector('#action-result')?.outerHTML");
  ASSERT_TRUE(browser_->wait_for("[...document.querySelectorAll('tr[data-task]')].some(r => "
                                 "r.querySelector('td[data-field=kind]')?.textContent.includes('drain') && "
                                 "r.querySelector('td[data-field=state]')?.textContent.includes('succeeded'))", 60s))
      << browser_->eval("document.querySelector('#tasks')?.outerHTML");
  EXPECT_TRUE(browser_->wait_for("document.querySelector('" + row("node-1") +
                                 " td[data-field=management]')?.textContent.includes('drained')"));
  // A finished task reads "done/total" with done = total; a drain stops the node's VMs.
  std::string progress = browser_->text("tr[data-task] td[data-field=progress]");
  size_t slash = progress.find('/');
  ASSERT_NE(slash, std::string::npos) << progress;
  EXPECT_EQ(progress.substr(0, slash), progress.substr(slash + 1)) << progress;
  EXPECT_NE(progress.substr(0, slash), "0") << progress;
  for (const auto& vm : vms_of(1, 2))
    EXPECT_TRUE(browser_->wait_for("document.querySelector('tr[data-vm=\"" + vm.uuid +
                                   "\"] td[data-field=state]')?.textContent.includes('shutoff')"))
        << vm.uuid;
  // The node's history has the change; the task's steps show on a click, every one succeeded.
  EXPECT_TRUE(browser_->wait_for("document.querySelector('#node-detail ol#history > li[data-event=management]')"))
      << browser_->eval("document.querySelector('#history')?.outerHTML");
  ASSERT_TRUE(browser_->click("tr[data-task]"));
  EXPECT_TRUE(browser_->wait_for("document.querySelectorAll('#task-detail li[data-step]').length > 0 && "
                                 "[...document.querySelectorAll('#task-detail li[data-step]')].every(l => l.dataset.state === 'succeeded')"))
      << browser_->eval("document.querySelector('#task-detail')?.outerHTML");
}

TEST_F(WebCluster, AViewerSeesNoAdminButtonsAndTheServerRefusesItsCommands) {
  start_controller();
  start_agent("node-1", {});
  ASSERT_TRUE(sign_in("bob"));
  ASSERT_TRUE(browser_->wait_for("document.body.dataset.role === 'viewer'"));
  ASSERT_TRUE(browser_->wait_for("document.querySelector('" + row("node-1") + "')"));
  ASSERT_TRUE(browser_->click(row("node-1")));
  ASSERT_TRUE(browser_->wait_for("document.querySelector('#node-detail')?.dataset.node === 'node-1'"));
  EXPECT_EQ(browser_->eval("document.querySelectorAll('button[data-action]').length"), 0);
  // The page found out by sending a command, which nats-server refused: bob may not publish it.
  EXPECT_TRUE(wait_until([&] { return nats_->log().find("Publish Violation - Nkey \"" + nkey_of(*security_, "bob") + "\", Subject \"nodeha.cmd.node.disable\"") != std::string::npos; }))
      << nats_->log();
  // A drain sent anyway, from the page's own NATS client logged in as bob: refused by the server.
  auto cred = auth::parse_credential(read_file(security_->credential("bob")));
  ASSERT_TRUE(cred);
  json refused = browser_->eval(
      "(async () => { const c = new nodeha.NatsClient({servers: ['wss://127.0.0.1:" + std::to_string(ws_port_) +
      "'], user: 'bob', seed: " + json(cred->seed).dump() + "}); await c.connect(); "
      "try { await c.request('nodeha.cmd.node.drain', JSON.stringify({node: 'node-1'}), {timeout: 5000}); return 'sent'; } "
      "catch (e) { return e.code; } finally { c.close(); } })()");
  EXPECT_EQ(refused, "permission_denied");
  EXPECT_THAT(nats_->log(), HasSubstr("Nkey \"" + nkey_of(*security_, "bob") + "\", Subject \"nodeha.cmd.node.drain\""));
  EXPECT_THAT(node_cell("node-1", "management"), HasSubstr("enabled"));
  EXPECT_EQ(browser_->eval("document.querySelectorAll('tr[data-task]').length"), 0);
}

TEST_F(WebCluster, AThousandNodesAndTenThousandVmsArePagedAndFiltered) {
  start_controller("", "[[plugin]]\nlibrary = \"tasks\"\n[[plugin]]\nlibrary = \"vms\"\n");
  int64_t now = now_ms();
  for (int n = 0; n < 1000; ++n) {
    heartbeat::NodeState s;
    s.id = "scale-" + std::to_string(1000 + n);
    s.monitor = n % 10 == 0 ? heartbeat::MonitorState::Unreachable : heartbeat::MonitorState::Normal;
    s.reason = n % 10 == 0 ? "no heartbeat for 3.0 s" : "";
    ASSERT_TRUE(bus_->kv_put("nodes", s.id, heartbeat::merge_record(nullptr, heartbeat::monitor_fields(s, now)).dump()));
  }
  for (int v = 0; v < 10000; ++v) {
    char uuid[40];
    std::snprintf(uuid, sizeof uuid, "5ca1e000-0000-4000-8000-%012d", v);
    json vm = {{"uuid", uuid}, {"name", "vm-" + std::to_string(v)}, {"node", "scale-" + std::to_string(1000 + v % 1000)},
               {"generation", 1}, {"state", "running"}, {"desired", "running"}};
    ASSERT_TRUE(bus_->kv_put("vms", uuid, vm.dump()));
  }
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(sign_in("bob"));
  ASSERT_TRUE(browser_->wait_for("document.querySelector('#vms-page-info')?.textContent.includes('of 10000') && "
                                 "document.querySelector('#nodes-page-info')?.textContent.includes('of 1000')", 60s))
      << browser_->text("#vms-page-info") << " / " << browser_->text("#nodes-page-info");
  auto first_render = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  std::cout << "figure: 1,000 nodes and 10,000 VMs rendered " << first_render.count()
            << " ms after the page was opened (sign-in included)" << std::endl;
  EXPECT_THAT(browser_->text("#vms-page-info"), HasSubstr("1-100 of 10000"));
  EXPECT_LE(browser_->eval("document.querySelectorAll('tr[data-vm]').length").get<int>(), 100);
  EXPECT_LE(browser_->eval("document.querySelectorAll('tr[data-node]').length").get<int>(), 100);
  ASSERT_TRUE(browser_->click("#vms-next"));
  EXPECT_TRUE(browser_->wait_for("document.querySelector('#vms-page-info').textContent.includes('101-200')"))
      << browser_->text("#vms-page-info");
  ASSERT_TRUE(browser_->fill("#vms-filter", "vm-4242"));
  EXPECT_TRUE(browser_->wait_for("document.querySelector('tr[data-vm=\"5ca1e000-0000-4000-8000-000000004242\"]') && "
                                 "document.querySelectorAll('tr[data-vm]').length === 1"))
      << browser_->text("#vms-page-info");
  ASSERT_TRUE(browser_->fill("#nodes-filter", "scale-1999"));
  EXPECT_TRUE(browser_->wait_for("document.querySelectorAll('tr[data-node]').length === 1"));
}

TEST_F(WebCluster, FiringAlertsFromTheAlertmanagerAppear) {
  AlertStack stack({});
  ASSERT_TRUE(stack.ready()) << stack.error();
  std::string am = "http://" + stack.alertmanager_address();
  Process post({"curl", "-sS", "-f", "-XPOST", "-H", "Content-Type: application/json", am + "/api/v2/alerts", "-d",
                R"([{"labels":{"alertname":"NodehaNodeDown","node":"node-2","severity":"critical"},)"
                R"("annotations":{"summary":"node-2 is down"}}])"},
               dir_.file("post.out"));
  ASSERT_EQ(post.wait_exit(10s), 0) << post.output();
  start_controller("alertmanager = \"" + am + "\"\n");
  ASSERT_TRUE(sign_in("bob"));
  ASSERT_TRUE(browser_->wait_for("document.querySelector('#alerts li[data-alert=NodehaNodeDown]')?.textContent.includes('node-2')", 15s))
      << browser_->eval("document.querySelector('#alerts')?.outerHTML");
}

}  // namespace
}  // namespace nodeha::test
