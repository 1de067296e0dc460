#include "vm_ops.h"

#include <cctype>
#include <cstdlib>
#include <iterator>

namespace nodeha::vm_ops {
namespace {

nodeha_status classify(int code) {
  switch (code) {
    case VIR_ERR_NO_DOMAIN: return NODEHA_ERR_NOT_FOUND;
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
    case VIR_ERR_XML_INVALID_SCHEMA:
    case VIR_ERR_INVALID_ARG:
    case VIR_ERR_OPERATION_INVALID:
    case VIR_ERR_CONFIG_UNSUPPORTED:
    case VIR_ERR_DOM_EXIST: return NODEHA_ERR_INVALID;
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_RPC:
    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_OPERATION_TIMEOUT: return NODEHA_ERR_UNAVAILABLE;
    default: return NODEHA_ERR_INTERNAL;
  }
}

int last_code() {
  virErrorPtr e = virGetLastError();
  return e ? e->code : VIR_ERR_OK;
}

// --- a reader of the XML libvirt writes: tags, attributes, the five entities ---

std::string unescape(std::string_view s) {
  static const std::pair<std::string_view, char> kEntities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&apos;", '\''}, {"&quot;", '"'}};
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '&')
      for (const auto& [entity, ch] : kEntities)
        if (s.substr(i, entity.size()) == entity) {
          c = ch;
          i += entity.size() - 1;
          break;
        }
    out += c;
  }
  return out;
}

// The position of the next tag `<name` (exactly that name) at or after `from`, or npos.
size_t find_tag(std::string_view xml, std::string_view name, size_t from = 0) {
  for (size_t pos = xml.find('<', from); pos != std::string_view::npos; pos = xml.find('<', pos + 1)) {
    if (xml.substr(pos + 1, name.size()) != name) continue;
    size_t after = pos + 1 + name.size();
    if (after < xml.size() &&
        (std::isspace(static_cast<unsigned char>(xml[after])) || xml[after] == '>' || xml[after] == '/'))
      return pos;
  }
  return std::string_view::npos;
}

// The inside of the tag that starts at `pos`: "disk type='file' device='disk'".
std::string_view tag_text(std::string_view xml, size_t pos) {
  size_t end = xml.find('>', pos);
  return end == std::string_view::npos ? std::string_view() : xml.substr(pos + 1, end - pos - 1);
}

// The value of attribute `name` of a tag; empty when absent.
std::string attribute(std::string_view tag, std::string_view name) {
  for (size_t pos = tag.find(name); pos != std::string_view::npos; pos = tag.find(name, pos + 1)) {
    if (pos == 0 || !std::isspace(static_cast<unsigned char>(tag[pos - 1]))) continue;
    size_t eq = tag.find_first_not_of(" \t\r\n", pos + name.size());
    if (eq == std::string_view::npos || tag[eq] != '=') continue;
    size_t quote = tag.find_first_not_of(" \t\r\n", eq + 1);
    if (quote == std::string_view::npos || (tag[quote] != '\'' && tag[quote] != '"')) continue;
    size_t close = tag.find(tag[quote], quote + 1);
    if (close == std::string_view::npos) return {};
    return unescape(tag.substr(quote + 1, close - quote - 1));
  }
  return {};
}

Disk read_disk(std::string_view open, std::string_view body) {
  Disk d;
  d.type = attribute(open, "type");
  d.device = attribute(open, "device");
  if (d.device.empty()) d.device = "disk";
  if (size_t s = find_tag(body, "source"); s != std::string_view::npos) {
    std::string_view tag = tag_text(body, s);
    for (const char* attr : {"file", "dev", "dir"})
      if (d.source.empty()) d.source = attribute(tag, attr);
    if (d.source.empty() && d.type == "volume") d.source = attribute(tag, "pool") + "/" + attribute(tag, "volume");
    if (d.source.empty() && d.type == "network") d.source = attribute(tag, "protocol") + ":" + attribute(tag, "name");
  }
  if (size_t t = find_tag(body, "target"); t != std::string_view::npos) d.target = attribute(tag_text(body, t), "dev");
  if (size_t f = find_tag(body, "driver"); f != std::string_view::npos) d.format = attribute(tag_text(body, f), "type");
  // <backingStore/> (none) or <backingStore type='file'><format type='raw'/><source file='..'/>...
  if (size_t b = find_tag(body, "backingStore"); b != std::string_view::npos) {
    std::string_view open_tag = tag_text(body, b);
    if (open_tag.empty() || open_tag.back() != '/') {
      std::string_view inner = body.substr(b + open_tag.size() + 2);
      if (size_t s = find_tag(inner, "source"); s != std::string_view::npos) d.backing = attribute(tag_text(inner, s), "file");
      if (size_t f = find_tag(inner, "format"); f != std::string_view::npos) d.backing_format = attribute(tag_text(inner, f), "type");
    }
  }
  d.readonly = find_tag(body, "readonly") != std::string_view::npos;
  return d;
}

}  // namespace

Result<libvirt::Connection> connect(const Host& host) {
  auto raw = host.libvirt_connect();
  if (!raw) return raw.status();
  return libvirt::Connection(static_cast<virConnectPtr>(raw.value()));
}

Result<libvirt::Connection> connect_alone(const Host& host) {
  auto shared = connect(host);
  if (!shared) return shared;
  char* uri = virConnectGetURI(shared.value().get());
  if (!uri) return last_error("libvirt URI");
  std::string text(uri);
  free(uri);
  if (text.rfind("test:", 0) == 0) return shared;
  virConnectPtr own = virConnectOpen(text.c_str());
  if (!own) return last_error("connect " + text);
  return libvirt::Connection(own);
}

Status last_error(const std::string& what) {
  return Status(classify(last_code()), what + ": " + libvirt::last_error());
}

const char* error_code(const Status& s) {
  switch (s.code()) {
    case NODEHA_ERR_NOT_FOUND: return "unknown_vm";
    case NODEHA_ERR_INVALID: return "bad_value";
    case NODEHA_ERR_UNAVAILABLE:
    case NODEHA_ERR_TIMEOUT: return "unavailable";
    default: return "internal";
  }
}

std::vector<Disk> parse_disks(std::string_view xml) {
  std::vector<Disk> out;
  for (size_t pos = find_tag(xml, "disk"); pos != std::string_view::npos; pos = find_tag(xml, "disk", pos + 1)) {
    std::string_view open = tag_text(xml, pos);
    size_t body_start = pos + open.size() + 2;
    size_t body_end = !open.empty() && open.back() == '/' ? body_start : xml.find("</disk>", body_start);
    if (body_end == std::string_view::npos) body_end = xml.size();
    out.push_back(read_disk(open, xml.substr(body_start, body_end - body_start)));
  }
  return out;
}

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&apos;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

bool path_under(std::string_view path, std::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir.empty() || path.empty()) return false;
  if (dir == "/") return path[0] == '/';
  return path.substr(0, dir.size()) == dir && (path.size() == dir.size() || path[dir.size()] == '/');
}

std::vector<std::string> local_disk_paths(const std::vector<Disk>& disks,
                                          const std::vector<std::string>& shared_paths) {
  std::vector<std::string> out;
  for (const auto& d : disks) {
    if (d.type == "network" || d.source.empty()) continue;  // shared, or an empty CD-ROM / floppy drive
    bool shared = false;
    if (d.type == "file" || d.type == "block")
      for (const auto& dir : shared_paths) shared = shared || path_under(d.source, dir);
    if (!shared) out.push_back(d.source);
  }
  return out;
}

const char* reason_name(int state, int reason) {
  static const char* const kRunning[] = {"unknown",       "booted",   "migrated",           "restored",
                                         "from_snapshot", "unpaused", "migration_canceled", "save_canceled",
                                         "wakeup",        "crashed",  "postcopy",           "postcopy_failed"};
  static const char* const kPaused[] = {
      "unknown",       "user",          "migration", "save",    "dump",        "ioerror",  "watchdog",
      "from_snapshot", "shutting_down", "snapshot",  "crashed", "starting_up", "postcopy", "postcopy_failed",
      "api_error"};
  static const char* const kShutoff[] = {"unknown", "shutdown", "destroyed",     "crashed", "migrated",
                                         "saved",   "failed",   "from_snapshot", "daemon"};
  static const char* const kCrashed[] = {"unknown", "panicked"};
  static const char* const kShutdown[] = {"unknown", "user"};
  auto pick = [reason](const char* const* names, size_t n) {
    return reason >= 0 && size_t(reason) < n ? names[reason] : "unknown";
  };
  switch (state) {
    case VIR_DOMAIN_RUNNING: return pick(kRunning, std::size(kRunning));
    case VIR_DOMAIN_PAUSED: return pick(kPaused, std::size(kPaused));
    case VIR_DOMAIN_SHUTOFF: return pick(kShutoff, std::size(kShutoff));
    case VIR_DOMAIN_CRASHED: return pick(kCrashed, std::size(kCrashed));
    case VIR_DOMAIN_SHUTDOWN: return pick(kShutdown, std::size(kShutdown));
    default: return "unknown";
  }
}

Result<std::vector<libvirt::Domain>> list_all(virConnectPtr conn) {
  virDomainPtr* doms = nullptr;
  int n = virConnectListAllDomains(conn, &doms, 0);
  if (n < 0) return last_error("list domains");
  std::vector<libvirt::Domain> out;
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out.emplace_back(doms[i]);
  free(doms);
  return out;
}

Result<libvirt::Domain> lookup(virConnectPtr conn, const std::string& uuid) {
  virDomainPtr d = virDomainLookupByUUIDString(conn, uuid.c_str());
  if (!d) return last_error("domain " + uuid);
  return libvirt::Domain(d);
}

Result<Facts> facts(virDomainPtr dom) {
  Facts f;
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(dom, uuid) < 0) return last_error("domain uuid");
  f.uuid = uuid;
  const char* name = virDomainGetName(dom);
  f.name = name ? name : "";
  if (virDomainGetState(dom, &f.state, &f.reason, 0) < 0) return last_error("state of " + f.uuid);
  virDomainInfo info{};
  if (virDomainGetInfo(dom, &info) < 0) return last_error("info of " + f.uuid);
  f.vcpus = info.nrVirtCpu;
  f.memory_mib = static_cast<int64_t>(info.maxMem / 1024);
  f.persistent = virDomainIsPersistent(dom) != 0;  // -1 (cannot tell): as defined
  return f;
}

Result<std::string> definition(virDomainPtr dom) {
  char* xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
  if (!xml) return last_error("definition");
  std::string out(xml);
  free(xml);
  return out;
}

int64_t disk_gib(virDomainPtr dom, const std::vector<Disk>& disks) {
  constexpr unsigned long long kGib = 1024ull * 1024 * 1024;
  unsigned long long bytes = 0;
  for (const auto& d : disks) {
    // Network disks are not sized: it would be a round trip to the storage, at every definition.
    if (d.source.empty() || d.target.empty() || d.type == "network" || d.device == "cdrom" || d.device == "floppy")
      continue;
    virDomainBlockInfo info{};
    if (virDomainGetBlockInfo(dom, d.target.c_str(), &info, 0) == 0) bytes += info.capacity;
  }
  return static_cast<int64_t>((bytes + kGib - 1) / kGib);
}

bool active(int state) { return state != VIR_DOMAIN_SHUTOFF && state != VIR_DOMAIN_NOSTATE; }

bool migrating(int state, int reason) {
  return state == VIR_DOMAIN_PAUSED && (reason == VIR_DOMAIN_PAUSED_MIGRATION || reason == VIR_DOMAIN_PAUSED_POSTCOPY ||
                                        reason == VIR_DOMAIN_PAUSED_POSTCOPY_FAILED);
}

bool arriving(int state, int reason, bool persistent) {
  return migrating(state, reason) || (!persistent && state != VIR_DOMAIN_RUNNING && state != VIR_DOMAIN_BLOCKED);
}

bool has_job(virDomainPtr dom) {
  virDomainJobInfo job{};
  return virDomainGetJobInfo(dom, &job) == 0 && job.type != VIR_DOMAIN_JOB_NONE;
}

Status start(virDomainPtr dom) { return virDomainCreate(dom) == 0 ? Status::ok() : last_error("start"); }

Status destroy(virDomainPtr dom) {
  if (virDomainDestroy(dom) == 0) return Status::ok();
  if (last_code() == VIR_ERR_OPERATION_INVALID && virDomainIsActive(dom) == 0)
    return Status::ok();  // stopped meanwhile
  return last_error("destroy");
}

Status shutdown(virDomainPtr dom) { return virDomainShutdown(dom) == 0 ? Status::ok() : last_error("shutdown"); }

Status undefine(virDomainPtr dom, Nvram nvram) {
  unsigned int files = nvram == Nvram::Remove ? VIR_DOMAIN_UNDEFINE_NVRAM : VIR_DOMAIN_UNDEFINE_KEEP_NVRAM;
  // Drivers refuse flags they do not know (the test driver has no NVRAM): fewer each time.
  const unsigned int kFlagSets[] = {VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                        VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | files,
                                    VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA, 0};
  for (unsigned int flags : kFlagSets) {
    if (virDomainUndefineFlags(dom, flags) == 0) return Status::ok();
    int code = last_code();
    if (code != VIR_ERR_INVALID_ARG && code != VIR_ERR_NO_SUPPORT) break;
  }
  return last_error("undefine");
}

Result<std::string> define(virConnectPtr conn, const std::string& xml) {
  libvirt::Domain d(virDomainDefineXML(conn, xml.c_str()));
  if (!d) return last_error("define");
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(d.get(), uuid) < 0) return last_error("defined domain's uuid");
  return std::string(uuid);
}

}  // namespace nodeha::vm_ops
