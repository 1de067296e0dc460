// A nodeha-host process under test: its config and state in a temp dir, its log kept.
#pragma once

#include <nlohmann/json.hpp>

#include "process.h"
#include "wait.h"

#include <memory>
#include <string>
#include <vector>

namespace nodeha::test {

class HostProcess {
 public:
  // Writes `config` (TOML) to <dir>/host.toml and starts `nodeha-host --config ... --set ...`,
  // inside network namespace `netns` when one is given (netns.h; metrics are read from there).
  // Its state dir is <dir>/state, or `state_dir` (a restarted host keeps its state there).
  // Paths in `config` may use {dir} (the temp dir), {plugins} and {fixtures}.
  explicit HostProcess(const std::string& config, std::vector<std::string> overrides = {}, std::string netns = "",
                       std::string state_dir = "");
  ~HostProcess();

  // Waits until /metrics answers (the host wrote <state>/metrics.address, which it does once its
  // plugins started: their subscriptions are served from then on); false on timeout or exit.
  bool wait_ready(std::chrono::milliseconds timeout = 15s);
  std::string metrics() const;
  // host:port of the host's /metrics (from <state>/metrics.address); empty before wait_ready().
  const std::string& metrics_address() const { return address_; }
  double metric(const std::string& series) const { return metric_value(metrics(), series); }
  // One request on the agent's node-local socket (<state>/local.sock), as `nodeha local` makes
  // it; the reply as JSON, or {"transport": why} when none came within `timeout`.
  nlohmann::json local(const std::string& subject, const nlohmann::json& body,
                       std::chrono::seconds timeout = std::chrono::seconds(120)) const;
  // Rewrites the config file (for SIGHUP tests).
  void rewrite(const std::string& config);
  Process& process() { return *proc_; }
  std::string log() const { return proc_->output(); }
  const TempDir& dir() const { return dir_; }
  const std::string& state_dir() const { return state_dir_; }
  std::string config_path() const { return dir_.file("host.toml"); }

 private:
  std::string expand(const std::string& text) const;
  TempDir dir_;
  std::string netns_;
  std::string state_dir_;
  std::unique_ptr<Process> proc_;
  std::string address_;
};

// Runs nodeha-host to completion (for refusals); returns its exit status and output.
struct HostRun {
  int status = -1;
  std::string output;
};
HostRun run_host(const std::string& config, std::vector<std::string> overrides = {},
                 std::chrono::milliseconds timeout = 20s);

// The [host], [nats] and [metrics] tables of a test host: its role and node id, the plugins of
// this build, NATS at `nats_url` with a fast reconnect, /metrics on a free port. Plugin tables
// follow.
std::string host_tables(const std::string& role, const std::string& node_id, const std::string& nats_url);
// The same with several servers (a NATS cluster, nats_cluster.h).
std::string host_tables(const std::string& role, const std::string& node_id, const std::vector<std::string>& nats_urls);

// Every plugin table of a whole controller with short intervals: heartbeat every second (a dead
// node is unreachable in 3-3.5 s), a scheduler with room for tiny guests on a small machine
// (cpu_ratio 16, nothing reserved), vms, tasks, migrate (2 m timeout, 30 s stall), drain (5 s
// stop timeout, 1 s retries) and rebuild.
std::string controller_plugin_tables();

}  // namespace nodeha::test
