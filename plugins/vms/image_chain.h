// The host files a disk image names itself, which the domain XML does not show: a qcow2 image's
// backing file and external data file, read from its header. A guest writes its own raw disk; an
// XML that calls that file qcow2 would make QEMU (and libvirt's labelling) open whatever backing
// file the guest wrote into it: /dev/sda, /etc/shadow. So the agent reads the chain before it
// defines a domain, and every file in it must be under the storage paths (domain_policy.h).
//
// Blocking (file reads); pure otherwise. Only qcow2 names other files among the formats the
// policy allows (raw, qcow2).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace nodeha::vms {

struct ImageRef {
  std::string path;    // absolute, as the XML or a header names it
  std::string format;  // "qcow2" or "raw" (the driver type; raw when the XML names none)
};

// Why the chain of `image` leaves `storage_paths` (or cannot be read as the format says), or
// nothing. A missing file names nothing (libvirt refuses to start it). Depth at most 16.
std::optional<std::string> check_image_chain(const ImageRef& image, const std::vector<std::string>& storage_paths);

}  // namespace nodeha::vms
