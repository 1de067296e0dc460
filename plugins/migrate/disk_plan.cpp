#include "disk_plan.h"

namespace nodeha::migrate {

namespace {

bool shared(const std::string& path, const std::vector<std::string>& shared_paths) {
  for (const auto& dir : shared_paths)
    if (vm_ops::path_under(path, dir)) return true;
  return false;
}

Status cannot(const vm_ops::Disk& d, const std::string& why) {
  return Status(NODEHA_ERR_INVALID, "disk " + d.target + " (" + d.source + ") cannot be copied: " + why);
}

}  // namespace

Result<std::vector<DiskCopy>> plan_copies(const std::vector<vm_ops::Disk>& disks, const std::vector<std::string>& shared_paths) {
  std::vector<DiskCopy> out;
  for (const auto& d : disks) {
    if (d.readonly || d.device == "cdrom" || d.device == "floppy") continue;
    if (vm_ops::local_disk_paths({d}, shared_paths).empty()) continue;  // shared, network, or no medium
    if (d.target.empty()) return cannot(d, "libvirt names no target device for it");
    if (d.type != "file")
      return cannot(d, "it is a local " + d.type + " disk; only file disks are copied (move it by hand, or put it on shared storage)");
    if (d.format != "raw" && d.format != "qcow2")
      return cannot(d, "its format is " + (d.format.empty() ? std::string("not given") : d.format) + "; raw and qcow2 are copied");
    if (!d.backing.empty() && !shared(d.backing, shared_paths))
      return cannot(d, "its backing file " + d.backing +
                           " is on this node; only the top image is copied, so the backing file must be on shared storage "
                           "(the migrate plugin's shared_paths), or the image flattened first (qemu-img convert)");
    if (!d.backing.empty() && d.format != "qcow2") return cannot(d, "a " + d.format + " image has no backing file");
    out.push_back({d.target, d.source, d.format, 0, d.backing, d.backing_format});
  }
  return out;
}

std::string describe(const std::vector<DiskCopy>& copies) {
  std::string out;
  for (const auto& c : copies) out += (out.empty() ? "" : ", ") + c.target + " " + c.path;
  return out;
}

}  // namespace nodeha::migrate
