#include "host_process.h"

#include "netns.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>

namespace nodeha::test {

namespace {
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
  return s;
}
}  // namespace

std::string HostProcess::expand(const std::string& text) const {
  std::string s = replace_all(text, "{dir}", dir_.path());
  s = replace_all(s, "{plugins}", NODEHA_PLUGIN_DIR);
  return replace_all(s, "{fixtures}", NODEHA_FIXTURE_DIR);
}

HostProcess::HostProcess(const std::string& config, std::vector<std::string> overrides, std::string netns,
                         std::string state_dir)
    : netns_(std::move(netns)), state_dir_(state_dir.empty() ? dir_.file("state") : std::move(state_dir)) {
  dir_.write("host.toml", expand(config));
  std::vector<std::string> argv{NODEHA_HOST_BIN, "--config", config_path(), "--set",
                                "host.state_dir=\"" + state_dir_ + "\""};
  for (auto& o : overrides) {
    argv.push_back("--set");
    argv.push_back(expand(o));
  }
  if (!netns_.empty()) argv = TestNetwork::argv_in(netns_, argv);
  proc_ = std::make_unique<Process>(argv, dir_.file("host.log"));
}

HostProcess::~HostProcess() {
  if (proc_->running()) {
    proc_->signal(SIGTERM);
    proc_->wait_exit(10s);
  }
}

bool HostProcess::wait_ready(std::chrono::milliseconds timeout) {
  std::string file = state_dir_ + "/metrics.address";
  bool ok = wait_until(
      [&] {
        if (!proc_->running()) return true;
        address_ = read_file(file);
        while (!address_.empty() && (address_.back() == '\n')) address_.pop_back();
        return !address_.empty() && !http_get(address_, "/metrics", netns_).empty();
      },
      timeout);
  return ok && proc_->running() && !address_.empty();
}

std::string HostProcess::metrics() const {
  return address_.empty() ? std::string() : http_get(address_, "/metrics", netns_);
}

void HostProcess::rewrite(const std::string& config) { dir_.write("host.toml", expand(config)); }

std::string host_tables(const std::string& role, const std::string& node_id, const std::string& nats_url) {
  return host_tables(role, node_id, std::vector<std::string>{nats_url});
}

std::string host_tables(const std::string& role, const std::string& node_id, const std::vector<std::string>& nats_urls) {
  std::string servers;
  for (const auto& u : nats_urls) servers += (servers.empty() ? "\"" : ", \"") + u + "\"";
  return "[host]\nrole = \"" + role + "\"\nnode_id = \"" + node_id + "\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [" + servers + "]\nreconnect_wait = \"100ms\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
}

std::string controller_plugin_tables() {
  return "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\nping_timeout = \"500ms\"\n"
         "[[plugin]]\nlibrary = \"scheduler\"\ncpu_ratio = 16.0\nreserve_vcpus = 0\nreserve_memory_mib = 0\n"
         "[[plugin]]\nlibrary = \"vms\"\n"
         "[[plugin]]\nlibrary = \"tasks\"\n"
         "[[plugin]]\nlibrary = \"migrate\"\ntimeout = \"2m\"\nstall_timeout = \"30s\"\n"
         "[[plugin]]\nlibrary = \"drain\"\nstop_timeout = \"5s\"\nretry_every = \"1s\"\n"
         "[[plugin]]\nlibrary = \"rebuild\"\n";
}

HostRun run_host(const std::string& config, std::vector<std::string> overrides, std::chrono::milliseconds timeout) {
  HostProcess host(config, std::move(overrides));
  HostRun r;
  auto status = host.process().wait_exit(timeout);
  r.status = status ? *status : -1;
  r.output = host.log();
  return r;
}

nlohmann::json HostProcess::local(const std::string& subject, const nlohmann::json& body,
                                  std::chrono::seconds timeout) const {
  std::string path = state_dir_ + "/local.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {{"transport", "cannot connect to " + path}};
  }
  timeval tv{static_cast<time_t>(timeout.count()), 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out = nlohmann::json{{"subject", subject}, {"data", body.dump()}}.dump() + "\n";
  for (size_t sent = 0; sent < out.size();) {
    ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  out.clear();
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  auto j = nlohmann::json::parse(out, nullptr, false);
  return j.is_object() ? j : nlohmann::json{{"transport", "no answer: \"" + out + "\""}};
}

}  // namespace nodeha::test
