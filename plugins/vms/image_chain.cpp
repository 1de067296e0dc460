#include "image_chain.h"

#include "vm_ops.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace nodeha::vms {
namespace {

constexpr uint32_t kQcow2Magic = 0x514649fb;  // "QFI\xfb"
constexpr uint32_t kDataFileExtension = 0x44415441;
constexpr size_t kMaxHeader = 64 * 1024;  // a qcow2 header and its extensions fit in the first cluster
constexpr int kMaxDepth = 16;

uint32_t be32(const unsigned char* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
uint64_t be64(const unsigned char* p) { return uint64_t(be32(p)) << 32 | be32(p + 4); }

struct Named {
  std::string backing, data_file;
  std::string error;
};

// The first kMaxHeader bytes, or fewer; nullopt when the file does not exist.
std::optional<std::string> head(const std::string& path, std::string* error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno != ENOENT) *error = "cannot read image " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::string buf(kMaxHeader, '\0');
  ssize_t n = ::pread(fd, buf.data(), buf.size(), 0);
  int saved = errno;
  ::close(fd);
  if (n < 0) {
    *error = "cannot read image " + path + ": " + std::strerror(saved);
    return std::nullopt;
  }
  buf.resize(static_cast<size_t>(n));
  return buf;
}

// The files a qcow2 header names (docs: QEMU's qcow2 specification, header and extensions).
Named qcow2_names(const std::string& path, const std::string& h) {
  Named out;
  auto bytes = reinterpret_cast<const unsigned char*>(h.data());
  if (h.size() < 72 || be32(bytes) != kQcow2Magic) {
    out.error = "image " + path + " is declared qcow2 but has no qcow2 header";
    return out;
  }
  uint32_t version = be32(bytes + 4);
  uint64_t offset = be64(bytes + 8);
  uint32_t size = be32(bytes + 16);
  if (offset && size) {
    if (size > 1023 || offset > h.size() || size > h.size() - offset) {
      out.error = "image " + path + " names a backing file outside its first 64 KiB or over 1023 bytes";
      return out;
    }
    out.backing.assign(h, static_cast<size_t>(offset), size);
  }
  size_t ext = version >= 3 && h.size() >= 104 ? be32(bytes + 100) : 72;
  while (ext + 8 <= h.size()) {
    uint32_t type = be32(bytes + ext), len = be32(bytes + ext + 4);
    if (type == 0) break;
    if (len > h.size() - ext - 8) {
      out.error = "image " + path + " has a header extension past its first 64 KiB";
      return out;
    }
    if (type == kDataFileExtension) out.data_file.assign(h, ext + 8, len);
    ext += 8 + ((len + 7) & ~size_t{7});
  }
  return out;
}

// A name from a header: absolute, or relative to the image's directory (as QEMU resolves it).
// Protocol names ("nbd:", "http://") are not files; QEMU opens them over the network.
std::string resolve(const std::string& image, const std::string& name) {
  if (name.find(':') != std::string::npos && name.front() != '/') return name;
  if (name.front() == '/') return name;
  return image.substr(0, image.rfind('/') + 1) + name;
}

}  // namespace

std::optional<std::string> check_image_chain(const ImageRef& image, const std::vector<std::string>& storage_paths) {
  ImageRef at = image;
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    if (at.format != "qcow2") return std::nullopt;  // raw names no other file
    std::string error;
    auto h = head(at.path, &error);
    if (!h) return error.empty() ? std::nullopt : std::optional<std::string>(error);
    Named named = qcow2_names(at.path, *h);
    if (!named.error.empty()) return named.error;
    for (const auto& [what, name] : {std::pair<const char*, const std::string&>{"backing file", named.backing},
                                     {"data file", named.data_file}}) {
      if (name.empty()) continue;
      std::string file = resolve(at.path, name);
      if (file.front() != '/')
        return "image " + at.path + " names " + what + " '" + file + "', which is not a file (a network source)";
      if (file.find("/./") != std::string::npos || file.find("/../") != std::string::npos ||
          file.ends_with("/..") || file.ends_with("/."))
        return "image " + at.path + " names " + what + " " + file + ", a path with '.' or '..' components";
      if (!std::any_of(storage_paths.begin(), storage_paths.end(),
                       [&](const std::string& d) { return vm_ops::path_under(file, d); }))
        return "image " + at.path + " names " + what + " " + file + ", outside the storage paths";
    }
    if (named.backing.empty()) return std::nullopt;
    // The backing file's own format: qcow2 if it says so, else raw (QEMU's default without probing).
    std::string next = resolve(at.path, named.backing), ignored;
    auto nh = head(next, &ignored);
    bool qcow2 = nh && nh->size() >= 4 && be32(reinterpret_cast<const unsigned char*>(nh->data())) == kQcow2Magic;
    at = {next, qcow2 ? "qcow2" : "raw"};
  }
  return "image " + image.path + " has a backing chain deeper than " + std::to_string(kMaxDepth);
}

}  // namespace nodeha::vms
