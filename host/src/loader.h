// Finds, loads and checks plugin libraries. A library stays loaded as long as anything that came
// out of it (its descriptor, an instance) is alive: hold the shared_ptr.
#pragma once

#include <nodeha/plugin.h>
#include <nodeha/plugin.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace nodeha::host {

struct FileIdentity {
  uint64_t device = 0, inode = 0;
  int64_t mtime_ns = 0, size = 0;
  bool operator==(const FileIdentity&) const = default;
};

class Library {
 public:
  ~Library();
  const std::string& path() const { return path_; }
  const FileIdentity& identity() const { return identity_; }
  const nodeha_plugin& descriptor() const { return *descriptor_; }
  // Whether a following controller runs it too (1.5, NODEHA_PLUGIN_FOLLOWER); an older
  // descriptor has no flags and says no.
  bool serves_followers() const {
    const nodeha_plugin& d = *descriptor_;
    return d.struct_size >= offsetof(nodeha_plugin, flags) + sizeof(d.flags) && (d.flags & NODEHA_PLUGIN_FOLLOWER);
  }

 private:
  friend Result<std::shared_ptr<Library>> load_library(const std::string&, const std::vector<std::string>&,
                                                       const std::string&);
  Library() = default;
  struct Handle;
  std::unique_ptr<Handle> handle_;
  std::string path_;
  std::string copy_;  // a private copy loaded instead of path_, removed after unloading
  FileIdentity identity_;
  const nodeha_plugin* descriptor_ = nullptr;
};

// Resolves `spec`: a path (relative to `config_dir` unless absolute) when it contains '/', else
// a name looked up in `search_path` as nodeha_<spec>.so, <spec>.so, then <spec>.
Result<std::string> resolve_library(const std::string& spec, const std::vector<std::string>& search_path,
                                    const std::string& config_dir);

// Loads and checks the entry symbol and the interface version. Messages name the path and why.
Result<std::shared_ptr<Library>> load_library(const std::string& spec, const std::vector<std::string>& search_path,
                                             const std::string& config_dir);

// Checks a descriptor's interface version against this host's (same major).
Status check_version(const nodeha_plugin& d, const std::string& path);

FileIdentity identify(const std::string& path);

}  // namespace nodeha::host
