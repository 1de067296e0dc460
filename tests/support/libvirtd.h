// A real, isolated libvirtd (QEMU driver) for system tests.
//
// The daemon runs as root in a private mount namespace (`unshare -m --propagation private`) with
// overlayfs over /etc/libvirt, /run and /var whose upper layers live in a temp dir: nothing it
// writes reaches the machine, and it never meets the machine's own libvirtd. The namespace is
// held by a `sleep` of its own and every libvirtd incarnation is entered into it (nsenter): a
// restarted daemon must see the very same overlay mounts as the guests it reattaches to, since a
// unix socket (qemu's monitor) bound on one overlay mount refuses connections made through
// another mount of the same layers. Its unix sockets are
// in <dir>/sock; its qemu.conf runs guests as root without a security driver, cgroups or
// namespaces. Guests are tiny (64 MiB, TCG when there is no /dev/kvm) and diskless, or boot from
// one disk (define_and_start_with_disk, disk_guest.h).
//
// Several daemons may run at once (migration tests): each has its own host_uuid and its own
// window of migration ports (qemu.conf migration_port_min/max, picked at random), so that two
// daemons on this machine, or two tests running side by side, do not hand out the same port.
//
// Every process this class started (libvirtd, the guests' qemu) is gone after its destructor,
// also when a test failed halfway; so is every guest the daemon runs then (one migrated to it
// included).
#pragma once

#include "process.h"
#include "wait.h"

#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

namespace nodeha::test {

// A guest's one disk (virtio, vda), booted from: see disk_guest.h for images that boot a writer.
struct DiskSpec {
  std::string path;            // the image, as the daemon sees it (its own /var, or shared storage)
  std::string format = "raw";  // "raw" or "qcow2"
  std::string backing_path;    // qcow2 only: its backing file, given to libvirt as <backingStore>
  std::string backing_format = "raw";
};

struct LibvirtdOptions {
  // The network namespace (netns.h) the daemon and its guests run in; empty: the test's own. In
  // a namespace the daemon also listens on TCP (port 16509 on every address of the namespace, no
  // auth), so that peers reach it as qemu+tcp://<address>/system over the test network.
  std::string netns;
};

class Libvirtd {
 public:
  // Writes the configs and starts the daemon; the test fails (ADD_FAILURE) if it does not accept
  // connections within `timeout` (the first start probes QEMU, several seconds).
  explicit Libvirtd(std::chrono::milliseconds timeout = 30s) : Libvirtd(LibvirtdOptions{}, timeout) {}
  explicit Libvirtd(LibvirtdOptions options, std::chrono::milliseconds timeout = 30s);
  ~Libvirtd();
  Libvirtd(const Libvirtd&) = delete;
  Libvirtd& operator=(const Libvirtd&) = delete;

  // qemu+unix:///system?socket=<dir>/sock/libvirt-sock
  const std::string& uri() const { return uri_; }
  const TempDir& dir() const { return dir_; }
  pid_t pid() const { return proc_ ? proc_->pid() : -1; }
  bool running() const { return proc_ && proc_->running(); }

  // Starts the daemon again with the same dirs (its guests keep running across a restart; after
  // every process of its network namespace was killed, a power loss, the mount namespace is made
  // again and the daemon finds its guests defined and shut off); true once it accepts connections.
  bool start(std::chrono::milliseconds timeout = 30s);
  // SIGKILL: a crash. Guests keep running.
  void kill();
  // Whether virConnectOpen(uri()) works and the connection answers now.
  bool answers() const;

  // Asks for the domain capabilities of the guests' QEMU, which libvirtd probes once, on first
  // use (seconds): a test that times a define, a start or an incoming migration calls it first.
  // False with the libvirt error in `error`.
  bool probe_qemu(std::string* error = nullptr) const;

  // Defines and starts a diskless guest; false (with the libvirt error in `error`) on failure.
  bool define_and_start(const std::string& name, const std::string& uuid, int memory_mib = 64,
                        std::string* error = nullptr);
  // Defines and starts a guest that boots from `disk` (kvm when /dev/kvm is there, like
  // define_and_start). The disk is cache='writethrough': QEMU flushes the image after every
  // write, so what the guest wrote is in the file (qcow2 metadata included) whenever the guest
  // is paused or stopped, and qemu-img reads it (disk_guest.h). For a backing file the domain
  // names it (<backingStore>) rather than leave libvirt to probe the image's header.
  bool define_and_start_with_disk(const std::string& name, const std::string& uuid, int memory_mib,
                                  const DiskSpec& disk, std::string* error = nullptr);
  // virDomainSuspend / virDomainResume of a guest here; false with the libvirt error in `error`.
  bool suspend(const std::string& uuid, std::string* error = nullptr) const;
  bool resume(const std::string& uuid, std::string* error = nullptr) const;
  // Runs argv in the daemon's mount namespace (and network namespace, if it has one), where its
  // /var, /run and /etc/libvirt are its own overlays: a path there is a different file for each
  // daemon. Its exit status, -1 when it did not end within `timeout` (then it is killed); its
  // stdout and stderr into `out` and `err` when given.
  int run_in_mounts(const std::vector<std::string>& argv, std::string* out = nullptr, std::string* err = nullptr,
                    std::chrono::milliseconds timeout = 120s);
  // The guest's state as libvirt names it in heartbeats ("running", "shutoff", ...); empty when
  // the daemon or the guest cannot be read.
  std::string domain_state(const std::string& uuid) const;

  struct DomainInfo {
    std::string uuid;
    std::string name;
    std::string state;  // as domain_state() names it
  };
  // Every domain the daemon has (running or only defined); empty when it does not answer.
  std::vector<DomainInfo> domains() const;
  // The daemon's migration port window (qemu.conf migration_port_min / migration_port_max).
  int migration_port_min() const { return port_min_; }
  int migration_port_max() const { return port_max_; }

  // Live processes (not zombies) whose command line contains `needle` (e.g. a guest's uuid).
  // Every process of the machine: give guests uuids of guest_uuid(), so that tests running at
  // the same time do not see each other's guests.
  static std::vector<pid_t> processes_with(const std::string& needle);
  // Those whose command line contains any of `needles`, in one pass over /proc.
  static std::vector<pid_t> processes_with(const std::vector<std::string>& needles);

  // A guest uuid unique to this test process (its first group random, drawn once), `n` in its
  // last group: the same n gives the same uuid within one process.
  static std::string guest_uuid(int n);

  std::string log() const;

 private:
  bool mount_namespace();
  bool define_and_start_xml(const std::string& name, const std::string& uuid, const std::string& xml,
                            std::string* error);
  void launch();
  bool wait_answers(std::chrono::milliseconds timeout) const;
  void write_configs();

  TempDir dir_;  // first member: removed last, after every process is gone
  LibvirtdOptions options_;
  std::string uri_;
  std::unique_ptr<Process> holder_;  // keeps the mount namespace (and its overlays) alive
  std::unique_ptr<Process> proc_;    // libvirtd itself, entered into holder_'s namespace
  std::vector<std::string> guests_;  // uuids of the guests started here (or found here at the end)
  int port_min_ = 0;
  int port_max_ = 0;
  int starts_ = 0;
  int runs_ = 0;  // run_in_mounts calls, naming their output files
};

// An agent's [libvirt] table and its plugins for a node whose libvirtd (above) peers reach at
// `own_uri`: every daemon shares this machine's file system, so a unix socket does, and the
// migration stream goes to 127.0.0.1. heartbeat (1 s), then `middle` (more plugin tables), then
// migrate, whose `nodeha local migrate` goes to `local_peer_uri` when one is given.
std::string libvirt_agent_tables(const std::string& own_uri, const std::string& middle = "",
                                 const std::string& local_peer_uri = "");

}  // namespace nodeha::test
