#include "libvirt_provider.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <fmt/format.h>

namespace nodeha::host {

namespace {
void quiet(void*, virErrorPtr) {}  // errors are read with virGetLastError and reported by callers
}  // namespace

LibvirtProvider::~LibvirtProvider() {
  if (conn_) virConnectClose(static_cast<virConnectPtr>(conn_));
}

Result<void*> LibvirtProvider::connect() {
  std::lock_guard lock(mu_);
  auto c = static_cast<virConnectPtr>(conn_);
  if (c && virConnectIsAlive(c) != 1) {
    virConnectClose(c);
    conn_ = c = nullptr;
  }
  if (!c) {
    virSetErrorFunc(nullptr, &quiet);
    c = virConnectOpen(uri_.c_str());
    if (!c) {
      virErrorPtr e = virGetLastError();
      return Status(NODEHA_ERR_UNAVAILABLE, fmt::format("libvirt {}: {}", uri_, e && e->message ? e->message : "cannot connect"));
    }
    conn_ = c;
  }
  virConnectRef(c);
  return static_cast<void*>(c);
}

}  // namespace nodeha::host
