#include "domain_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <nodeha/plugin.hpp>

#include "image_chain.h"
#include "safe_xml.h"
#include "vm_ops.h"

namespace nodeha::vms {
namespace {

std::string echo(const std::string& v) { return "'" + (v.size() > 64 ? v.substr(0, 64) + "..." : v) + "'"; }

// Why a chardev that connects to `host` (QEMU on the host opens the connection, the guest talks on
// it) could reach the host's own services, or nothing: only a literal address off the host is
// sure not to. A name may resolve to 127.0.1.1 (Debian's own host name does).
std::optional<std::string> host_reaching(const std::string& host) {
  unsigned char v6[16];
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    uint32_t a = ntohl(v4.s_addr);
    if ((a >> 24) == 127 || a == 0 || (a >> 16) == 0xa9fe) return "is the host itself (loopback, unspecified or link-local)";
    return std::nullopt;
  }
  if (::inet_pton(AF_INET6, host.c_str(), v6) == 1) {
    static const unsigned char loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char any[16] = {};
    bool mapped = std::all_of(v6, v6 + 10, [](unsigned char c) { return c == 0; }) && v6[10] == 0xff && v6[11] == 0xff;
    if (!std::memcmp(v6, loopback, 16) || !std::memcmp(v6, any, 16) || (v6[0] == 0xfe && (v6[1] & 0xc0) == 0x80) ||
        (mapped && v6[12] == 127))
      return "is the host itself (loopback, unspecified or link-local)";
    return std::nullopt;
  }
  return "is a name, which may resolve to the host itself: give an address";
}

// libvirt's per-driver extension namespaces (qemu, lxc, bhyve, xen, ...): each passes options
// straight to the hypervisor or the host, around libvirt's own checks.
constexpr std::string_view kDriverNamespaces = "http://libvirt.org/schemas/domain/";

// Where a host path sits decides where it may point.
enum class Area { Storage, Firmware, Host };

// Device nodes every guest may be given: its tap and vhost-net defaults, and randomness.
const char* const kHarmlessDevices[] = {"/dev/net/tun", "/dev/vhost-net", "/dev/random", "/dev/urandom", "/dev/hwrng"};

// Attributes that always name a host path, and those that do when they hold a '/' (else they
// name a guest device or a host interface: <boot dev='hd'>, <source dev='eth0'>).
const char* const kPathAttributes[] = {"file",       "dir",   "path",     "socket",  "evdev",
                                       "rendernode", "xauth", "template", "logFile", "runtimeDir"};
const char* const kMaybePathAttributes[] = {"dev", "tap", "vhost"};
// Elements whose text is a host path.
const char* const kPathElements[] = {"loader", "nvram", "kernel", "initrd", "dtb", "table", "path", "database"};

const std::vector<std::string> kDiskTypes = {"file",    "block", "dir",       "volume",
                                             "network", "nvme",  "vhostuser", "vhostvdpa"};
const std::vector<std::string> kFilesystemTypes = {"mount", "bind", "block", "file", "template", "ram", "volume"};
// Image formats a disk may declare: raw names no other file, qcow2's header is read
// (image_chain.h). vmdk, vhdx, qed, ... can name other host files (extents, backing files).
const std::vector<std::string> kImageFormats = {"raw", "qcow2"};

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string list_text(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i] + "\"";
  return s + "]";
}

// `raw` with repeated slashes collapsed and no trailing slash; empty when it is not absolute or
// has a "." or ".." component.
std::string normal_path(std::string_view raw) {
  if (raw.empty() || raw.front() != '/') return {};
  std::string out;
  size_t i = 0;
  while (i < raw.size()) {
    size_t end = raw.find('/', i);
    if (end == std::string_view::npos) end = raw.size();
    std::string_view part = raw.substr(i, end - i);
    if (part == "." || part == "..") return {};
    if (!part.empty()) out += "/" + std::string(part);
    i = end + 1;
  }
  return out.empty() ? "/" : out;
}

bool under_any(const std::string& path, const std::vector<std::string>& dirs) {
  return std::any_of(dirs.begin(), dirs.end(), [&](const std::string& d) { return vm_ops::path_under(path, d); });
}

class Checker {
 public:
  // `images`, when given, receives every file disk's image, for the chain check.
  Checker(const DomainPolicy& p, std::vector<ImageRef>* images) : p_(p), images_(images) {}

  std::optional<std::string> domain(const xmlNode* root) {
    root_ = root;
    walk(root, false);
    return refusal_;
  }

 private:
  void refuse(std::string why) {
    if (!refusal_) refusal_ = std::move(why);
  }

  void walk(const xmlNode* n, bool in_metadata) {
    if (refusal_) return;
    namespaces(n);
    in_metadata = in_metadata || (n->parent == root_ && xml_name(n) == "metadata");  // stored, never acted on
    if (!in_metadata) element(n);
    for (const xmlNode* c = n->children; c && !refusal_; c = c->next)
      if (c->type == XML_ELEMENT_NODE) walk(c, in_metadata);
    if (!in_metadata && !refusal_) after_children(n);
  }

  void namespaces(const xmlNode* n) {
    auto driver = [](const xmlNs* ns) {
      return ns && ns->href &&
             std::string_view(reinterpret_cast<const char*>(ns->href)).rfind(kDriverNamespaces, 0) == 0;
    };
    auto qualified = [](const xmlNs* ns, const std::string& name) {
      return ns->prefix ? reinterpret_cast<const char*>(ns->prefix) + (":" + name) : name;
    };
    if (driver(n->ns))
      return refuse("element <" + qualified(n->ns, xml_name(n)) + "> is in libvirt's driver namespace " +
                    reinterpret_cast<const char*>(n->ns->href) +
                    ", which passes options straight to the hypervisor (never allowed)");
    for (const xmlAttr* a = n->properties; a; a = a->next)
      if (driver(a->ns))
        return refuse("attribute " + qualified(a->ns, reinterpret_cast<const char*>(a->name)) + " of <" + xml_name(n) +
                      "> is in libvirt's driver namespace " + reinterpret_cast<const char*>(a->ns->href) +
                      " (never allowed)");
  }

  // The element just below <domain> or <devices> that holds `n`: the device (or os, sysinfo, ...).
  const xmlNode* owner(const xmlNode* n) const {
    while (n != root_ && n->parent != root_ && xml_name(n->parent) != "devices") n = n->parent;
    return n;
  }
  std::string what(const xmlNode* n) const {
    const xmlNode* o = owner(n);
    return o == n || xml_name(o) == "os" ? xml_name(n) : xml_name(o) + " " + xml_name(n);
  }
  Area area(const xmlNode* n) const {
    for (const xmlNode* a = n; a && a != root_; a = a->parent)
      if (xml_name(a) == "loader" || xml_name(a) == "nvram") return Area::Firmware;
    std::string o = xml_name(owner(n));
    return o == "disk" || o == "filesystem" || o == "memory" || o == "os" || o == "sysinfo" ? Area::Storage
                                                                                            : Area::Host;
  }

  void host_device(const std::string& what) {
    if (!p_.allow_host_devices) refuse(what + " passes a host device through (allow_host_devices = false)");
  }
  void never(const std::string& what, const std::string& why) { refuse(what + " " + why + " (never allowed)"); }

  void element(const xmlNode* n) {
    const std::string name = xml_name(n), type = xml_attribute(n, "type");
    if (name == "script" || name == "downscript")
      return never(what(n) + " " + xml_attribute(n, "path"), "runs a host program");
    if (name == "binary" && xml_has_attribute(n, "path"))
      return never(what(n) + " " + xml_attribute(n, "path"), "runs a host program");
    if (name == "bootloader") return never(what(n), "runs a host program");
    if (name == "emulator") return emulator(n);
    if (name == "hostdev") return host_device("hostdev");
    if (name == "interface" && type == "hostdev") return host_device("interface type 'hostdev'");
    if (name == "disk" && (type == "nvme" || type == "vhostvdpa")) return host_device("disk type '" + type + "'");
    if (name == "disk" && !type.empty() && !contains(kDiskTypes, type))
      return refuse("disk type '" + type + "' is not one the policy knows");
    if (name == "filesystem" && !type.empty() && !contains(kFilesystemTypes, type))
      return refuse("filesystem type '" + type + "' is not one the policy knows");
    if (name == "backend" && xml_name(owner(n)) == "tpm" && type == "passthrough")
      return host_device("tpm backend type 'passthrough'");
    if (name == "input" && (type == "passthrough" || type == "evdev")) return host_device("input type '" + type + "'");
    if (name == "smartcard" && xml_attribute(n, "mode").rfind("host", 0) == 0)
      return host_device("smartcard mode '" + xml_attribute(n, "mode") + "'");
    if (name == "seclabel") return seclabel(n);
    if (name == "interface" && type == "user" && !p_.allow_host_network)
      return refuse("interface type 'user' lets the guest reach the host's own services (its gateway is the "
                    "host's loopback) (allow_host_network = false)");
    if (name == "source" && xml_has_attribute(n, "host") && !p_.allow_host_network) {
      std::string owner_type = xml_attribute(n->parent, "type");
      if ((owner_type == "tcp" || owner_type == "udp") && xml_attribute(n, "mode") != "bind")
        if (auto why = host_reaching(xml_attribute(n, "host")))
          return refuse(what(n) + " " + owner_type + " to " + echo(xml_attribute(n, "host")) + " " + *why +
                        " (allow_host_network = false)");
    }
    if ((name == "driver" && xml_name(n->parent) == "disk") || (name == "format" && xml_name(n->parent) == "backingStore"))
      if (!type.empty() && !contains(kImageFormats, type))
        return refuse(what(n) + " format '" + type + "' can name other host files; only " + list_text(kImageFormats) +
                      " are allowed");
    if (name == "target") return;  // the guest's side: <target dev='vda'>, <target dir='tag'>
    paths(n);
  }

  // QEMU's confinement (DAC user, AppArmor/SELinux profile) is what keeps a guest that escapes
  // QEMU from being root on the host: only libvirt's own dynamic labels.
  void seclabel(const xmlNode* n) {
    if (p_.allow_unconfined) return;
    std::string type = xml_attribute(n, "type");
    if (type == "none" || type == "static" || xml_attribute(n, "relabel") == "no")
      return refuse(what(n) + (type.empty() ? "" : " type '" + type + "'") +
                    (xml_attribute(n, "relabel") == "no" ? " relabel 'no'" : "") +
                    " weakens QEMU's confinement (allow_unconfined = false)");
    for (const xmlNode* c = n->children; c; c = c->next)
      if (c->type == XML_ELEMENT_NODE && (xml_name(c) == "label" || xml_name(c) == "baselabel"))
        return refuse(what(n) + " <" + xml_name(c) + "> chooses QEMU's security label (allow_unconfined = false)");
  }

  // The disk's image file and declared format, for the chain check.
  void image(const xmlNode* disk) {
    std::string format = "raw", file;
    for (const xmlNode* c = disk->children; c; c = c->next) {
      if (c->type != XML_ELEMENT_NODE) continue;
      if (xml_name(c) == "driver" && !xml_attribute(c, "type").empty()) format = xml_attribute(c, "type");
      if (xml_name(c) == "source") file = normal_path(xml_attribute(c, "file"));
    }
    if (!file.empty() && !vm_ops::path_under(file, "/dev")) images_->push_back({file, format});
  }

  void after_children(const xmlNode* n) {
    const std::string name = xml_name(n), type = xml_attribute(n, "type");
    if ((name == "disk" || name == "filesystem") && type == "block" && !p_.allow_block_devices)
      return refuse(name + " type 'block' is a host block device (allow_block_devices = false)");
    if (name == "disk" && type == "network")
      for (const xmlNode* c = n->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xml_name(c) == "driver" && xml_attribute(c, "type") == "qcow2")
          return refuse("disk type 'network' in format 'qcow2': its header, which may name host files, cannot be "
                        "checked here; use raw");
    if (name == "disk" && (type == "file" || type.empty()) && images_) image(n);
  }

  void emulator(const xmlNode* n) {
    std::string e = xml_text(n);
    if (!contains(p_.emulators, e))
      refuse("emulator " + e + " is not an allowed emulator (emulators = " + list_text(p_.emulators) +
             "; empty means those libvirt's capabilities name)");
  }

  void paths(const xmlNode* n) {
    const std::string name = xml_name(n);
    for (const char* attr : kPathAttributes)
      if (xml_has_attribute(n, attr)) path(n, xml_attribute(n, attr));
    for (const char* attr : kMaybePathAttributes)
      if (std::string v = xml_attribute(n, attr); v.find('/') != std::string::npos) path(n, v);
    for (const char* element : kPathElements)
      if (name == element)
        if (std::string v = xml_text(n); !v.empty()) path(n, v);
    if (name == "backend" && xml_name(owner(n)) == "rng" && xml_attribute(n, "model") == "random")
      if (std::string v = xml_text(n); !v.empty()) path(n, v);
    if (xml_has_attribute(n, "pool") && area(n) == Area::Storage &&
        !contains(p_.storage_pools, xml_attribute(n, "pool")))
      refuse(what(n) + " pool '" + xml_attribute(n, "pool") +
             "' is not one of the storage pools (storage_pools = " + list_text(p_.storage_pools) + ")");
  }

  void path(const xmlNode* n, const std::string& raw) {
    const std::string where = what(n) + " " + raw;
    std::string p = normal_path(raw);
    if (p.empty()) return refuse(where + " is not an absolute path without '.' or '..' components");
    const Area a = area(n);
    if (vm_ops::path_under(p, "/dev")) {
      if (std::find(std::begin(kHarmlessDevices), std::end(kHarmlessDevices), p) != std::end(kHarmlessDevices)) return;
      if (a == Area::Storage && !p_.allow_block_devices)
        return refuse(where + " is a host block device (allow_block_devices = false)");
      if (a != Area::Storage && !p_.allow_host_devices)
        return refuse(where + " is a host device (allow_host_devices = false)");
      return;
    }
    if (a == Area::Storage && !under_any(p, p_.storage_paths))
      return refuse(where + " is outside the storage paths (storage_paths = " + list_text(p_.storage_paths) + ")");
    if (a == Area::Firmware && !under_any(p, p_.storage_paths) && !under_any(p, p_.firmware_paths))
      return refuse(
          where + " is outside the storage and firmware paths (firmware_paths = " + list_text(p_.firmware_paths) + ")");
    if (a == Area::Host && !under_any(p, p_.chardev_paths))
      return refuse(where + " is outside the paths for host files and sockets (chardev_paths = " +
                    list_text(p_.chardev_paths) + ")");
  }

  const DomainPolicy& p_;
  std::vector<ImageRef>* images_;
  const xmlNode* root_ = nullptr;
  std::optional<std::string> refusal_;
};

std::vector<std::string> read_paths(const nlohmann::json& config, const char* key) {
  std::vector<std::string> out;
  for (const auto& raw : config.at(key).get<std::vector<std::string>>()) {
    std::string p = normal_path(raw);
    if (p.empty())
      throw ConfigError(std::string(key) + ": \"" + raw + "\" is not an absolute path without '.' or '..' components");
    out.push_back(p);
  }
  return out;
}

}  // namespace

DomainPolicy read_domain_policy(const nlohmann::json& config) {
  DomainPolicy p;
  p.storage_paths = read_paths(config, "storage_paths");
  p.storage_pools = config.at("storage_pools").get<std::vector<std::string>>();
  p.firmware_paths = read_paths(config, "firmware_paths");
  p.chardev_paths = read_paths(config, "chardev_paths");
  p.emulators = read_paths(config, "emulators");
  p.allow_block_devices = config.at("allow_block_devices").get<bool>();
  p.allow_host_devices = config.at("allow_host_devices").get<bool>();
  p.allow_unconfined = config.at("allow_unconfined").get<bool>();
  p.allow_host_network = config.at("allow_host_network").get<bool>();
  return p;
}

std::optional<command::Error> check_domain(std::string_view xml, const DomainPolicy& policy) {
  return check_domain(xml, policy, nullptr);
}

std::optional<command::Error> check_domain(std::string_view xml, const DomainPolicy& policy,
                                           std::vector<ImageRef>* images) {
  std::string error;
  XmlDoc doc = parse_untrusted_xml(xml, &error);
  if (!doc) return command::Error{command::kBadValue, "the domain XML " + error};
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (!root || xml_name(root) != "domain")
    return command::Error{command::kBadValue,
                          "the domain XML's root element is <" + xml_name(root) + ">, not <domain>"};
  if (auto why = Checker(policy, images).domain(root))
    return command::Error{kPolicyRefused, "domain refused by policy: " + *why};
  return std::nullopt;
}

std::vector<std::string> capability_emulators(std::string_view capabilities_xml) {
  std::string error;
  XmlDoc doc = parse_untrusted_xml(capabilities_xml, &error);
  std::vector<std::string> out;
  std::function<void(const xmlNode*)> walk = [&](const xmlNode* n) {
    for (; n; n = n->next) {
      if (n->type != XML_ELEMENT_NODE) continue;
      if (xml_name(n) == "emulator" && !contains(out, xml_text(n))) out.push_back(xml_text(n));
      walk(n->children);
    }
  };
  if (doc) walk(xmlDocGetRootElement(doc.get()));
  return out;
}

Result<std::vector<std::string>> libvirt_emulators(virConnectPtr conn) {
  char* caps = virConnectGetCapabilities(conn);
  if (!caps) return vm_ops::last_error("libvirt's capabilities (its emulators)");
  auto out = capability_emulators(caps);
  free(caps);
  return out;
}

std::optional<command::Error> admit_domain(virConnectPtr conn, std::string_view xml, DomainPolicy policy) {
  if (policy.emulators.empty()) {
    auto emulators = libvirt_emulators(conn);
    if (!emulators) return command::Error{command::kUnavailable, emulators.status().message()};
    policy.emulators = std::move(emulators.value());
  }
  std::vector<ImageRef> images;
  if (auto refused = check_domain(xml, policy, &images)) return refused;
  for (const auto& image : images)
    if (auto why = check_image_chain(image, policy.storage_paths))
      return command::Error{kPolicyRefused, "domain refused by policy: " + *why};
  return std::nullopt;
}

}  // namespace nodeha::vms
