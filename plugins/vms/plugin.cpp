// vms: the VMs of the cluster as the `vms` bucket records them (docs/node-operations.md). The
// agent side keeps the bucket true for its node, removes stale copies, supervises its VMs and
// serves the agent's VM operations and drains (agent.h); the controller side lists the records
// (controller.h). One library, the side chosen by the host's role.
#include "agent.h"
#include "controller.h"

#include <nodeha/plugin.hpp>

namespace nodeha::vms {
namespace {

const nodeha_config_key kKeys[] = {
    key("sync_every", NODEHA_CONFIG_DURATION, "\"2s\"", "duration",
        "agent: how often the node's domains are compared with the vms bucket (records, stale copies, claims, "
        "supervision)"),
    key("shared_paths", NODEHA_CONFIG_STRING_ARRAY, "[]", nullptr,
        "agent: directories on shared storage; file and block disks elsewhere are local"),
    key("stop_timeout", NODEHA_CONFIG_DURATION, "\"60s\"", "duration",
        "agent: graceful shutdown time before a VM is destroyed (vm.stop and drains without timeout_ms)"),
    key("drain_parallel", NODEHA_CONFIG_INTEGER, "16", "VMs", "agent: VMs a drain stops at the same time"),
    key("supervise", NODEHA_CONFIG_BOOLEAN, "true", nullptr,
        "agent: start again a VM recorded here with desired running that stopped unasked (not on a drained node)"),
    // What vm.define accepts (domain_policy.h): the XML of a controller is not trusted with the host.
    key("storage_paths", NODEHA_CONFIG_STRING_ARRAY, "[\"/var/lib/libvirt/images\"]", nullptr,
        "agent: directories a defined domain's disks, filesystems, kernel and initrd may be in (network disks "
        "always may)"),
    key("storage_pools", NODEHA_CONFIG_STRING_ARRAY, "[]", nullptr,
        "agent: libvirt storage pools a defined domain's volume disks may come from"),
    key("firmware_paths", NODEHA_CONFIG_STRING_ARRAY,
        "[\"/usr/share/OVMF\", \"/usr/share/AAVMF\", \"/usr/share/edk2\", \"/usr/share/qemu\", "
        "\"/usr/share/seabios\", \"/var/lib/libvirt/qemu/nvram\"]",
        nullptr, "agent: directories a defined domain's loader and nvram may be in (besides storage_paths)"),
    key("chardev_paths", NODEHA_CONFIG_STRING_ARRAY, "[\"/var/lib/libvirt/qemu\", \"/var/log/libvirt/qemu\"]", nullptr,
        "agent: directories for a defined domain's other host files and sockets (serial, console and channel "
        "files, pipes and sockets, logs, graphics, audio, shmem, vhost-user)"),
    key("emulators", NODEHA_CONFIG_STRING_ARRAY, "[]", nullptr,
        "agent: the <emulator> paths a defined domain may name; empty: those libvirt's capabilities name"),
    key("allow_block_devices", NODEHA_CONFIG_BOOLEAN, "false", nullptr,
        "agent: a defined domain may use the host's block devices as disks (type='block', or a path under /dev)"),
    key("allow_host_devices", NODEHA_CONFIG_BOOLEAN, "false", nullptr,
        "agent: a defined domain may pass host devices through (hostdev, host device nodes, TPM, input, smartcard)"),
    key("allow_unconfined", NODEHA_CONFIG_BOOLEAN, "false", nullptr,
        "agent: a defined domain may turn off or choose QEMU's confinement (<seclabel> type none or static, relabel "
        "'no', a chosen label)"),
    key("allow_host_network", NODEHA_CONFIG_BOOLEAN, "false", nullptr,
        "agent: a defined domain may reach the host's own services: user-mode networking, tcp/udp chardevs "
        "connecting to a loopback, unspecified or link-local address or to a host name"),
};

class VmsPlugin : public Plugin {
 public:
  explicit VmsPlugin(Host h) : Plugin(std::move(h)) {
    if (host().is_agent())
      agent_ = std::make_unique<AgentSide>(host());
    else
      controller_ = std::make_unique<ControllerSide>(host());
  }
  Status start() override { return agent_ ? agent_->start() : controller_->start(); }

 private:
  std::unique_ptr<AgentSide> agent_;
  std::unique_ptr<ControllerSide> controller_;
};

}  // namespace
}  // namespace nodeha::vms

NODEHA_PLUGIN_WITH_FLAGS(nodeha::vms::VmsPlugin, "vms", "0.1.0",
                         "VM records, stale copies, supervision and VM operations (agent); cmd.vm.list (controller)",
                         nodeha::kAnyRole, nodeha::vms::kKeys, nodeha::kServesFollowers)
