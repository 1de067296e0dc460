#include "loader.h"

#include <boost/dll/shared_library.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <dlfcn.h>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <unistd.h>
#include <sys/stat.h>

namespace nodeha::host {

namespace fs = std::filesystem;

struct Library::Handle {
  boost::dll::shared_library lib;
};

Library::~Library() {
  handle_.reset();  // unload first, then remove the copy it was loaded from
  if (!copy_.empty()) {
    std::error_code ec;
    fs::remove(copy_, ec);
  }
}

namespace {
// Libraries loaded now, by path. The dynamic loader hands back an already loaded object for a
// path it knows, so a library rebuilt in place is loaded from a private copy instead.
std::mutex registry_mu;
std::map<std::string, std::weak_ptr<Library>> registry;

bool loaded_with_other_identity(const std::string& path, const FileIdentity& id) {
  std::lock_guard lock(registry_mu);
  auto it = registry.find(path);
  if (it == registry.end()) return false;
  auto lib = it->second.lock();
  return lib && !(lib->identity() == id);
}

Result<std::string> private_copy(const std::string& path) {
  static std::atomic<int> counter{0};
  fs::path copy = fs::temp_directory_path() /
                  fmt::format("nodeha-{}-{}-{}", getpid(), counter++, fs::path(path).filename().string());
  std::error_code ec;
  fs::copy_file(path, copy, fs::copy_options::overwrite_existing, ec);
  if (ec) return Status(NODEHA_ERR_INTERNAL, fmt::format("cannot copy {} to load its new version: {}", path, ec.message()));
  return copy.string();
}
}  // namespace

FileIdentity identify(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return FileIdentity{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                      static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                      static_cast<int64_t>(st.st_size)};
}

Result<std::string> resolve_library(const std::string& spec, const std::vector<std::string>& search_path,
                                    const std::string& config_dir) {
  if (spec.empty()) return Status(NODEHA_ERR_INVALID, "empty library name");
  if (spec.find('/') != std::string::npos) {
    fs::path p(spec);
    if (p.is_relative()) p = fs::path(config_dir) / p;
    if (!fs::exists(p)) return Status(NODEHA_ERR_NOT_FOUND, fmt::format("library {} does not exist", p.string()));
    return fs::absolute(p).lexically_normal().string();
  }
  std::vector<std::string> tried;
  for (const auto& dir : search_path) {
    fs::path base = fs::path(dir).is_relative() ? fs::path(config_dir) / dir : fs::path(dir);
    for (const auto& name : {"nodeha_" + spec + ".so", spec + ".so", spec}) {
      fs::path p = base / name;
      tried.push_back(p.string());
      if (fs::is_regular_file(p)) return fs::absolute(p).lexically_normal().string();
    }
  }
  if (search_path.empty())
    return Status(NODEHA_ERR_NOT_FOUND,
                  fmt::format("library '{}' not found: [host] plugin_path is empty (name a path, or set plugin_path)", spec));
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  return Status(NODEHA_ERR_NOT_FOUND, fmt::format("library '{}' not found (tried {})", spec, list));
}

Status check_version(const nodeha_plugin& d, const std::string& path) {
  if (d.struct_size < offsetof(nodeha_plugin, api_minor) + sizeof(uint32_t))
    return Status(NODEHA_ERR_INVALID, fmt::format("{}: the plugin descriptor is truncated ({} bytes)", path, d.struct_size));
  if (d.api_major != NODEHA_PLUGIN_API_MAJOR)
    return Status(NODEHA_ERR_INVALID,
                  fmt::format("{}: built for plugin interface {}.{}, this host speaks {}.{}: rebuild the plugin "
                              "against the nodeha SDK {}.x",
                              path, d.api_major, d.api_minor, NODEHA_PLUGIN_API_MAJOR, NODEHA_PLUGIN_API_MINOR,
                              NODEHA_PLUGIN_API_MAJOR));
  if (d.struct_size < offsetof(nodeha_plugin, destroy) + sizeof(d.destroy) || !d.name || !*d.name || !d.create ||
      !d.start || !d.stop || !d.destroy)
    return Status(NODEHA_ERR_INVALID, fmt::format("{}: the plugin descriptor lacks a name or a lifecycle function", path));
  return Status::ok();
}

Result<std::shared_ptr<Library>> load_library(const std::string& spec, const std::vector<std::string>& search_path,
                                             const std::string& config_dir) {
  auto path = resolve_library(spec, search_path, config_dir);
  if (!path) return path.status();
  std::shared_ptr<Library> lib(new Library());
  lib->path_ = path.value();
  lib->identity_ = identify(lib->path_);
  lib->handle_ = std::make_unique<Library::Handle>();
  std::string load_from = lib->path_;
  if (loaded_with_other_identity(lib->path_, lib->identity_)) {
    auto copy = private_copy(lib->path_);
    if (!copy) return copy.status();
    load_from = lib->copy_ = copy.value();
  }
  boost::system::error_code ec;
  lib->handle_->lib.load(boost::dll::fs::path(load_from),
                         boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
  if (ec) {
    // Boost keeps only an error code; ask the dynamic loader again for the reason in words.
    std::string why = ec.message();
    if (void* h = dlopen(load_from.c_str(), RTLD_NOW | RTLD_LOCAL)) dlclose(h);
    else if (const char* e = dlerror()) why = e;
    return Status(NODEHA_ERR_INVALID, fmt::format("cannot load library {}: {}", lib->path_, why));
  }
  if (!lib->handle_->lib.has(NODEHA_PLUGIN_ENTRY_SYMBOL))
    return Status(NODEHA_ERR_INVALID,
                  fmt::format("{} has no entry symbol '{}': not a nodeha plugin (define it with NODEHA_PLUGIN)",
                              lib->path_, NODEHA_PLUGIN_ENTRY_SYMBOL));
  auto entry = lib->handle_->lib.get<const nodeha_plugin*()>(NODEHA_PLUGIN_ENTRY_SYMBOL);
  lib->descriptor_ = entry();
  if (!lib->descriptor_)
    return Status(NODEHA_ERR_INVALID, fmt::format("{}: the entry symbol returned no descriptor", lib->path_));
  if (auto s = check_version(*lib->descriptor_, lib->path_); !s) return s;
  std::lock_guard lock(registry_mu);
  auto& slot = registry[lib->path_];
  if (!slot.lock() || lib->copy_.empty()) slot = lib;
  return lib;
}

}  // namespace nodeha::host
