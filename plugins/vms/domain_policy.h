// What an agent will define: a policy over domain XML, so that whoever can send vm.define (a
// controller, or a stolen controller credential) gets a guest, never the hypervisor. Checked by
// the agent before libvirt sees the XML (vm.define, and so rebuild's define); refused domains are
// not defined. The incoming side of a live migration is libvirt's and not checked here.
//
// The rules (config keys of the vms plugin, README.md):
//   - size, well-formedness and no DTD (safe_xml.h), the root <domain>: else bad_value, not XML;
//   - no element or attribute in a libvirt driver namespace (http://libvirt.org/schemas/domain/...:
//     qemu:commandline, qemu:capabilities, lxc:namespace, ...), ever;
//   - storage (disk and filesystem sources with their backing stores, kernel, initrd, dtb, ACPI
//     tables, nvdimm paths, fw_cfg files): under storage_paths; volume disks from storage_pools;
//     network disks allowed;
//   - firmware (loader, nvram): under storage_paths or firmware_paths;
//   - every other host path (serial/console/channel files, pipes and sockets, chardev logs,
//     graphics and audio files, shmem and vhost-user sockets): under chardev_paths;
//   - a path under /dev is a host block device in storage (and <disk type='block'> always is):
//     allow_block_devices; elsewhere a host device: allow_host_devices. So are <hostdev>,
//     <interface type='hostdev'>, NVMe and vDPA disks, TPM and input passthrough, host smartcards;
//   - <script> / <downscript> (a host program run as root) and virtiofs <binary path>: never;
//   - <emulator>: one of `emulators` (the agent fills it from libvirt's capabilities when the key
//     is empty).
//   - disk image formats raw and qcow2 only (others can name host files), never qcow2 over the
//     network; a qcow2 file's own header (backing and data files) is read by admit_domain and
//     must stay under storage_paths (image_chain.h);
//   - nothing that lets the guest reach the host's own services (libvirtd's TCP port, NATS, ...)
//     unless allow_host_network: no user-mode networking (its gateway is the host's loopback), no
//     tcp/udp chardev connecting to a loopback, unspecified or link-local address or to a name;
//   - <seclabel>: only libvirt's dynamic labels; type none or static, relabel 'no', or a chosen
//     <label> / <baselabel> only with allow_unconfined (QEMU's confinement is what stands between
//     a guest that escapes QEMU and root on the host).
// Paths are checked as written, after libxml2 decoded them: absolute, no "." or ".." component
// (repeated slashes collapse). Symlinks are not resolved: the files may not exist yet, and a
// link inside a storage path is the host administrator's.
//
// check_domain is pure and thread-safe; admit_domain blocks on libvirt (a worker).
#pragma once

#include <libvirt/libvirt.h>
#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "command.h"
#include "image_chain.h"

namespace nodeha::vms {

struct DomainPolicy {
  std::vector<std::string> storage_paths;
  std::vector<std::string> storage_pools;
  std::vector<std::string> firmware_paths;
  std::vector<std::string> chardev_paths;
  std::vector<std::string> emulators;  // empty in config: libvirt's, filled by admit_domain
  bool allow_block_devices = false;
  bool allow_host_devices = false;
  bool allow_unconfined = false;  // <seclabel> type none or static, relabel 'no', chosen labels
  bool allow_host_network = false;  // user-mode networking; tcp/udp chardevs to the host or a name
};

// The error code of a refusal, as vm.define replies it (and a rebuild step shows it).
inline constexpr const char* kPolicyRefused = "policy";

// From the vms plugin's config (the keys above); throws ConfigError naming a bad path.
DomainPolicy read_domain_policy(const nlohmann::json& config);

// Empty when `xml` may be defined. Else bad_value when it is no domain XML (not well-formed, a
// DTD, too large, another root), or {kPolicyRefused, "domain refused by policy: <reason>"}, the
// reason naming the element and the rule: "disk source /dev/vda is a host block device
// (allow_block_devices = false)".
std::optional<command::Error> check_domain(std::string_view xml, const DomainPolicy& policy);

// The same, also listing every file disk's image (path, declared format) into `images`.
std::optional<command::Error> check_domain(std::string_view xml, const DomainPolicy& policy,
                                           std::vector<ImageRef>* images);

// The <emulator> paths of libvirt's capabilities XML (virConnectGetCapabilities).
std::vector<std::string> capability_emulators(std::string_view capabilities_xml);

// Blocking: the <emulator> paths of libvirt's capabilities. A fresh libvirtd probes every QEMU
// binary to answer (4-5 s measured in the scenario cluster): ask once and keep the answer.
Result<std::vector<std::string>> libvirt_emulators(virConnectPtr conn);

// Blocking: check_domain, with libvirt's emulators when the policy names none, then the chain of
// every qcow2 file disk (image_chain.h); unavailable when libvirt cannot say which emulators it has.
std::optional<command::Error> admit_domain(virConnectPtr conn, std::string_view xml, DomainPolicy policy);

}  // namespace nodeha::vms
