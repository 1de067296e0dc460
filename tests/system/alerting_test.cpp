// Alerting end to end, every part real: a nats-server, a controller and one agent (libvirt test
// driver) as nodeha-host processes with 1 s heartbeats, Prometheus scraping both with the shipped
// rules (config/prometheus/nodeha-rules.yml), Alertmanager, and a webhook receiver inside the
// test. Stopping the agent must page NodehaNodeUnreachable for its node; starting it again must
// resolve the alert. The times from the stop (restart) to the webhook are printed.
#include "host_process.h"
#include "nats_server.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

namespace nodeha::test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::string kNode = "node-a";

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string format_seconds(double s) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << s;
  return out.str();
}

std::string url_encode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

// ------------------------------------------------------------------ webhook receiver

// Alertmanager's webhook target: an HTTP server on a loopback port, serving one request per
// connection on its own thread. Every POSTed JSON body is kept with the time it arrived.
class WebhookReceiver {
 public:
  struct Notification {
    Clock::time_point at;
    json body;
  };
  // A notification carrying one alert: when it arrived, the alert, the notification's status.
  struct Delivery {
    Clock::time_point at;
    json alert;
    std::string group_status;
  };

  WebhookReceiver() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "webhook receiver: cannot listen on loopback";
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }

  ~WebhookReceiver() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }

  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/alerts"; }

  std::vector<Notification> notifications() const {
    std::lock_guard lock(mu_);
    return received_;
  }
  std::vector<std::string> malformed() const {
    std::lock_guard lock(mu_);
    return malformed_;
  }

  // The first notification whose alert `alertname` for `node` has `status` (firing / resolved).
  std::optional<Delivery> find(const std::string& status, const std::string& alertname, const std::string& node) const {
    std::lock_guard lock(mu_);
    for (const auto& n : received_) {
      if (!n.body.contains("alerts") || !n.body["alerts"].is_array()) continue;
      for (const auto& a : n.body["alerts"]) {
        const auto& labels = a.value("labels", json::object());
        if (a.value("status", "") == status && labels.value("alertname", "") == alertname &&
            labels.value("node", "") == node)
          return Delivery{n.at, a, n.body.value("status", "")};
      }
    }
    return std::nullopt;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;  // the timeout only lets the loop see stop_
      int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      handle(conn);
      close(conn);
    }
  }

  void handle(int conn) {
    timeval tv{2, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string data;
    char buf[8192];
    size_t header_end = std::string::npos;
    size_t content_length = 0;
    for (;;) {
      if (header_end == std::string::npos) {
        header_end = data.find("\r\n\r\n");
        if (header_end != std::string::npos) content_length = parse_content_length(data.substr(0, header_end));
      }
      if (header_end != std::string::npos && data.size() >= header_end + 4 + content_length) break;
      ssize_t n = read(conn, buf, sizeof buf);
      if (n <= 0) return;  // closed or timed out before a whole request: nothing to answer
      data.append(buf, static_cast<size_t>(n));
    }
    auto at = Clock::now();
    bool post = data.rfind("POST ", 0) == 0;
    std::string body = data.substr(header_end + 4, content_length);
    auto parsed = json::parse(body, nullptr, false);
    {
      std::lock_guard lock(mu_);
      if (post && parsed.is_object())
        received_.push_back({at, std::move(parsed)});
      else
        malformed_.push_back(data);
    }
    std::string reply = post ? "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                             : "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    [[maybe_unused]] auto w = write(conn, reply.data(), reply.size());
  }

  static size_t parse_content_length(const std::string& headers) {
    std::istringstream in(headers);
    std::string line;
    while (std::getline(in, line)) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == "content-length") return std::strtoul(line.c_str() + colon + 1, nullptr, 10);
    }
    return 0;
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Notification> received_;
  std::vector<std::string> malformed_;
};

// ------------------------------------------------------------------ configs

std::string controller_config(const NatsServer& nats) {
  return "[host]\nrole = \"controller\"\nnode_id = \"ctl\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"100ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:0\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\nping_timeout = \"500ms\"\n";
}

// The agent listens for /metrics on a fixed port, so that the restarted agent is the same
// Prometheus target.
std::string agent_config(const NatsServer& nats, int metrics_port) {
  return "[host]\nrole = \"agent\"\nnode_id = \"" + kNode + "\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"100ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n"
         "[libvirt]\nuri = \"test:///default\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\naddresses = { management = \"127.0.0.1\" }\n"
         "disk_path = \"/\"\n\n"
         "[[plugin]]\nlibrary = \"netcheck\"\ninterval = \"1s\"\ntimeout = \"200ms\"\nfail_after = 2\n"
         "interfaces = [\"lo\"]\n";
}

std::string prometheus_config(const std::string& controller, const std::string& agent, int alertmanager_port) {
  return "global:\n"
         "  scrape_interval: 1s\n"
         "  scrape_timeout: 1s\n"
         "  evaluation_interval: 1s\n"
         "rule_files:\n"
         "  - \"" NODEHA_SOURCE_DIR "/config/prometheus/nodeha-rules.yml\"\n"
         "alerting:\n"
         "  alertmanagers:\n"
         "    - static_configs:\n"
         "        - targets: [\"127.0.0.1:" + std::to_string(alertmanager_port) + "\"]\n"
         "scrape_configs:\n"
         "  - job_name: nodeha-controller\n"
         "    static_configs:\n"
         "      - targets: [\"" + controller + "\"]\n"
         "  - job_name: nodeha-agent\n"
         "    static_configs:\n"
         "      - targets: [\"" + agent + "\"]\n";
}

std::string alertmanager_config(const std::string& webhook_url) {
  return "route:\n"
         "  receiver: webhook\n"
         "  group_by: [alertname, node]\n"
         "  group_wait: 1s\n"
         "  group_interval: 1s\n"
         "  repeat_interval: 4h\n"
         "receivers:\n"
         "  - name: webhook\n"
         "    webhook_configs:\n"
         "      - url: " + webhook_url + "\n"
         "        send_resolved: true\n";
}

// ------------------------------------------------------------------ the test

class Alerting : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!HasFailure()) return;
    auto dump = [](const std::string& name, const std::string& text) {
      std::cerr << "----- " << name << " -----\n" << text << "\n";
    };
    if (prometheus_) dump("prometheus log", prometheus_->output());
    if (alertmanager_) dump("alertmanager log", alertmanager_->output());
    if (controller_) dump("controller log", controller_->log());
    if (agent_) dump("agent log", agent_->log());
    std::string hooks;
    for (const auto& n : webhook_.notifications()) hooks += n.body.dump() + "\n";
    for (const auto& m : webhook_.malformed()) hooks += "MALFORMED: " + m + "\n";
    dump("webhook notifications", hooks);
  }

  // Starts Alertmanager on a free loopback port, gossip off, and waits until it is ready.
  void start_alertmanager() {
    alertmanager_port_ = free_port();
    std::string config = dir_.write("alertmanager.yml", alertmanager_config(webhook_.url()));
    alertmanager_ = std::make_unique<Process>(
        std::vector<std::string>{"prometheus-alertmanager", "--config.file=" + config,
                                 "--storage.path=" + dir_.file("alertmanager"),
                                 "--web.listen-address=127.0.0.1:" + std::to_string(alertmanager_port_),
                                 "--cluster.listen-address="},
        dir_.file("alertmanager.log"));
    ASSERT_TRUE(wait_until(
        [&] { return !alertmanager_->running() || http_fetch(alertmanager_address(), "/-/ready").status == 200; }, 30s));
    ASSERT_TRUE(alertmanager_->running()) << "prometheus-alertmanager exited (Debian package prometheus-alertmanager)";
  }

  // Starts Prometheus on a free loopback port with the project's rules and waits until it is ready.
  void start_prometheus(const std::string& controller, const std::string& agent) {
    prometheus_port_ = free_port();
    std::string config = dir_.write("prometheus.yml", prometheus_config(controller, agent, alertmanager_port_));
    prometheus_ = std::make_unique<Process>(
        std::vector<std::string>{"prometheus", "--config.file=" + config,
                                 "--storage.tsdb.path=" + dir_.file("prometheus"),
                                 "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port_)},
        dir_.file("prometheus.log"));
    ASSERT_TRUE(wait_until(
        [&] { return !prometheus_->running() || http_fetch(prometheus_address(), "/-/ready").status == 200; }, 30s));
    ASSERT_TRUE(prometheus_->running()) << "prometheus exited (Debian package prometheus)";
  }

  std::string alertmanager_address() const { return "127.0.0.1:" + std::to_string(alertmanager_port_); }
  std::string prometheus_address() const { return "127.0.0.1:" + std::to_string(prometheus_port_); }

  // An instant query: the result vector, empty on any failure.
  json query(const std::string& expr) const {
    auto r = http_fetch(prometheus_address(), "/api/v1/query?query=" + url_encode(expr));
    auto j = json::parse(r.body, nullptr, false);
    if (r.status != 200 || !j.is_object() || j.value("status", "") != "success") return json::array();
    return j["data"]["result"];
  }
  // The value of a one-element instant vector; nullopt unless exactly one sample.
  std::optional<double> query_value(const std::string& expr) const {
    auto v = query(expr);
    if (v.size() != 1) return std::nullopt;
    return std::stod(v[0]["value"][1].get<std::string>());
  }

  // Declared first so that it is removed last, after every process below stopped.
  TempDir dir_;
  NatsServer nats_;
  WebhookReceiver webhook_;
  std::unique_ptr<HostProcess> controller_;
  std::unique_ptr<HostProcess> agent_;
  std::unique_ptr<Process> alertmanager_;
  std::unique_ptr<Process> prometheus_;
  int alertmanager_port_ = 0;
  int prometheus_port_ = 0;
};

TEST_F(Alerting, UnreachableNodePagesAndResolves) {
  const std::string normal = "nodeha_node_monitor_state{node=\"" + kNode + "\",state=\"normal\"}";
  const std::string unreachable = "nodeha_node_monitor_state{node=\"" + kNode + "\",state=\"unreachable\"}";

  controller_ = std::make_unique<HostProcess>(controller_config(nats_));
  ASSERT_TRUE(controller_->wait_ready()) << controller_->log();
  const int agent_port = free_port();
  const std::string agent_address = "127.0.0.1:" + std::to_string(agent_port);
  agent_ = std::make_unique<HostProcess>(agent_config(nats_, agent_port));
  ASSERT_TRUE(agent_->wait_ready()) << agent_->log();
  ASSERT_EQ(agent_->metrics_address(), agent_address);
  ASSERT_TRUE(wait_until([&] { return controller_->metric(normal) == 1; }));

  ASSERT_NO_FATAL_FAILURE(start_alertmanager());
  ASSERT_NO_FATAL_FAILURE(start_prometheus(controller_->metrics_address(), agent_address));

  // Both targets scraped, and the rules see the node through the leading controller: the
  // recording rule behind NodehaNodeUnreachable has a 0 for it.
  ASSERT_TRUE(wait_until([&] {
    return query_value("up{job=\"nodeha-controller\"}") == 1.0 && query_value("up{job=\"nodeha-agent\"}") == 1.0;
  }, 20s)) << query("up").dump();
  ASSERT_TRUE(wait_until([&] {
    return query_value("nodeha:node_unreachable:in_service{node=\"" + kNode + "\"}") == 0.0;
  }, 20s)) << query("nodeha:node_monitor_state:leader").dump();
  EXPECT_FALSE(webhook_.find("firing", "NodehaNodeUnreachable", kNode)) << "paged while the node was up";

  // The agent stops (SIGTERM): the controller declares the node unreachable, Prometheus fires,
  // Alertmanager delivers.
  const auto stopped = Clock::now();
  agent_.reset();
  std::optional<Clock::time_point> detected;
  auto last_poll = Clock::time_point{};
  std::optional<WebhookReceiver::Delivery> fired;
  wait_until([&] {
    if (!detected && Clock::now() - last_poll >= 50ms) {
      last_poll = Clock::now();
      if (controller_->metric(unreachable) == 1) detected = last_poll;
    }
    fired = webhook_.find("firing", "NodehaNodeUnreachable", kNode);
    return fired.has_value();
  }, 40s);
  ASSERT_TRUE(fired) << "no firing NodehaNodeUnreachable for " << kNode << " within 40 s of the stop; controller says "
                     << unreachable << " = " << controller_->metric(unreachable);
  EXPECT_EQ(fired->group_status, "firing");
  EXPECT_EQ(fired->alert["labels"].value("severity", ""), "critical");
  EXPECT_NE(fired->alert["annotations"].value("summary", "").find(kNode), std::string::npos) << fired->alert.dump();
  EXPECT_NE(fired->alert["annotations"].value("description", "").find("nodeha node drain " + kNode), std::string::npos)
      << fired->alert.dump();
  const double delivery = seconds(fired->at - stopped);
  std::cout << "alert delivered after " << format_seconds(delivery) << " s (controller detected the node unreachable after "
            << (detected ? format_seconds(seconds(*detected - stopped)) + " s" : std::string("?")) << ")" << std::endl;
  RecordProperty("alert_delivery_seconds", format_seconds(delivery));

  // The agent comes back on the same metrics port: the node is normal again and the alert resolves.
  const auto restarted = Clock::now();
  agent_ = std::make_unique<HostProcess>(agent_config(nats_, agent_port));
  std::optional<Clock::time_point> recovered;
  last_poll = Clock::time_point{};
  std::optional<WebhookReceiver::Delivery> resolved;
  wait_until([&] {
    if (!agent_->process().running()) return true;
    if (!recovered && Clock::now() - last_poll >= 50ms) {
      last_poll = Clock::now();
      if (controller_->metric(normal) == 1) recovered = last_poll;
    }
    resolved = webhook_.find("resolved", "NodehaNodeUnreachable", kNode);
    return resolved.has_value();
  }, 40s);
  ASSERT_TRUE(agent_->process().running()) << "the restarted agent exited:\n" << agent_->log();
  ASSERT_TRUE(resolved) << "no resolved NodehaNodeUnreachable for " << kNode << " within 40 s of the restart";
  EXPECT_EQ(resolved->alert["labels"].value("severity", ""), "critical");
  const double resolution = seconds(resolved->at - restarted);
  std::cout << "alert resolved after " << format_seconds(resolution) << " s (controller saw the node normal after "
            << (recovered ? format_seconds(seconds(*recovered - restarted)) + " s" : std::string("?")) << ")" << std::endl;
  RecordProperty("alert_resolution_seconds", format_seconds(resolution));

  // Nothing else paged: one lost node of one is neither "many nodes unreachable" nor anything else.
  for (const auto& n : webhook_.notifications())
    for (const auto& a : n.body.value("alerts", json::array()))
      EXPECT_EQ(a["labels"].value("alertname", ""), "NodehaNodeUnreachable") << "unexpected alert: " << a.dump();
  EXPECT_TRUE(webhook_.malformed().empty());
}

}  // namespace
}  // namespace nodeha::test
