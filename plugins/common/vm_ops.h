// libvirt helpers for the plugins that drive domains (docs/node-operations.md): what a domain is
// (state, resources, disks), which of its disks are local, and the calls that change it, with
// libvirt's errors turned into Status codes a reply can carry:
//   NOT_FOUND    no such domain                      -> unknown_vm
//   INVALID      bad XML, or not possible now        -> bad_value
//   UNAVAILABLE  libvirt cannot be reached           -> unavailable
//   INTERNAL     anything else libvirt refused       -> internal
//
// Everything that takes a connection or a domain blocks on libvirt: call it from a worker.
// parse_disks, path_under, local_disk_paths and reason_name are pure.
#pragma once

#include "libvirt.h"

#include <nodeha/plugin.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace nodeha::vm_ops {

// A connection of the host's (libvirt_connect), owned.
Result<libvirt::Connection> connect(const Host& host);
// A connection of its own to the same libvirtd, for calls that take seconds (a destroy waits for
// QEMU to exit): libvirtd runs at most max_client_requests calls at once per connection (5 by
// default), so that many destroys on the shared one would queue. The test driver keeps its state
// per connection: there, the shared one.
Result<libvirt::Connection> connect_alone(const Host& host);

// The last libvirt error of this thread as a Status: "<what>: <libvirt's message>".
Status last_error(const std::string& what);
// The reply code for a failure of these helpers, as in the table above.
const char* error_code(const Status& s);

// --- disks (pure) ---

struct Disk {
  std::string type;    // file | block | network | volume | dir | ...
  std::string device;  // disk | cdrom | floppy | lun
  std::string source;  // file=, dev=, dir= or pool/volume of <source>; empty when there is none
  std::string target;  // dev= of <target>
  std::string format;  // type= of <driver>: raw, qcow2, ...; empty when not said
  // The first image below the source, as the live XML's <backingStore> names it (libvirt probes
  // the chain when the guest starts); empty for none.
  std::string backing;
  std::string backing_format;
  bool readonly = false;
};

// The <disk> elements of a domain XML as libvirt writes it (not a general XML parser).
std::vector<Disk> parse_disks(std::string_view domain_xml);

// `s` with the five XML entities escaped, for text put into XML handed to libvirt.
std::string escape(std::string_view s);

// Whether `path` is `dir` or below it ("/a/b" is under "/a", "/ab" is not).
bool path_under(std::string_view path, std::string_view dir);

// The sources of the local disks: every disk with a source that is not a `network` disk and not a
// file or block device under one of `shared_paths`. `volume` and `dir` disks count as local:
// nothing says they are shared, and a local disk taken for shared would be lost by a rebuild.
std::vector<std::string> local_disk_paths(const std::vector<Disk>& disks, const std::vector<std::string>& shared_paths);

// libvirt's word for a state's reason ("destroyed", "migration", ...), as vm.list and events say it.
const char* reason_name(int state, int reason);

// --- domains (blocking) ---

struct Facts {
  std::string uuid;
  std::string name;
  int state = VIR_DOMAIN_NOSTATE;
  int reason = 0;
  int64_t vcpus = 0;
  int64_t memory_mib = 0;  // the configured maximum
  bool persistent = true;  // defined, not only running (transient)
};

// Every domain, running or only defined.
Result<std::vector<libvirt::Domain>> list_all(virConnectPtr conn);
// NOT_FOUND when there is none.
Result<libvirt::Domain> lookup(virConnectPtr conn, const std::string& uuid);

Result<Facts> facts(virDomainPtr dom);
// The inactive, secure definition (what a VM record keeps).
Result<std::string> definition(virDomainPtr dom);
// The sum of the capacities libvirt knows for these disks, in GiB (rounded up); network disks,
// CD-ROMs, floppies and disks it cannot size count 0.
int64_t disk_gib(virDomainPtr dom, const std::vector<Disk>& disks);

// Whether the domain is in a state in which QEMU runs (running, blocked, paused, shutting down,
// crashed but kept, suspended).
bool active(int state);
// Paused for an incoming or finishing migration: not to be touched.
bool migrating(int state, int reason);
// Arriving by live migration: paused for it, or transient and not yet running (libvirt lists the
// incoming domain, shut off, while it prepares the destination QEMU; a transient domain is never
// shut off otherwise, it vanishes). The migration decides its fate, not the inventory.
bool arriving(int state, int reason, bool persistent);
// Whether a job (a migration, a save, ...) is under way on the domain.
bool has_job(virDomainPtr dom);

Status start(virDomainPtr dom);
// Hard power-off. A domain that is not running is left as it is.
Status destroy(virDomainPtr dom);
// Asks the guest to shut down (ACPI); returns at once.
Status shutdown(virDomainPtr dom);
// Whether undefine removes the domain's NVRAM file (a stale copy's) or leaves it (the source of a
// finished migration: libvirt's own VIR_MIGRATE_UNDEFINE_SOURCE leaves it too).
enum class Nvram { Remove, Keep };
// Removes the definition, with its managed-save image, snapshot and checkpoint metadata, and NVRAM
// as asked, where the driver has them. The domain must not run.
Status undefine(virDomainPtr dom, Nvram nvram = Nvram::Remove);
Result<std::string> define(virConnectPtr conn, const std::string& xml);  // returns the uuid

}  // namespace nodeha::vm_ops
