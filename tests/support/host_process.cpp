#include "host_process.h"

#include <csignal>
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

HostProcess::HostProcess(const std::string& config, std::vector<std::string> overrides) {
  dir_.write("host.toml", expand(config));
  std::vector<std::string> argv{NODEHA_HOST_BIN, "--config", config_path(), "--set",
                                "host.state_dir=\"" + dir_.file("state") + "\""};
  for (auto& o : overrides) {
    argv.push_back("--set");
    argv.push_back(expand(o));
  }
  proc_ = std::make_unique<Process>(argv, dir_.file("host.log"));
}

HostProcess::~HostProcess() {
  if (proc_->running()) {
    proc_->signal(SIGTERM);
    proc_->wait_exit(10s);
  }
}

bool HostProcess::wait_ready(std::chrono::milliseconds timeout) {
  std::string file = dir_.file("state/metrics.address");
  bool ok = wait_until(
      [&] {
        if (!proc_->running()) return true;
        address_ = read_file(file);
        while (!address_.empty() && (address_.back() == '\n')) address_.pop_back();
        return !address_.empty() && !http_get(address_, "/metrics").empty();
      },
      timeout);
  return ok && proc_->running() && !address_.empty();
}

std::string HostProcess::metrics() const { return address_.empty() ? std::string() : http_get(address_, "/metrics"); }

void HostProcess::rewrite(const std::string& config) { dir_.write("host.toml", expand(config)); }

HostRun run_host(const std::string& config, std::vector<std::string> overrides, std::chrono::milliseconds timeout) {
  HostProcess host(config, std::move(overrides));
  HostRun r;
  auto status = host.process().wait_exit(timeout);
  r.status = status ? *status : -1;
  r.output = host.log();
  return r;
}

}  // namespace nodeha::test
