#include "monitoring.h"

#include "wait.h"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>

namespace nodeha::demo {

namespace {

using namespace std::chrono_literals;

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
  return s;
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "\"" : ", \"") + i + "\"";
  return out;
}

void stop_process(std::unique_ptr<test::Process>& p) {
  if (p && p->running()) {
    p->signal(SIGTERM);
    if (!p->wait_exit(10s)) p->signal(SIGKILL);
  }
  p.reset();
}

}  // namespace

Monitoring::Monitoring(std::string dir) : dir_(std::move(dir)) {}

Monitoring::~Monitoring() {
  stop_process(prometheus_);
  stop_process(alertmanager_);
  stop_ = true;
  if (webhook_.joinable()) webhook_.join();
  if (webhook_fd_ >= 0) close(webhook_fd_);
}

bool Monitoring::start(const std::vector<std::string>& controllers, const std::vector<std::string>& agents, std::string* error) {
  // The receiver: a loopback socket served by a thread, one request per connection.
  webhook_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (webhook_fd_ < 0 || bind(webhook_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(webhook_fd_, 16) != 0 || getsockname(webhook_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    *error = "cannot listen on a loopback port for Alertmanager's webhook";
    return false;
  }
  webhook_port_ = ntohs(addr.sin_port);
  webhook_ = std::thread([this] { serve_webhook(); });

  const std::string shipped = NODEHA_SOURCE_DIR "/config/prometheus/";
  alertmanager_port_ = test::free_port();
  std::ofstream(dir_ + "/alertmanager.yml")
      << replace_all(test::read_file(shipped + "alertmanager.yml"), "http://127.0.0.1:5001/alerts",
                     "http://127.0.0.1:" + std::to_string(webhook_port_) + "/alerts");
  alertmanager_ = std::make_unique<test::Process>(
      std::vector<std::string>{"prometheus-alertmanager", "--config.file=" + dir_ + "/alertmanager.yml",
                               "--storage.path=" + dir_ + "/alertmanager",
                               "--web.listen-address=" + alertmanager_address(), "--cluster.listen-address="},
      dir_ + "/alertmanager.log");

  prometheus_port_ = test::free_port();
  std::ofstream(dir_ + "/prometheus.yml")
      << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
         "rule_files:\n  - \"" + shipped + "nodeha-rules.yml\"\n"
         "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"" + alertmanager_address() + "\"]\n"
         "scrape_configs:\n"
         "  - job_name: nodeha-controller\n    static_configs:\n      - targets: [" + quoted_list(controllers) + "]\n"
         "  - job_name: nodeha-agent\n    static_configs:\n      - targets: [" + quoted_list(agents) + "]\n";
  prometheus_ = std::make_unique<test::Process>(
      std::vector<std::string>{"prometheus", "--config.file=" + dir_ + "/prometheus.yml",
                               "--storage.tsdb.path=" + dir_ + "/prometheus",
                               "--web.listen-address=" + prometheus_address()},
      dir_ + "/prometheus.log");

  auto ready = [&](std::unique_ptr<test::Process>& p, const std::string& address, const std::string& what) {
    if (test::wait_until([&] { return !p->running() || test::http_fetch(address, "/-/ready").status == 200; }, 30s) &&
        p->running())
      return true;
    *error = what + (p->running() ? " was not ready within 30 s" : " exited") + "; its log:\n" + p->output();
    return false;
  };
  return ready(alertmanager_, alertmanager_address(), "prometheus-alertmanager") &&
         ready(prometheus_, prometheus_address(), "prometheus");
}

bool Monitoring::targets_up(size_t expected) const {
  auto r = test::http_fetch(prometheus_address(), "/api/v1/query?query=up%3D%3D1");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  return r.status == 200 && j.is_object() && j.value("status", "") == "success" &&
         j["data"]["result"].size() == expected;
}

void Monitoring::serve_webhook() {
  while (!stop_) {
    pollfd p{webhook_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;  // the timeout only lets the loop see stop_
    int conn = accept4(webhook_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    timeval tv{2, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string data;
    char buf[8192];
    for (;;) {
      auto end = data.find("\r\n\r\n");
      if (end != std::string::npos) {
        auto cl = data.find("Content-Length: ");
        size_t length = cl == std::string::npos || cl > end ? 0 : std::stoul(data.substr(cl + 16));
        if (data.size() >= end + 4 + length) {
          auto body = nlohmann::json::parse(data.substr(end + 4, length), nullptr, false);
          if (body.is_object()) std::ofstream(notifications_path(), std::ios::app) << body.dump() << "\n";
          break;
        }
      }
      ssize_t n = read(conn, buf, sizeof buf);
      if (n <= 0) break;
      data.append(buf, static_cast<size_t>(n));
    }
    const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    [[maybe_unused]] auto w = write(conn, reply.data(), reply.size());
    close(conn);
  }
}

}  // namespace nodeha::demo
