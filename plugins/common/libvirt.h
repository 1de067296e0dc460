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
using Connection = std::unique_ptr<virConnect, ConnectionCloser>;
using Domain = std::unique_ptr<virDomain, DomainFreer>;

// The last libvirt error of this thread, for people.
inline std::string last_error() {
  virErrorPtr e = virGetLastError();
  return e && e->message ? e->message : "unknown libvirt error";
}

}  // namespace nodeha::libvirt
