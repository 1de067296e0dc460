#include "libvirt_provider.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <thread>

namespace nodeha::host {

namespace {

void quiet(void*, virErrorPtr) {}  // errors are read with virGetLastError and reported by callers

// The calling thread's last libvirt error, or `otherwise`.
std::string last_error(const char* otherwise) {
  virErrorPtr e = virGetLastError();
  return e && e->message ? e->message : otherwise;
}

// libvirt's default event loop, once per process and before any connection is opened (libvirt
// delivers events and answers libvirtd's keepalive only through it), on a thread that lives as
// long as the process: it sleeps in poll() while nothing happens.
bool event_loop_running() {
  static const bool running = [] {
    if (virEventRegisterDefaultImpl() < 0) {
      spdlog::warn("libvirt: no event loop ({}): VM changes are seen by polling", last_error("unknown error"));
      return false;
    }
    std::thread([] {
      pthread_setname_np(pthread_self(), "libvirt-events");
      while (virEventRunDefaultImpl() == 0) {
      }
      spdlog::error("libvirt: its event loop failed; VM changes are seen by polling from now on");
    }).detach();
    return true;
  }();
  return running;
}

}  // namespace

struct LibvirtProvider::Relay {
  std::mutex mu;
  LibvirtProvider* owner = nullptr;  // null once the provider is gone
  void* conn = nullptr;              // the provider's current connection
};

// libvirt's callbacks, on its event thread.
struct LibvirtEvents {
  using Relay = std::shared_ptr<LibvirtProvider::Relay>;
  static int lifecycle(virConnectPtr, virDomainPtr dom, int, int, void* opaque) {
    auto& relay = *static_cast<Relay*>(opaque);
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    if (virDomainGetUUIDString(dom, uuid) < 0) uuid[0] = 0;
    std::lock_guard lock(relay->mu);
    if (relay->owner) relay->owner->tell(NODEHA_LIBVIRT_DOMAIN_CHANGED, uuid);
    return 0;
  }
  static void closed(virConnectPtr conn, int, void* opaque) {
    auto& relay = *static_cast<Relay*>(opaque);
    std::lock_guard lock(relay->mu);
    // A connection already replaced may close late: only the current one's loss counts.
    if (relay->owner && relay->conn == conn) relay->owner->flowing(false);
  }
  static void release(void* opaque) { delete static_cast<Relay*>(opaque); }
};

LibvirtProvider::LibvirtProvider(std::string uri) : uri_(std::move(uri)), relay_(std::make_shared<Relay>()) {
  relay_->owner = this;
}

LibvirtProvider::~LibvirtProvider() {
  {
    std::lock_guard lock(relay_->mu);
    relay_->owner = nullptr;
  }
  std::lock_guard lock(mu_);
  if (!conn_) return;
  forget(conn_);
  virConnectClose(static_cast<virConnectPtr>(conn_));
}

Result<void*> LibvirtProvider::connect() {
  std::lock_guard lock(mu_);
  auto c = static_cast<virConnectPtr>(conn_);
  if (c && virConnectIsAlive(c) != 1) {
    forget(c);
    virConnectClose(c);
    conn_ = c = nullptr;
    flowing(false);
  }
  if (!c) {
    virSetErrorFunc(nullptr, &quiet);
    bool events = event_loop_running();
    c = virConnectOpen(uri_.c_str());
    if (!c) return Status(NODEHA_ERR_UNAVAILABLE, fmt::format("libvirt {}: {}", uri_, last_error("cannot connect")));
    conn_ = c;
    if (events) listen(c);
  }
  virConnectRef(c);
  return static_cast<void*>(c);
}

void LibvirtProvider::listen(void* conn) {
  auto c = static_cast<virConnectPtr>(conn);
  {
    std::lock_guard lock(relay_->mu);
    relay_->conn = conn;
  }
  lifecycle_id_ = virConnectDomainEventRegisterAny(c, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                   VIR_DOMAIN_EVENT_CALLBACK(&LibvirtEvents::lifecycle),
                                                   new std::shared_ptr<Relay>(relay_), &LibvirtEvents::release);
  if (lifecycle_id_ < 0) {
    spdlog::warn("libvirt {}: no domain events ({}): VM changes are seen by polling", uri_, last_error("unknown error"));
    return;
  }
  // Without it, a lost connection is noticed at the next connect, not at once.
  close_cb_ = virConnectRegisterCloseCallback(c, &LibvirtEvents::closed, new std::shared_ptr<Relay>(relay_),
                                              &LibvirtEvents::release) == 0;
  flowing(true);
}

void LibvirtProvider::forget(void* conn) {
  auto c = static_cast<virConnectPtr>(conn);
  // On a connection already lost both fail; libvirt frees the registrations with it.
  if (lifecycle_id_ >= 0) virConnectDomainEventDeregisterAny(c, lifecycle_id_);
  if (close_cb_) virConnectUnregisterCloseCallback(c, &LibvirtEvents::closed);
  lifecycle_id_ = -1;
  close_cb_ = false;
  std::lock_guard lock(relay_->mu);
  relay_->conn = nullptr;
}

void LibvirtProvider::flowing(bool on) {
  std::lock_guard lock(watch_mu_);
  if (flowing_ == on) return;
  flowing_ = on;
  for (const auto& [id, w] : watchers_) w(on ? NODEHA_LIBVIRT_EVENTS_FLOW : NODEHA_LIBVIRT_EVENTS_LOST, {});
}

void LibvirtProvider::tell(nodeha_libvirt_event e, std::string_view uuid) {
  std::lock_guard lock(watch_mu_);
  for (const auto& [id, w] : watchers_) w(e, uuid);
}

uint64_t LibvirtProvider::watch(Watcher w) {
  std::lock_guard lock(watch_mu_);
  uint64_t id = next_watch_++;
  w(flowing_ ? NODEHA_LIBVIRT_EVENTS_FLOW : NODEHA_LIBVIRT_EVENTS_LOST, {});
  watchers_.emplace(id, std::move(w));
  return id;
}

void LibvirtProvider::unwatch(uint64_t id) {
  std::lock_guard lock(watch_mu_);
  watchers_.erase(id);
}

}  // namespace nodeha::host
