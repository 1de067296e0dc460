// The agent's libvirt connection: opened on first use, reopened when libvirtd restarted.
#pragma once

#include <nodeha/plugin.hpp>

#include <mutex>
#include <string>

namespace nodeha::host {

class LibvirtProvider {
 public:
  explicit LibvirtProvider(std::string uri) : uri_(std::move(uri)) {}
  ~LibvirtProvider();
  LibvirtProvider(const LibvirtProvider&) = delete;
  LibvirtProvider& operator=(const LibvirtProvider&) = delete;

  // A new reference (virConnectPtr) the caller releases with virConnectClose.
  Result<void*> connect();
  const std::string& uri() const { return uri_; }

 private:
  std::string uri_;
  std::mutex mu_;
  void* conn_ = nullptr;  // virConnectPtr, owned
};

}  // namespace nodeha::host
