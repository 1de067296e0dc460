// Which local disks travel with a live migration, and whether they can (pure). libvirt copies a
// disk with VIR_MIGRATE_NON_SHARED_INC into an image that must exist on the destination, at the
// same path: disk_images.h makes it there before the copy. Only the top image moves; a backing
// file below it must already be where the destination finds it, on shared storage.
#pragma once

#include "vm_ops.h"

#include <nodeha/plugin.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace nodeha::migrate {

struct DiskCopy {
  std::string target;          // vda
  std::string path;            // the top image, the same path on both nodes
  std::string format;          // raw | qcow2
  uint64_t capacity = 0;       // bytes the guest sees (virDomainGetBlockInfo); 0 until read
  std::string backing;         // the image below it, on shared storage; empty for none
  std::string backing_format;  // its format
};

// The writable local disks of a domain (vm_ops::local_disk_paths), each one file disk in raw or
// qcow2 whose backing file, if any, is under `shared_paths`. A disk that cannot be copied is a
// bad_value naming the disk and what to do. Read-only local disks (an ISO) are not copied: they
// must exist on the destination already, as libvirt requires.
Result<std::vector<DiskCopy>> plan_copies(const std::vector<vm_ops::Disk>& disks, const std::vector<std::string>& shared_paths);

// "vda /var/lib/libvirt/images/a.qcow2, vdb ..." for messages.
std::string describe(const std::vector<DiskCopy>& copies);

}  // namespace nodeha::migrate
