#include "alert_stack.h"

#include "netns.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace nodeha::test {

using json = nlohmann::json;

namespace {

// Inside a namespace of its own nothing else listens on Prometheus' and Alertmanager's usual ports.
constexpr int kPrometheusPort = 9090;
constexpr int kAlertmanagerPort = 9093;

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

size_t parse_content_length(const std::string& headers) {
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

// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
std::string quoted(const std::string& text) { return json(text).dump(); }

std::string prometheus_config(const AlertStackOptions& options, int alertmanager_port) {
  std::string config = "global:\n"
                       "  scrape_interval: 1s\n"
                       "  scrape_timeout: 1s\n"
                       "  evaluation_interval: 1s\n"
                       "rule_files:\n"
                       "  - " + quoted(options.rules) + "\n"
                       "alerting:\n"
                       "  alertmanagers:\n"
                       "    - static_configs:\n"
                       "        - targets: [\"127.0.0.1:" + std::to_string(alertmanager_port) + "\"]\n";
  config += options.jobs.empty() ? "scrape_configs: []\n" : "scrape_configs:\n";
  for (const auto& [job, targets] : options.jobs) {
    std::string list;
    for (const auto& target : targets) list += (list.empty() ? "" : ", ") + quoted(target);
    config += "  - job_name: " + quoted(job) + "\n"
              "    static_configs:\n"
              "      - targets: [" + list + "]\n";
  }
  return config;
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

std::string where(const std::string& netns) { return netns.empty() ? "" : " in " + netns; }

}  // namespace

// ------------------------------------------------------------------ WebhookReceiver

WebhookReceiver::WebhookReceiver(const std::string& netns) {
  fd_ = socket_in(netns, SOCK_STREAM);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 16) != 0 ||
      getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "webhook receiver: cannot listen on loopback" << where(netns);
    return;
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { serve(); });
}

WebhookReceiver::~WebhookReceiver() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
}

std::vector<WebhookReceiver::Notification> WebhookReceiver::notifications() const {
  std::lock_guard lock(mu_);
  return received_;
}

std::vector<std::string> WebhookReceiver::malformed() const {
  std::lock_guard lock(mu_);
  return malformed_;
}

std::optional<WebhookReceiver::Delivery> WebhookReceiver::find(const std::string& status,
                                                               const std::string& alertname,
                                                               const std::string& node) const {
  for (auto& d : all(status, alertname))
    if (d.alert.value("labels", json::object()).value("node", "") == node) return std::move(d);
  return std::nullopt;
}

std::vector<WebhookReceiver::Delivery> WebhookReceiver::all(const std::string& status,
                                                            const std::string& alertname) const {
  std::vector<Delivery> out;
  std::lock_guard lock(mu_);
  for (const auto& n : received_) {
    if (!n.body.contains("alerts") || !n.body["alerts"].is_array()) continue;
    for (const auto& a : n.body["alerts"]) {
      if (a.value("status", "") == status && a.value("labels", json::object()).value("alertname", "") == alertname)
        out.push_back(Delivery{n.at, a, n.body.value("status", "")});
    }
  }
  return out;
}

std::string WebhookReceiver::text() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& n : received_) out += n.body.dump() + "\n";
  // A request spans lines; as a JSON string it takes one.
  for (const auto& m : malformed_)
    out += "MALFORMED: " + json(m).dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  return out;
}

void WebhookReceiver::serve() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;  // the timeout only lets the loop see stop_
    int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    handle(conn);
    close(conn);
  }
}

void WebhookReceiver::handle(int conn) {
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

// ------------------------------------------------------------------ AlertStack

AlertStack::AlertStack(AlertStackOptions options) : options_(std::move(options)), webhook_(options_.netns) {
  if (webhook_.port() == 0) {
    error_ = "webhook receiver: cannot listen on loopback" + where(options_.netns);
    return;  // the receiver failed the test already
  }
  // In the test's own namespace each port is picked just before its process takes it.
  const bool own_ns = options_.netns.empty();
  alertmanager_port_ = own_ns ? free_port() : kAlertmanagerPort;

  std::string config = dir_.write("alertmanager.yml", alertmanager_config(webhook_.url()));
  alertmanager_ = start("alertmanager", {"prometheus-alertmanager", "--config.file=" + config,
                                         "--storage.path=" + dir_.file("alertmanager"),
                                         "--web.listen-address=" + alertmanager_address(),
                                         "--cluster.listen-address="});
  if (!wait_ready(*alertmanager_, alertmanager_address(), "prometheus-alertmanager")) return;

  prometheus_port_ = own_ns ? free_port() : kPrometheusPort;
  config = dir_.write("prometheus.yml", prometheus_config(options_, alertmanager_port_));
  // An alert that fires before Prometheus has found Alertmanager is dropped, and sent again only
  // after the resend delay (1 min by default).
  prometheus_ = start("prometheus", {"prometheus", "--config.file=" + config,
                                     "--storage.tsdb.path=" + dir_.file("prometheus"),
                                     "--web.listen-address=" + prometheus_address(),
                                     "--rules.alert.resend-delay=1s"});
  if (!wait_ready(*prometheus_, prometheus_address(), "prometheus")) return;
  ready_ = true;
}

// Prometheus first: it is the one sending to Alertmanager.
AlertStack::~AlertStack() {
  prometheus_.reset();
  alertmanager_.reset();
}

std::unique_ptr<Process> AlertStack::start(const std::string& name, std::vector<std::string> argv) {
  if (!options_.netns.empty()) argv = TestNetwork::argv_in(options_.netns, std::move(argv));
  return std::make_unique<Process>(std::move(argv), dir_.file(name + ".log"));
}

bool AlertStack::wait_ready(Process& proc, const std::string& address, const std::string& package) {
  const bool answered = wait_until(
      [&] { return !proc.running() || http_fetch(address, "/-/ready", options_.netns).status == 200; }, 30s);
  if (answered && proc.running()) return true;
  if (auto status = proc.wait_exit(0ms))
    error_ = package + " exited with status " + std::to_string(*status) + " (Debian package " + package + ")";
  else
    error_ = package + " not ready on " + address + where(options_.netns) + " within 30 s";
  ADD_FAILURE() << error_ << "\n" << logs();
  return false;
}

json AlertStack::query(const std::string& expr) const {
  auto r = http_fetch(prometheus_address(), "/api/v1/query?query=" + url_encode(expr), options_.netns);
  auto j = json::parse(r.body, nullptr, false);
  if (r.status != 200 || !j.is_object() || j.value("status", "") != "success") return json::array();
  return j["data"]["result"];
}

std::optional<double> AlertStack::query_value(const std::string& expr) const {
  auto v = query(expr);
  if (v.size() != 1) return std::nullopt;
  return std::stod(v[0]["value"][1].get<std::string>());
}

std::string AlertStack::logs() const {
  std::string out;
  if (alertmanager_) out += "----- alertmanager log -----\n" + alertmanager_->output() + "\n";
  if (prometheus_) out += "----- prometheus log -----\n" + prometheus_->output() + "\n";
  return out;
}

}  // namespace nodeha::test
