// The agent's libvirt connection: opened on first use, reopened when libvirtd restarted. It runs
// libvirt's event loop on a thread of its own (registered before the first connection is opened,
// as libvirt requires) and registers for domain lifecycle events on every connection it opens,
// which it hands to its watchers (plugin.h `libvirt_watch`).
#pragma once

#include <nodeha/plugin.hpp>

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <memory>

namespace nodeha::host {

class LibvirtProvider {
 public:
  // Runs on libvirt's event thread: keep it short, never call libvirt from it.
  using Watcher = std::function<void(nodeha_libvirt_event, std::string_view uuid)>;

  explicit LibvirtProvider(std::string uri);
  ~LibvirtProvider();
  LibvirtProvider(const LibvirtProvider&) = delete;
  LibvirtProvider& operator=(const LibvirtProvider&) = delete;

  // A new reference (virConnectPtr) the caller releases with virConnectClose. Blocking.
  Result<void*> connect();
  const std::string& uri() const { return uri_; }

  // `w` is told at once whether events flow now, then every event. Once unwatch returns, `w` is
  // never called again.
  uint64_t watch(Watcher w);
  void unwatch(uint64_t id);

 private:
  struct Relay;
  friend struct LibvirtEvents;

  void listen(void* conn);  // registers for events on a connection just opened (mu_ held)
  void forget(void* conn);  // drops those registrations, before it is closed (mu_ held)
  void tell(nodeha_libvirt_event e, std::string_view uuid);
  void flowing(bool on);

  std::string uri_;
  std::mutex mu_;          // the connection; never taken on libvirt's event thread
  void* conn_ = nullptr;   // virConnectPtr, owned
  int lifecycle_id_ = -1;  // its lifecycle event registration, -1: none
  bool close_cb_ = false;  // its close callback is registered
  // What libvirt's callbacks reach this through: it outlives this object until libvirt frees the
  // last registration, so that a callback in flight while this one goes finds no owner.
  std::shared_ptr<Relay> relay_;

  std::mutex watch_mu_;  // watchers_ and flowing_; taken on the event thread, never around libvirt calls
  std::map<uint64_t, Watcher> watchers_;
  uint64_t next_watch_ = 1;
  bool flowing_ = false;
};

}  // namespace nodeha::host
