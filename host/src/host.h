// The nodeha-host process: reads the config, loads and checks every plugin before anything
// starts, starts them in order, reloads on SIGHUP, stops them in reverse order.
#pragma once

#include "bus.h"
#include "config.h"
#include "executor.h"
#include "leadership.h"
#include "libvirt_provider.h"
#include "local_socket.h"
#include "metrics.h"
#include "plugin_instance.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace nodeha::host {

inline constexpr int kExitRefused = 2;  // bad config, library, version: nothing was started
inline constexpr int kExitFailed = 1;   // a plugin failed to start

// A plugin checked and ready to start: library loaded, version and role checked, config valid.
struct PlannedPlugin {
  std::string name;
  std::shared_ptr<Library> library;
  std::string config_json;
  std::string where;
};

// Loads every library the config names and checks everything that can be checked without
// starting anything. Messages name the file, the line, the plugin and why.
Result<std::vector<PlannedPlugin>> plan_plugins(const ConfigDocument& doc);

class Host {
 public:
  Host(std::string config_file, std::vector<std::string> overrides);
  ~Host();

  // Everything up to and including starting the plugins. On failure returns the exit code and
  // prints why; whatever was started is stopped again.
  int start();
  // Re-reads the config and restarts only the plugins whose library or table changed.
  Status reload();
  // Stops plugins in reverse order, flushes and closes NATS.
  void stop();

  // Whether every running plugin's event thread runs a task within `bound`: the host's proof of
  // life for systemd's watchdog (a plugin callback stuck there blocks everything that plugin
  // does: its messages, timers and replies). The message names the plugins that did not answer.
  // The thread that calls start/reload/stop.
  Status event_threads_answer(std::chrono::milliseconds bound);

  const HostConfig& config() const { return doc_.host(); }
  // How many plugins do their work now: a following controller's follower instances, which only
  // answer read-only commands, are not counted.
  size_t running_plugins();
  const std::string& metrics_address() const { return metrics_->address(); }

 private:
  Status start_planned(const PlannedPlugin& p, std::unique_ptr<PluginInstance>* out);
  // Starts one instance in `mode`; its up metric and the log say how it went.
  Status start_instance(PluginInstance& inst, nodeha_mode mode);
  void stop_instance(PluginInstance& inst);
  // How `inst` runs now: ACTIVE on agents and a leading controller; on a following controller
  // FOLLOWER when it serves followers (NODEHA_PLUGIN_FOLLOWER), else not at all. plugins_mu_ held.
  std::optional<nodeha_mode> wanted_mode(const PluginInstance& inst) const;
  size_t running_plugins_locked() const;  // plugins_mu_ held
  // Controllers: the plugins run while this controller leads and stop when it no longer does;
  // those that serve followers run as follower instances meanwhile. Brings them to what the
  // lease last said; called on the role thread (and once by start).
  Status apply_role();
  // Applies each change of role; `retry`: the last apply left plugins down, tried again each second.
  void role_loop(bool retry);
  void set_up(const std::string& plugin, bool up);
  // nodeha_plugin_up for an active instance, nodeha_plugin_following for a follower's.
  void set_running(const PluginInstance& inst, bool up);
  void keep_event_stream();

  std::string file_;
  std::vector<std::string> overrides_;
  ConfigDocument doc_;
  Services services_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Bus> bus_;
  std::unique_ptr<LibvirtProvider> libvirt_;
  std::unique_ptr<WorkerPool> workers_;
  std::unique_ptr<LocalSocket> local_;  // outlives the plugins that serve on it
  std::mutex plugins_mu_;  // plugins_ and plugins_run_: reload, role changes and stop take turns
  std::vector<std::unique_ptr<PluginInstance>> plugins_;
  bool plugins_run_ = true;  // agents: always; controllers: while leading
  std::unique_ptr<Leadership> leadership_;  // controllers
  std::mutex role_mu_;
  std::condition_variable role_cv_;
  bool want_lead_ = false;
  uint64_t want_epoch_ = 0;
  bool role_dirty_ = false;  // the lease said something since the role thread last looked
  bool role_stop_ = false;
  std::thread role_thread_;
  nodeha_metric* bus_connected_ = nullptr;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
};

}  // namespace nodeha::host
