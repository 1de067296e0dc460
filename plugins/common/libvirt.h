// RAII owners for the libvirt handles plugins use, and errors as text.
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <memory>
#include <string>

namespace nodeha::libvirt {

struct ConnectionCloser {
  void operator()(virConnectPtr c) const { if (c) virConnectClose(c); }
};
struct DomainFreer {
  void operator()(virDomainPtr d) const { if (d) virDomainFree(d); }
};
struct StoragePoolFreer {
  void operator()(virStoragePoolPtr p) const { if (p) virStoragePoolFree(p); }
};
struct StorageVolFreer {
  void operator()(virStorageVolPtr v) const { if (v) virStorageVolFree(v); }
};
using Connection = std::unique_ptr<virConnect, ConnectionCloser>;
using Domain = std::unique_ptr<virDomain, DomainFreer>;
using StoragePool = std::unique_ptr<virStoragePool, StoragePoolFreer>;
using StorageVol = std::unique_ptr<virStorageVol, StorageVolFreer>;

// The last libvirt error of this thread, for people.
inline std::string last_error() {
  virErrorPtr e = virGetLastError();
  return e && e->message ? e->message : "unknown libvirt error";
}

// libvirt's word for a domain state, as heartbeats and VM records carry it.
inline const char* state_name(int state) {
  switch (state) {
    case VIR_DOMAIN_RUNNING: return "running";
    case VIR_DOMAIN_BLOCKED: return "blocked";
    case VIR_DOMAIN_PAUSED: return "paused";
    case VIR_DOMAIN_SHUTDOWN: return "shutdown";
    case VIR_DOMAIN_SHUTOFF: return "shutoff";
    case VIR_DOMAIN_CRASHED: return "crashed";
    case VIR_DOMAIN_PMSUSPENDED: return "pmsuspended";
    default: return "nostate";
  }
}

}  // namespace nodeha::libvirt
