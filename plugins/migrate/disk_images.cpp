#include "disk_images.h"

#include "libvirt.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

namespace nodeha::migrate {

namespace {

using Pool = libvirt::StoragePool;
using Vol = libvirt::StorageVol;

Status failed(const std::string& what) { return Status(NODEHA_ERR_INTERNAL, what + ": " + libvirt::last_error()); }

std::string directory_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_name(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// FNV-1a: a stable, short pool name per directory.
std::string pool_name(const std::string& dir) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : dir) h = (h ^ c) * 1099511628211ull;
  char buf[32];
  std::snprintf(buf, sizeof buf, "nodeha-%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// The active pool over `dir`, refreshed so that it lists the files there now.
Result<Pool> pool_for(virConnectPtr conn, const std::string& dir) {
  Pool pool(virStoragePoolLookupByTargetPath(conn, dir.c_str()));
  if (!pool) {
    std::string xml = "<pool type='dir'><name>" + pool_name(dir) + "</name><target><path>" + vm_ops::escape(dir) +
                      "</path></target></pool>";
    pool.reset(virStoragePoolCreateXML(conn, xml.c_str(), VIR_STORAGE_POOL_CREATE_WITH_BUILD));
    // Another migration may have made it a moment ago.
    if (!pool) pool.reset(virStoragePoolLookupByTargetPath(conn, dir.c_str()));
    if (!pool) return failed("cannot reach directory " + dir + " through a storage pool");
  }
  if (virStoragePoolIsActive(pool.get()) != 1)
    return Status(NODEHA_ERR_INVALID, "the storage pool " + std::string(virStoragePoolGetName(pool.get())) +
                                          " over " + dir + " is not active; start it (virsh pool-start) or undefine it");
  if (virStoragePoolRefresh(pool.get(), 0) < 0) return failed("cannot list " + dir);
  return pool;
}

std::string volume_xml(const DiskCopy& c) {
  std::string xml = "<volume><name>" + vm_ops::escape(base_name(c.path)) + "</name><capacity unit='bytes'>" +
                    std::to_string(c.capacity) + "</capacity><allocation unit='bytes'>0</allocation><target><format type='" +
                    c.format + "'/></target>";
  if (!c.backing.empty())
    xml += "<backingStore><path>" + vm_ops::escape(c.backing) + "</path><format type='" +
           vm_ops::escape(c.backing_format.empty() ? "raw" : c.backing_format) + "'/></backingStore>";
  return xml + "</volume>";
}

}  // namespace

Status read_capacities(virDomainPtr dom, std::vector<DiskCopy>& copies) {
  for (auto& c : copies) {
    virDomainBlockInfo info{};
    if (virDomainGetBlockInfo(dom, c.target.c_str(), &info, 0) < 0) return failed("cannot read the size of disk " + c.target);
    c.capacity = info.capacity;
  }
  return Status::ok();
}

Status create_images(virConnectPtr conn, const std::vector<DiskCopy>& copies, std::vector<std::string>* created) {
  for (const auto& c : copies) {
    auto pool = pool_for(conn, directory_of(c.path));
    if (!pool) return pool.status();
    if (Vol there(virStorageVolLookupByName(pool.value().get(), base_name(c.path).c_str())); there)
      return Status(NODEHA_ERR_INVALID, c.path + " exists on the destination already: it may be another VM's disk, "
                                                 "and nodeha does not write over it; if it is a leftover, remove it there");
    Vol vol(virStorageVolCreateXML(pool.value().get(), volume_xml(c).c_str(), 0));
    if (!vol) return failed("cannot make " + c.path + " on the destination");
    created->push_back(c.path);
  }
  return Status::ok();
}

Status remove_images(virConnectPtr conn, const std::vector<std::string>& paths) {
  std::string left;
  for (const auto& path : paths) {
    auto pool = pool_for(conn, directory_of(path));
    Vol vol(pool ? virStorageVolLookupByName(pool.value().get(), base_name(path).c_str()) : nullptr);
    if (pool && !vol) continue;  // gone already
    if (vol && virStorageVolDelete(vol.get(), 0) == 0) continue;
    left += (left.empty() ? "" : "; ") + path + " (" + (pool ? libvirt::last_error() : pool.status().message()) + ")";
  }
  return left.empty() ? Status::ok() : Status(NODEHA_ERR_INTERNAL, "not removed: " + left);
}

Result<bool> has_domain(virConnectPtr conn, const std::string& uuid) {
  libvirt::Domain dom(virDomainLookupByUUIDString(conn, uuid.c_str()));
  if (dom) return true;
  virErrorPtr e = virGetLastError();
  if (e && e->code == VIR_ERR_NO_DOMAIN) return false;
  return failed("cannot ask for domain " + uuid);
}

Status DiskImages::prepare(virDomainPtr dom) {
  if (copies_.empty()) return Status::ok();
  if (auto s = read_capacities(dom, copies_); !s) return s;
  dest_.reset(virConnectOpen(dest_uri_.c_str()));
  if (!dest_)
    return Status(NODEHA_ERR_UNAVAILABLE, "cannot reach the destination's libvirtd " + dest_uri_ +
                                              " to make the disk images: " + libvirt::last_error());
  return create_images(dest_.get(), copies_, &created_);
}

std::vector<std::string> DiskImages::paths() const {
  std::vector<std::string> out;
  for (const auto& c : copies_) out.push_back(c.path);
  return out;
}

std::string DiskImages::after_success(virConnectPtr source) {
  if (copies_.empty() || !dest_) return "";
  auto here = has_domain(source, uuid_);
  if (!here) return "source images kept (" + describe(copies_) + "): " + here.status().message();
  if (here.value()) return "source images kept (" + describe(copies_) + "): the domain is still defined here";
  // libvirt said the guest runs there; the destination says so too before the only other copy goes.
  auto there = has_domain(dest_.get(), uuid_);
  if (!there || !there.value())
    return "source images kept (" + describe(copies_) + "): the destination " +
           (there ? std::string("has no such domain") : "cannot be asked: " + there.status().message());
  if (auto s = remove_images(source, paths()); !s) return "source images: " + s.message();
  return "source images removed (" + describe(copies_) + ")";
}

std::string DiskImages::after_failure() {
  if (created_.empty()) return copies_.empty() ? "" : "source images kept";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  Result<bool> there = has_domain(dest_.get(), uuid_);
  while (there && there.value() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    there = has_domain(dest_.get(), uuid_);
  }
  if (!there) return "source images kept; the destination's kept too, as it cannot be asked: " + there.status().message();
  if (there.value()) return "source images kept; the destination's kept too, as it still has the domain";
  if (auto s = remove_images(dest_.get(), created_); !s) return "source images kept; destination images " + s.message();
  return "source images kept; the destination's removed";
}

}  // namespace nodeha::migrate
