#include "libvirtd.h"

#include "libvirt.h"
#include "vm_ops.h"

#include <gtest/gtest.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <csignal>
#include <cstdio>
#include <dirent.h>
#include <filesystem>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <random>

namespace nodeha::test {

namespace {

void quiet(void*, virErrorPtr) {}  // polling a daemon that is down is expected: no stderr noise

std::string last_error() {
  virErrorPtr e = virGetLastError();
  return e && e->message ? e->message : "unknown libvirt error";
}

// A connection closed on scope exit; null when the daemon does not answer.
struct Conn {
  explicit Conn(const std::string& uri) {
    virSetErrorFunc(nullptr, &quiet);
    c = virConnectOpen(uri.c_str());
  }
  ~Conn() {
    if (c) virConnectClose(c);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  explicit operator bool() const { return c != nullptr; }
  virConnectPtr c = nullptr;
};

// Single-quoted for /bin/sh.
std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}


std::string read_cmdline(const std::string& pid) {
  std::string s = read_file("/proc/" + pid + "/cmdline");
  for (auto& ch : s)
    if (ch == '\0') ch = ' ';
  return s;
}

}  // namespace

Libvirtd::Libvirtd(LibvirtdOptions options, std::chrono::milliseconds timeout) : options_(std::move(options)) {
  uri_ = "qemu+unix:///system?socket=" + dir_.file("sock/libvirt-sock");
  // The overlays would hide the daemon's own dir if it lived below them (TMPDIR=/var/tmp, say).
  for (const std::string top : {"/run/", "/var/", "/etc/libvirt/"})
    if (dir_.path().rfind(top, 0) == 0) {
      ADD_FAILURE() << "Libvirtd needs TMPDIR outside /run, /var and /etc/libvirt, not " << dir_.path();
      return;
    }
  write_configs();
  if (!start(timeout)) ADD_FAILURE() << "isolated libvirtd did not answer within " << timeout.count() << " ms:\n" << log();
}

void Libvirtd::write_configs() {
  const std::string d = dir_.path();
  std::filesystem::create_directories(d + "/sock");
  std::filesystem::create_directories(d + "/log");
  for (const char* layer : {"etc_libvirt", "run", "var"}) {
    std::filesystem::create_directories(d + "/ov/" + layer + "/upper");
    std::filesystem::create_directories(d + "/ov/" + layer + "/work");
  }
  std::string host_uuid = read_file("/proc/sys/kernel/random/uuid");
  while (!host_uuid.empty() && host_uuid.back() == '\n') host_uuid.pop_back();
  // Unix sockets (and TCP inside a network namespace), no auth: the test process connects as root.
  dir_.write("libvirtd.conf",
             "unix_sock_dir = \"" + d + "/sock\"\n"
             "unix_sock_ro_perms = \"0777\"\nunix_sock_rw_perms = \"0777\"\nunix_sock_admin_perms = \"0700\"\n"
             "auth_unix_ro = \"none\"\nauth_unix_rw = \"none\"\n"
             "listen_tls = 0\n" +
             (options_.netns.empty() ? std::string("listen_tcp = 0\n")
                                     : "listen_tcp = 1\nlisten_addr = \"0.0.0.0\"\ntcp_port = \"16509\"\nauth_tcp = \"none\"\n") +
             "host_uuid = \"" + host_uuid + "\"\n"
             "log_outputs = \"3:file:" + d + "/log/libvirtd.log\"\n");
  // A window of 32 migration ports of its own, at random among 200 (49152-55551): libvirt checks
  // that a port is free before it hands it out, but two daemons (or tests) checking at once could
  // both pick the same one. migration_address stays unset: libvirt refuses 127.x there; the
  // migration URI (tcp://127.0.0.1) and listen address are given per migration instead.
  std::mt19937 rng{std::random_device{}()};
  port_min_ = 49152 + 32 * static_cast<int>(std::uniform_int_distribution<int>(0, 199)(rng));
  port_max_ = port_min_ + 31;
  // Seen by the daemon as /etc/libvirt/qemu.conf through the overlay.
  dir_.write("ov/etc_libvirt/upper/qemu.conf",
             "user = \"root\"\ngroup = \"root\"\n"
             "dynamic_ownership = 0\nremember_owner = 0\n"
             "security_driver = \"none\"\n"
             "cgroup_controllers = [ ]\nnamespaces = [ ]\n"
             "stdio_handler = \"file\"\n"
             "migration_port_min = " + std::to_string(port_min_) + "\nmigration_port_max = " + std::to_string(port_max_) + "\n");
  // A privileged libvirtd resolves its built-in default user/group libvirt-qemu before it reads
  // qemu.conf: when the machine has none, the namespace gets patched copies of passwd/group.
  if (!getpwnam("libvirt-qemu"))
    dir_.write("passwd", read_file("/etc/passwd") +
                             "libvirt-qemu:x:64055:64055:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n");
  if (!getgrnam("libvirt-qemu")) dir_.write("group", read_file("/etc/group") + "libvirt-qemu:x:64055:\n");
}

bool Libvirtd::mount_namespace() {
  if (holder_ && holder_->running()) return true;
  const std::string d = dir_.path();
  if (holder_) {
    // The namespace died with every process in it (a power loss): the machine boots with an
    // empty /run, so libvirtd finds its guests defined and shut off, not a stale runtime state.
    holder_->wait_exit(5s);
    for (const char* sub : {"upper", "work"}) {
      std::filesystem::remove_all(d + "/ov/run/" + sub);
      std::filesystem::create_directories(d + "/ov/run/" + sub);
    }
  }
  auto q = [](const std::string& s) { return sh_quote(s); };
  std::string ready = d + "/ns.ready";
  std::filesystem::remove(ready);
  std::string script;
  if (std::filesystem::exists(d + "/passwd")) script += "mount --bind " + q(d + "/passwd") + " /etc/passwd && ";
  if (std::filesystem::exists(d + "/group")) script += "mount --bind " + q(d + "/group") + " /etc/group && ";
  auto overlay = [&](const std::string& name, const std::string& layer, const std::string& target) {
    return "mount -t overlay " + name + " -o " +
           q("lowerdir=" + target + ",upperdir=" + d + "/ov/" + layer + "/upper,workdir=" + d + "/ov/" + layer + "/work") +
           " " + target + " && ";
  };
  script += overlay("nodeha_etc", "etc_libvirt", "/etc/libvirt");
  script += overlay("nodeha_run", "run", "/run");
  script += overlay("nodeha_var", "var", "/var");
  script += "touch " + q(ready) + " && exec sleep infinity";
  std::vector<std::string> argv{"unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", script};
  if (!options_.netns.empty()) argv.insert(argv.begin(), {"nsenter", "--net=/run/netns/" + options_.netns, "--"});
  holder_ = std::make_unique<Process>(argv, d + "/log/namespace.log");
  return wait_until([&] { return !holder_->running() || std::filesystem::exists(ready); }, 10s) && holder_->running();
}

void Libvirtd::launch() {
  const std::string d = dir_.path();
  ++starts_;
  // Pinned to one CPU: QEMU's capabilities cache records the host CPUID, which differs per vCPU on
  // some machines; an unpinned daemon would re-probe QEMU (seconds) at random restarts.
  // The holder sits in the daemon's network namespace too (when it has one): -n enters it.
  std::vector<std::string> argv{"nsenter", "-t", std::to_string(holder_->pid()), "-m"};
  if (!options_.netns.empty()) argv.push_back("-n");
  for (std::string a : {"--", "taskset", "-c", "0", "/usr/sbin/libvirtd", "--config"}) argv.push_back(a);
  argv.push_back(d + "/libvirtd.conf");
  argv.push_back("--pid-file");
  argv.push_back(d + "/libvirtd.pid");
  if (!options_.netns.empty()) argv.push_back("--listen");
  proc_ = std::make_unique<Process>(argv, d + "/log/stdout-" + std::to_string(starts_) + ".log");
}

bool Libvirtd::answers() const {
  Conn conn(uri_);
  if (!conn) return false;
  unsigned long v = 0;
  return virConnectGetLibVersion(conn.c, &v) == 0;
}

bool Libvirtd::wait_answers(std::chrono::milliseconds timeout) const {
  return wait_until([&] { return !proc_->running() || answers(); }, timeout) && proc_->running();
}

bool Libvirtd::start(std::chrono::milliseconds timeout) {
  if (running()) return answers() || wait_answers(timeout);
  if (!mount_namespace()) {
    ADD_FAILURE() << "cannot set up libvirtd's mount namespace: " << read_file(dir_.file("log/namespace.log"));
    return false;
  }
  launch();
  return wait_answers(timeout);
}

void Libvirtd::kill() {
  if (!running()) return;
  proc_->signal(SIGKILL);
  proc_->wait_exit(5s);
}

bool Libvirtd::probe_qemu(std::string* error) const {
  Conn conn(uri_);
  char* caps = conn ? virConnectGetDomainCapabilities(conn.c, "/usr/bin/qemu-system-x86_64", "x86_64", "pc",
                                                      access("/dev/kvm", R_OK | W_OK) == 0 ? "kvm" : "qemu", 0)
                    : nullptr;
  bool ok = caps != nullptr;
  if (!ok && error) *error = "domain capabilities of " + uri_ + ": " + last_error();
  free(caps);
  return ok;
}

namespace {

// A one-vCPU pc guest; `os_extra` and `devices` go into <os> and <devices>.
std::string domain_xml(const std::string& name, const std::string& uuid, int memory_mib, const std::string& os_extra,
                       const std::string& devices) {
  bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
  return std::string("<domain type='") + (kvm ? "kvm" : "qemu") + "'>\n"
         "  <name>" + vm_ops::escape(name) + "</name>\n"
         "  <uuid>" + vm_ops::escape(uuid) + "</uuid>\n"
         "  <memory unit='MiB'>" + std::to_string(memory_mib) + "</memory>\n"
         "  <vcpu>1</vcpu>\n"
         "  <os><type arch='x86_64' machine='pc'>hvm</type>" + os_extra + "</os>\n"
         "  <clock offset='utc'/>\n"
         "  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>\n"
         "  <devices>\n"
         "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n" + devices +
         "    <controller type='usb' model='none'/>\n"
         "    <memballoon model='none'/>\n"
         "  </devices>\n"
         "</domain>\n";
}

}  // namespace

bool Libvirtd::define_and_start_xml(const std::string& name, const std::string& uuid, const std::string& xml,
                                    std::string* error) {
  auto fail = [&](const std::string& what) {
    if (error) *error = what + ": " + last_error();
    return false;
  };
  Conn conn(uri_);
  if (!conn) return fail("connect " + uri_);
  virDomainPtr dom = virDomainDefineXML(conn.c, xml.c_str());
  if (!dom) return fail("define " + name);
  guests_.push_back(uuid);  // from here on the destructor cleans it up
  int rc = virDomainCreate(dom);
  virDomainFree(dom);
  if (rc < 0) return fail("start " + name);
  return true;
}

bool Libvirtd::define_and_start(const std::string& name, const std::string& uuid, int memory_mib, std::string* error) {
  return define_and_start_xml(name, uuid, domain_xml(name, uuid, memory_mib, "", ""), error);
}

bool Libvirtd::define_and_start_with_disk(const std::string& name, const std::string& uuid, int memory_mib,
                                          const DiskSpec& disk, std::string* error) {
  auto refuse = [&](const std::string& why) {
    if (error) *error = "disk of " + name + ": " + why;
    return false;
  };
  if (disk.path.empty() || disk.path[0] != '/') return refuse("path must be absolute, not '" + disk.path + "'");
  if (disk.format != "raw" && disk.format != "qcow2") return refuse("format must be raw or qcow2, not '" + disk.format + "'");
  if (!disk.backing_path.empty() && disk.format != "qcow2") return refuse("only a qcow2 image has a backing file");
  std::string backing;
  if (!disk.backing_path.empty())
    backing = "      <backingStore type='file'><format type='" + vm_ops::escape(disk.backing_format) + "'/>"
              "<source file='" + vm_ops::escape(disk.backing_path) + "'/><backingStore/></backingStore>\n";
  std::string devices =
      "    <disk type='file' device='disk'>\n"
      "      <driver name='qemu' type='" + disk.format + "' cache='writethrough'/>\n"
      "      <source file='" + vm_ops::escape(disk.path) + "'/>\n" + backing +
      "      <target dev='vda' bus='virtio'/>\n"
      "    </disk>\n";
  return define_and_start_xml(name, uuid, domain_xml(name, uuid, memory_mib, "<boot dev='hd'/>", devices), error);
}

namespace {

// `op` on the guest `uuid` of the daemon at `uri`; false with `what` and the libvirt error.
bool domain_op(const std::string& uri, const std::string& uuid, const char* what, int (*op)(virDomainPtr),
               std::string* error) {
  Conn conn(uri);
  virDomainPtr dom = conn ? virDomainLookupByUUIDString(conn.c, uuid.c_str()) : nullptr;
  int rc = dom ? op(dom) : -1;
  if (rc < 0 && error) *error = std::string(what) + " " + uuid + ": " + last_error();
  if (dom) virDomainFree(dom);
  return rc == 0;
}

}  // namespace

bool Libvirtd::suspend(const std::string& uuid, std::string* error) const {
  return domain_op(uri_, uuid, "suspend", &virDomainSuspend, error);
}

bool Libvirtd::resume(const std::string& uuid, std::string* error) const {
  return domain_op(uri_, uuid, "resume", &virDomainResume, error);
}

int Libvirtd::run_in_mounts(const std::vector<std::string>& argv, std::string* out, std::string* err,
                            std::chrono::milliseconds timeout) {
  if (!holder_ || !holder_->running()) {
    if (err) *err = "the daemon's mount namespace is gone";
    return -1;
  }
  std::vector<std::string> full{"nsenter", "-t", std::to_string(holder_->pid()), "-m"};
  if (!options_.netns.empty()) full.push_back("-n");
  full.push_back("--");
  full.insert(full.end(), argv.begin(), argv.end());
  std::string base = dir_.file("log/run-" + std::to_string(++runs_));
  int status = -1;
  {
    Process p(full, base + ".out", base + ".err");
    if (auto st = p.wait_exit(timeout)) status = *st;
  }  // killed here when it outlived the timeout
  if (out) *out = read_file(base + ".out");
  if (err) *err = read_file(base + ".err");
  std::filesystem::remove(base + ".out");
  std::filesystem::remove(base + ".err");
  return status;
}

std::string Libvirtd::domain_state(const std::string& uuid) const {
  Conn conn(uri_);
  if (!conn) return "";
  virDomainPtr dom = virDomainLookupByUUIDString(conn.c, uuid.c_str());
  if (!dom) return "";
  int state = 0, reason = 0;
  int rc = virDomainGetState(dom, &state, &reason, 0);
  virDomainFree(dom);
  return rc < 0 ? "" : nodeha::libvirt::state_name(state);
}

std::vector<Libvirtd::DomainInfo> Libvirtd::domains() const {
  std::vector<DomainInfo> out;
  Conn conn(uri_);
  if (!conn) return out;
  virDomainPtr* doms = nullptr;
  int n = virConnectListAllDomains(conn.c, &doms, 0);
  for (int i = 0; i < n; ++i) {
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    virDomainGetUUIDString(doms[i], uuid);
    const char* name = virDomainGetName(doms[i]);
    int state = 0, reason = 0;
    std::string state_name = virDomainGetState(doms[i], &state, &reason, 0) < 0 ? "" : nodeha::libvirt::state_name(state);
    out.push_back({uuid, name ? name : "", state_name});
    virDomainFree(doms[i]);
  }
  free(doms);
  return out;
}

std::string libvirt_agent_tables(const std::string& own_uri, const std::string& middle,
                                 const std::string& local_peer_uri) {
  return "[libvirt]\nuri = \"" + own_uri + "\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\naddresses = { management = \"127.0.0.1\" }\n"
         "disk_path = \"/\"\n" + middle +
         "[[plugin]]\nlibrary = \"migrate\"\naddresses = { management = \"127.0.0.1\" }\n"
         "peer_uri = \"" + own_uri + "\"\nmigrate_uri = \"tcp://{address}\"\n" +
         (local_peer_uri.empty() ? "" : "local_peer_uri = \"" + local_peer_uri + "\"\n");
}

std::string Libvirtd::guest_uuid(int n) {
  static const std::string run = [] {
    std::mt19937 rng{std::random_device{}()};
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(rng()));
    return std::string(buf);
  }();
  char last[13];
  std::snprintf(last, sizeof last, "%012x", static_cast<unsigned>(n));
  return run + "-7d3b-4c1e-9a55-" + last;
}

std::vector<pid_t> Libvirtd::processes_with(const std::string& needle) {
  return processes_with(std::vector<std::string>{needle});
}

std::vector<pid_t> Libvirtd::processes_with(const std::vector<std::string>& needles) {
  std::vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (!proc) return out;
  pid_t self = getpid();
  while (dirent* e = readdir(proc)) {
    std::string pid = e->d_name;
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (std::stoi(pid) == self) continue;
    // Zombies have an empty command line: only live processes match.
    std::string cmdline = read_cmdline(pid);
    if (std::any_of(needles.begin(), needles.end(), [&](const auto& n) { return cmdline.find(n) != std::string::npos; }))
      out.push_back(std::stoi(pid));
  }
  closedir(proc);
  return out;
}

std::string Libvirtd::log() const {
  std::string out = read_file(dir_.file("log/namespace.log"));
  for (int i = 1; i <= starts_; ++i) out += read_file(dir_.file("log/stdout-" + std::to_string(i) + ".log"));
  std::string daemon = read_file(dir_.file("log/libvirtd.log"));
  if (daemon.size() > 8000) daemon = "...\n" + daemon.substr(daemon.size() - 8000);
  return out + daemon;
}

Libvirtd::~Libvirtd() {
  // Guests first: those started here and whatever else runs here now (a guest migrated in),
  // killed by their uuid on the command line (qemu runs with -uuid <uuid>), then the daemon. Both
  // by SIGKILL: nothing of them is kept, and a daemon destroying its guests, or stopping while it
  // cleans up after them, takes seconds a test would wait for.
  if (running())
    for (const auto& d : domains())
      if (std::find(guests_.begin(), guests_.end(), d.uuid) == guests_.end()) guests_.push_back(d.uuid);
  for (pid_t p : processes_with(guests_)) ::kill(p, SIGKILL);
  kill();
  // Again, for one the daemon started meanwhile, until none is left.
  if (!guests_.empty() && !wait_until([&] {
        auto left = processes_with(guests_);
        for (pid_t p : left) ::kill(p, SIGKILL);
        return left.empty();
      }, 10s))
    ADD_FAILURE() << "a qemu of this daemon's guests survived SIGKILL";
  // The mount namespace and its overlays vanish with their last process; the TempDir goes next.
  if (holder_ && holder_->running()) {
    holder_->signal(SIGKILL);
    holder_->wait_exit(5s);
  }
}

}  // namespace nodeha::test
