// The `web` plugin in a real nodeha-host (controller role, real nats-server): the page's fixed
// files, /config.json, the security headers; hostile HTTP (other methods, traversal, garbage,
// oversized headers, a body, a silent client) answered and survived; HTTPS only when a
// certificate is set; /api/alerts from a real Alertmanager, and 502 when it is gone. The page
// in a browser: tests/browser/web_test.cpp.
#include "alert_stack.h"
#include "cli_run.h"
#include "host_process.h"
#include "nats_server.h"
#include "process.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

// Sends `bytes` on a new connection to 127.0.0.1:port and reads until the server closes or
// `timeout` passes; what came back.
std::string http_exchange(int port, const std::string& bytes, std::chrono::milliseconds timeout = 5s) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return "";
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (!bytes.empty()) (void)!write(fd, bytes.data(), bytes.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, n);
  close(fd);
  return out;
}

std::string get(int port, const std::string& path) {
  return http_exchange(port, "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
}

std::string body_of(const std::string& response) {
  size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

class WebPlugin : public ::testing::Test {
 protected:
  void SetUp() override {
    files_.write("index.html", "<!doctype html><title>nodeha</title><script src=app.js></script>");
    files_.write("app.js", "console.log('page');");
    files_.write("style.css", "body{}");
    files_.write("extra.js", "// another script of the page");
    files_.write("notes.txt", "not a page file");
    port_ = free_port();
  }
  void start(const std::string& extra = "") {
    host_ = std::make_unique<HostProcess>(host_tables("controller", "ctl", nats_.url()) +
                                          "[[plugin]]\nlibrary = \"web\"\nlisten = \"127.0.0.1:" + std::to_string(port_) +
                                          "\"\nfiles = \"" + files_.path() +
                                          "\"\nservers = [\"wss://127.0.0.1:4443\"]\n" + extra);
    ASSERT_TRUE(host_->wait_ready()) << host_->log();
  }
  NatsServer nats_;
  TempDir files_;
  int port_ = 0;
  std::unique_ptr<HostProcess> host_;
};

TEST_F(WebPlugin, ServesThePageItsConfigAndSecurityHeaders) {
  start();
  std::string index = get(port_, "/");
  EXPECT_THAT(index, HasSubstr("HTTP/1.1 200"));
  EXPECT_THAT(index, HasSubstr("<title>nodeha</title>"));
  EXPECT_THAT(index, HasSubstr("Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:"));
  EXPECT_THAT(index, HasSubstr("X-Content-Type-Options: nosniff"));
  EXPECT_THAT(index, HasSubstr("Content-Type: text/html"));
  EXPECT_THAT(get(port_, "/app.js?v=1"), HasSubstr("Content-Type: text/javascript"));
  EXPECT_THAT(get(port_, "/style.css"), HasSubstr("body{}"));
  EXPECT_THAT(get(port_, "/extra.js"), HasSubstr("another script"));
  EXPECT_THAT(get(port_, "/notes.txt"), HasSubstr("HTTP/1.1 404"));
  std::string config = get(port_, "/config.json");
  EXPECT_THAT(config, HasSubstr("Cache-Control: no-store"));
  EXPECT_EQ(json::parse(body_of(config)),
            (json{{"servers", {"wss://127.0.0.1:4443"}}, {"prefix", "nodeha"}, {"alerts", false}}));
  std::string head = http_exchange(port_, "HEAD /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(head, HasSubstr("Content-Length: 20"));
  EXPECT_EQ(body_of(head), "");
  EXPECT_THAT(host_->log(), HasSubstr("serving the web page on http://127.0.0.1:" + std::to_string(port_)));
}

TEST_F(WebPlugin, HostileRequestsGetAnErrorAndTheServerGoesOn) {
  start();
  for (std::string path : {"/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/index.html/../app.js", "//etc/passwd",
                           "/web/index.html", "/.git/config"}) {
    std::string r = get(port_, path);
    EXPECT_THAT(r, HasSubstr("HTTP/1.1 404")) << path;
    EXPECT_THAT(r, Not(HasSubstr("root:"))) << path;
  }
  EXPECT_THAT(http_exchange(port_, "POST /config.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
              HasSubstr("HTTP/1.1 405"));
  EXPECT_THAT(http_exchange(port_, "DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), HasSubstr("Allow: GET, HEAD"));
  EXPECT_THAT(http_exchange(port_, "\x16\x03\x01 not http at all\r\n\r\n"), HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(http_exchange(port_, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n"),
              HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(http_exchange(port_, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"), HasSubstr("HTTP/1.1 400"));
  // A client that connects and says nothing neither blocks the others nor stays for ever.
  auto silent_started = std::chrono::steady_clock::now();
  std::string silent;
  std::thread slow([&] { silent = http_exchange(port_, "", 30s); });
  EXPECT_THAT(get(port_, "/"), HasSubstr("HTTP/1.1 200"));
  slow.join();
  EXPECT_LT(std::chrono::steady_clock::now() - silent_started, 15s) << "a silent client was not timed out";
  EXPECT_THAT(get(port_, "/config.json"), HasSubstr("HTTP/1.1 200"));
  EXPECT_TRUE(host_->process().running());
}

TEST_F(WebPlugin, WithACertificateItServesHttpsOnly) {
  TempDir pki;
  auto init = run_cli({"auth", "init", "--out", pki.file("bus"), "--controller", "ctl"}, pki);
  ASSERT_EQ(init.status, 0) << init.err;
  start("tls_cert = \"" + pki.file("bus/server-cert.pem") + "\"\ntls_key = \"" + pki.file("bus/server-key.pem") + "\"\n");
  Process curl({"curl", "-sS", "-i", "--cacert", pki.file("bus/ca.pem"), "https://127.0.0.1:" + std::to_string(port_) + "/config.json"},
               pki.file("curl.out"));
  ASSERT_EQ(curl.wait_exit(10s), 0) << curl.output();
  EXPECT_THAT(curl.output(), HasSubstr("\"prefix\":\"nodeha\""));
  EXPECT_THAT(get(port_, "/config.json"), Not(HasSubstr("HTTP/1.1 200")));
  EXPECT_THAT(host_->log(), HasSubstr("serving the web page on https://"));
}

TEST_F(WebPlugin, ABadConfigIsRefusedWithTheReason) {
  std::string base = host_tables("controller", "ctl", nats_.url()) + "[[plugin]]\nlibrary = \"web\"\nfiles = \"" +
                     files_.path() + "\"\n";
  for (auto [line, why] : std::vector<std::pair<std::string, std::string>>{
           {"listen = \"8480\"", "must be address:port"},
           {"tls_cert = \"/x.pem\"", "tls_cert and tls_key go together"},
           {"servers = [\"https://x\"]", "must be a websocket URL"},
           {"alertmanager = \"https://am:9093\"", "must be an http:// URL"}}) {
    auto r = run_host(base + line + "\n");
    EXPECT_NE(r.status, 0) << line;
    EXPECT_THAT(r.output, HasSubstr(why)) << line;
  }
  // Files that cannot be read fail the plugin's start, which the host tries again every second
  // (it keeps running): the reason is in its log.
  HostProcess missing(host_tables("controller", "ctl", nats_.url()) +
                      "[[plugin]]\nlibrary = \"web\"\nfiles = \"/nonexistent\"\nlisten = \"127.0.0.1:" +
                      std::to_string(port_) + "\"\n");
  EXPECT_TRUE(wait_until([&] { return missing.log().find("/nonexistent/index.html cannot be read") != std::string::npos; },
                         10s))
      << missing.log();
  EXPECT_THAT(get(port_, "/"), Not(HasSubstr("200 OK")));
}

TEST_F(WebPlugin, AlertsComeFromTheAlertmanagerOr502) {
  AlertStack stack({});
  ASSERT_TRUE(stack.ready()) << stack.error();
  std::string am = "http://" + stack.alertmanager_address();
  Process post({"curl", "-sS", "-f", "-XPOST", "-H", "Content-Type: application/json", am + "/api/v2/alerts", "-d",
                R"([{"labels":{"alertname":"NodehaNodeDown","node":"node-2"},"annotations":{"summary":"node-2 is down"}}])"},
               files_.file("post.out"));
  ASSERT_EQ(post.wait_exit(10s), 0) << post.output();
  start("alertmanager = \"" + am + "\"\n");
  EXPECT_EQ(json::parse(body_of(get(port_, "/config.json")))["alerts"], true);
  std::string alerts;
  ASSERT_TRUE(wait_until([&] { return (alerts = get(port_, "/api/alerts")).find("NodehaNodeDown") != std::string::npos; }))
      << alerts;
  auto list = json::parse(body_of(alerts));
  ASSERT_TRUE(list.is_array());
  EXPECT_EQ(list[0]["labels"]["node"], "node-2");

  host_.reset();
  int dead = free_port();
  start("alertmanager = \"http://127.0.0.1:" + std::to_string(dead) + "\"\n");
  std::string failed = get(port_, "/api/alerts");
  EXPECT_THAT(failed, HasSubstr("HTTP/1.1 502"));
  EXPECT_EQ(json::parse(body_of(failed))["error"]["code"], "alertmanager_unreachable");
}

// An Alertmanager that accepts and never answers: pages asking at once share one request, and
// each gets a 502 after the 2 s timeout, not a hang.
TEST_F(WebPlugin, ASilentAlertmanagerCostsOneRequestAndA502) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(listener, 16), 0);
  socklen_t len = sizeof a;
  getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  start("alertmanager = \"http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "\"\n");
  auto started = std::chrono::steady_clock::now();
  std::vector<std::string> answers(3);
  std::vector<std::thread> pages;
  for (auto& answer : answers) pages.emplace_back([&] { answer = get(port_, "/api/alerts"); });
  for (auto& p : pages) p.join();
  auto took = std::chrono::steady_clock::now() - started;
  for (const auto& answer : answers) EXPECT_THAT(answer, HasSubstr("HTTP/1.1 502")) << answer;
  EXPECT_GE(took, 1900ms);
  EXPECT_LT(took, 6s);
  // Every connection the proxy made is queued on the listener: exactly one.
  int accepted = 0;
  timeval tv{0, 200000};
  setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (int fd; (fd = accept(listener, nullptr, nullptr)) >= 0; ++accepted) close(fd);
  EXPECT_EQ(accepted, 1);
  close(listener);
}

TEST_F(WebPlugin, WithoutAnAlertmanagerAlertsAreNotFound) {
  start();
  std::string r = get(port_, "/api/alerts");
  EXPECT_THAT(r, HasSubstr("HTTP/1.1 404"));
  EXPECT_EQ(json::parse(body_of(r))["error"]["code"], "not_configured");
}

// Two controllers: the follower serves the page too, and when it comes to lead (the leader is
// killed) its leader instance takes the same port at once.
TEST_F(WebPlugin, AFollowerServesThePageAndKeepsItsPortWhenItComesToLead) {
  start();
  ASSERT_TRUE(wait_until([&] { return host_->metric("nodeha_controller_leader") == 1; })) << host_->log();
  int follower_port = free_port();
  HostProcess follower(host_tables("controller", "ctl-2", nats_.url()) + "[[plugin]]\nlibrary = \"web\"\nlisten = \"127.0.0.1:" +
                           std::to_string(follower_port) + "\"\nfiles = \"" + files_.path() + "\"\n",
                       {"host.lease=\"2s\""});
  ASSERT_TRUE(follower.wait_ready()) << follower.log();
  ASSERT_TRUE(wait_until([&] { return follower.metric("nodeha_plugin_following{plugin=\"web\"}") == 1; })) << follower.log();
  EXPECT_THAT(get(follower_port, "/"), HasSubstr("HTTP/1.1 200"));
  host_->process().signal(SIGKILL);
  ASSERT_TRUE(wait_until([&] { return follower.metric("nodeha_controller_leader") == 1; }, 30s)) << follower.log();
  ASSERT_TRUE(wait_until([&] { return follower.metric("nodeha_plugin_up{plugin=\"web\"}") == 1; })) << follower.log();
  EXPECT_THAT(get(follower_port, "/config.json"), HasSubstr("HTTP/1.1 200"));
  EXPECT_THAT(follower.log(), Not(HasSubstr("cannot listen")));
}

}  // namespace
}  // namespace nodeha::test
