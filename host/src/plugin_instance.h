// One running plugin: its library, its event thread, and everything it registered with the host
// (subscriptions, watches, timers), so that stopping it removes exactly what it added.
#pragma once

#include "bus.h"
#include "executor.h"
#include "loader.h"
#include "metrics.h"

#include <nodeha/plugin.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

namespace nodeha::host {

class LibvirtProvider;
class LocalSocket;

// What the host shares with every plugin instance. Owned by the Host; outlives the instances.
struct Services {
  std::string node_id;
  nodeha_role role = NODEHA_ROLE_AGENT;
  std::string prefix;
  std::string state_dir;
  Bus* bus = nullptr;
  Metrics* metrics = nullptr;
  WorkerPool* workers = nullptr;
  LibvirtProvider* libvirt = nullptr;
  LocalSocket* local = nullptr;  // agents: serves NODEHA_SUB_LOCAL subscriptions; null elsewhere
  // Controllers: whether this one may act now (it leads, its lease time is not up). Until then
  // the plugins' publishes, requests and KV writes are refused UNAVAILABLE. Empty: always.
  std::function<bool()> may_act;
  std::function<uint64_t()> epoch;  // controllers: the lease's epoch (plugin.h `leadership`)
};

class PluginInstance {
 public:
  PluginInstance(Services& services, std::string name, std::shared_ptr<Library> library, std::string config_json,
                 std::string where);
  ~PluginInstance();
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  // Builds the plugin object: it reads and checks its config, starts nothing. A refusal here is
  // a configuration error.
  Status create();
  // Starts it on its event thread (creating it first if needed, and again when it was created
  // for the other mode). On failure nothing it registered is left behind and the message says why.
  Status start(nodeha_mode mode = NODEHA_MODE_ACTIVE);
  // Stops it (see plugin.h for the order). Idempotent.
  void stop();

  const std::string& name() const { return name_; }
  const std::shared_ptr<Library>& library() const { return library_; }
  const std::string& config_json() const { return config_json_; }
  const std::string& where() const { return where_; }
  bool running() const { return running_; }
  // What it was created for (plugin.h `mode`): a follower instance is always fenced.
  nodeha_mode mode() const { return mode_; }
  // Queues `task` on its event thread, behind what is queued there; false when that thread is
  // gone (never created, or stopped). Any thread.
  bool post(Task task) { return loop_ && loop_->post(std::move(task)); }

  static const nodeha_host_api* api();

  // Used by the C API trampolines.
  struct Access;

 private:
  struct Registration {
    enum Kind { kSubscription, kWatch, kLibvirtWatch } kind;
    uint64_t bus_id;  // its id with the bus, or with the libvirt provider (kLibvirtWatch)
    nodeha_release_fn release;
    void* ctx;
    uint64_t local_route = 0;  // its route on the local socket (NODEHA_SUB_LOCAL), 0: none
  };
  void leave(const Registration& r);
  void teardown(bool call_stop);
  uint64_t add_registration(Registration r);
  // Removes and returns it; false when unknown (already removed) or of another kind.
  bool take_registration(uint64_t id, Registration::Kind kind, Registration* out);
  bool live(uint64_t id);
  void release_later(nodeha_release_fn release, void* ctx);

  Services& services_;
  std::string name_;
  std::shared_ptr<Library> library_;
  std::string config_json_;
  std::string where_;
  std::string state_dir_;
  std::unique_ptr<EventLoop> loop_;
  void* self_ = nullptr;
  bool running_ = false;
  nodeha_mode mode_ = NODEHA_MODE_ACTIVE;
  std::atomic<bool> stopping_{false};  // after stop(): nothing new is accepted
  std::mutex mu_;
  std::set<nodeha_metric*> metrics_;  // series it created, removed when it stops
  std::map<uint64_t, Registration> registrations_;
  std::set<uint64_t> timers_;
  uint64_t next_id_ = 1;
  std::unique_ptr<nodeha_host> ctx_;
};

}  // namespace nodeha::host

// The context a plugin gets back in every host call.
struct nodeha_host {
  nodeha::host::PluginInstance* instance;
};
