// The images of a local-disk migration, made and removed through a libvirtd's storage API: the
// destination's before the copy (libvirt copies only into an image that exists), the source's
// after a success, the destination's after a failure. Through libvirt, not the file system, so
// that the node-local path works too (there only the peer's libvirtd is reachable), and the files
// are those the daemon and its QEMU see.
//
// A directory is reached through a storage pool: an active one the operator defined for it, or
// else a transient `dir` pool `nodeha-<hash of the directory>` made here and left in place (it
// vanishes with the daemon; removing it could pull it from under a concurrent migration).
//
// Blocking: call from a worker.
#pragma once

#include "disk_plan.h"
#include "libvirt.h"

#include <libvirt/libvirt.h>

#include <string>
#include <vector>

namespace nodeha::migrate {

// Reads each disk's size as the guest sees it (virDomainGetBlockInfo).
Status read_capacities(virDomainPtr dom, std::vector<DiskCopy>& copies);

// Makes every image, empty, with the same size, format and backing file. Refuses (INVALID) when
// one exists already: it could be another VM's disk, and nodeha never writes over data it did
// not make. `created` gets the paths made, also on failure (the caller removes them).
Status create_images(virConnectPtr conn, const std::vector<DiskCopy>& copies, std::vector<std::string>* created);

// Removes the images; the error names every one that is left.
Status remove_images(virConnectPtr conn, const std::vector<std::string>& paths);

// Whether `conn`'s daemon has a domain with this uuid (running or only defined); an error when it
// cannot tell.
Result<bool> has_domain(virConnectPtr conn, const std::string& uuid);

// The images of one migration's local disks, from their making on the destination to the removal
// of the copy that is no longer the guest's. One per migration, on its worker thread.
class DiskImages {
 public:
  DiskImages(std::string uuid, std::string dest_uri, std::vector<DiskCopy> copies)
      : uuid_(std::move(uuid)), dest_uri_(std::move(dest_uri)), copies_(std::move(copies)) {}

  const std::vector<DiskCopy>& copies() const { return copies_; }

  // Reads the sizes and makes the destination's images; nothing to do without local disks.
  Status prepare(virDomainPtr dom);
  // The guest runs on the destination: the source's images go, once `source` has no such domain
  // and the destination has it.
  // What became of them, for people.
  std::string after_success(virConnectPtr source);
  // The guest stayed here: the destination images made for it go, once the destination has no
  // such domain (it ends its incoming copy as the migration fails, which may take a moment).
  std::string after_failure();

 private:
  std::vector<std::string> paths() const;

  std::string uuid_;
  std::string dest_uri_;
  std::vector<DiskCopy> copies_;
  libvirt::Connection dest_;
  std::vector<std::string> created_;
};

}  // namespace nodeha::migrate
