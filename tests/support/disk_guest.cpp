#include "disk_guest.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

namespace nodeha::test {

namespace {

// Single-quoted for /bin/sh.
std::string q(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

bool overlaid(const std::string& path) {
  for (const std::string top : {"/run", "/var", "/etc/libvirt"})
    if (path == top || path.rfind(top + "/", 0) == 0) return true;
  return false;
}

bool fail(std::string* error, const std::string& why) {
  if (error) *error = why;
  return false;
}

// `script` under /bin/sh in the daemon's namespace; false with its stderr in `error`.
bool sh_in_mounts(Libvirtd& daemon, const std::string& what, const std::string& script, std::string* error) {
  std::string err;
  int status = daemon.run_in_mounts({"/bin/sh", "-ec", script}, nullptr, &err);
  return status == 0 || fail(error, what + " failed (exit " + std::to_string(status) + "): " + err);
}

// A raw image with the writer at sector 0; random after it, or sparse zeros.
std::string raw_image_script(const std::string& path, int size_mib, bool fill_random) {
  std::string make = fill_random ? "dd if=/dev/urandom of=" + q(path) + " bs=1M count=" + std::to_string(size_mib) +
                                       " iflag=fullblock status=none"
                                 : "truncate -s " + std::to_string(size_mib) + "M " + q(path);
  return "mkdir -p \"$(dirname " + q(path) + ")\"; rm -f " + q(path) + "; " + make + "; dd if=" + q(kDiskWriterBin) +
         " of=" + q(path) + " conv=notrunc status=none";
}

bool valid_request(const std::string& path, int size_mib, std::string* error) {
  if (path.empty() || path[0] != '/') return fail(error, "image path must be absolute, not '" + path + "'");
  if (size_mib < 1) return fail(error, "image size must be at least 1 MiB, not " + std::to_string(size_mib));
  return true;
}

}  // namespace

bool make_raw_disk(Libvirtd& daemon, const std::string& path, int size_mib, bool fill_random, std::string* error) {
  return valid_request(path, size_mib, error) &&
         sh_in_mounts(daemon, "making raw image " + path, raw_image_script(path, size_mib, fill_random), error);
}

bool make_qcow2_over_backing(Libvirtd& daemon, const std::string& top_path, const std::string& backing_path,
                             int size_mib, std::string* error) {
  if (!valid_request(top_path, size_mib, error) || !valid_request(backing_path, size_mib, error)) return false;
  if (overlaid(backing_path))
    return fail(error, "backing file " + backing_path + " must be on shared storage, outside /var, /run and /etc/libvirt");
  if (!std::filesystem::exists(backing_path) &&
      !sh_in_mounts(daemon, "making backing file " + backing_path, raw_image_script(backing_path, size_mib, true), error))
    return false;
  return sh_in_mounts(daemon, "making qcow2 image " + top_path,
                      "mkdir -p \"$(dirname " + q(top_path) + ")\"; rm -f " + q(top_path) + "; qemu-img create -q -f qcow2 -b " +
                          q(backing_path) + " -F raw " + q(top_path) + " " + std::to_string(size_mib) + "M",
                      error);
}

DiskWrites read_disk_writes(Libvirtd& daemon, const std::string& path, GuestIs guest) {
  DiskWrites out;
  // Outside the overlays, so that this process reads the very file qemu-img wrote.
  static std::atomic<int> reads{0};
  std::string raw = daemon.dir().file("read-" + std::to_string(++reads) + ".raw");
  std::string err;
  int status = daemon.run_in_mounts({"qemu-img", "convert", "-U", "-m", "1", "-O", "raw", path, raw}, nullptr, &err);
  if (status != 0) {
    std::filesystem::remove(raw);
    out.problem = "qemu-img convert " + path + " failed (exit " + std::to_string(status) + "): " + err;
    return out;
  }
  int fd = open(raw.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
    if (fd >= 0) close(fd);
    std::filesystem::remove(raw);
    out.problem = "cannot read the converted image of " + path;
    return out;
  }
  void* map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    out.problem = "cannot map the converted image of " + path;
  } else {
    out = check_disk_writes(std::string_view(static_cast<const char*>(map), static_cast<size_t>(st.st_size)),
                            guest);
    munmap(map, static_cast<size_t>(st.st_size));
  }
  std::filesystem::remove(raw);
  return out;
}

std::string image_info(Libvirtd& daemon, const std::string& path) {
  std::string out;
  return daemon.run_in_mounts({"qemu-img", "info", "-U", "--output=json", path}, &out) == 0 ? out : "";
}

}  // namespace nodeha::test
