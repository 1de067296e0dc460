// migrate: live migration of domains. The agent side talks to libvirt (agent.h, local_migrate.h);
// the controller side runs cmd.node.migrate (controller.h). One library, the side chosen by the
// host's role.
#include "agent.h"
#include "controller.h"
#include "plans.h"

#include <nodeha/plugin.hpp>

namespace nodeha::migrate {
namespace {

const nodeha_config_key kKeys[] = {
    key("peer_uri", NODEHA_CONFIG_STRING, "\"qemu+tcp://{address}/system\"", nullptr,
        "agent: the libvirt URI under which this node's libvirtd is reachable by peers; {address} is this node's "
        "address on the chosen network"),
    key("migrate_uri", NODEHA_CONFIG_STRING, "\"tcp://{address}\"", nullptr,
        "agent: where peers send QEMU's migration stream to this node; {address} as in peer_uri"),
    key("addresses", NODEHA_CONFIG_TABLE, "{}", nullptr,
        "agent: this node's address per network, e.g. { management = \"10.0.0.5\", migration = \"10.1.0.5\" }"),
    key("timeout", NODEHA_CONFIG_DURATION, "\"10m\"", "duration",
        "abort a migration that takes longer (agent: when a request names none; controller: sent with each "
        "migration it asks for)"),
    key("stall_timeout", NODEHA_CONFIG_DURATION, "\"60s\"", "duration",
        "abort a migration whose data_remaining has not decreased for this long, 0s: never (agent and controller, as "
        "timeout)"),
    key("bandwidth_mib", NODEHA_CONFIG_INTEGER, "0", "MiB/s", "agent: bandwidth limit of each migration; 0 is unlimited"),
    key("local_peer_uri", NODEHA_CONFIG_STRING, "\"qemu+tcp://{dest}/system\"", nullptr,
        "agent: the libvirt URI `nodeha local migrate` migrates to; {dest} is its --dest address"),
    key("local_migrate_uri", NODEHA_CONFIG_STRING, "\"tcp://{dest}\"", nullptr,
        "agent: where `nodeha local migrate` sends QEMU's migration stream; {dest} as in local_peer_uri"),
    key("local_parallel", NODEHA_CONFIG_INTEGER, "2", "migrations", "agent: `nodeha local migrate` moves this many VMs at a time"),
    key("shared_paths", NODEHA_CONFIG_STRING_ARRAY, "[]", nullptr,
        "agent: directories on shared storage; file and block disks elsewhere are local and copied only when asked"),
    key("max_parallel", NODEHA_CONFIG_INTEGER, "2", "migrations",
        "controller: migrations of one node.migrate at a time, unless the command says max_parallel"),
    key("agent_timeout", NODEHA_CONFIG_DURATION, "\"30s\"", "duration",
        "controller: how long an agent may take to answer anything but the migration itself"),
    key("reserve", NODEHA_CONFIG_DURATION, "\"30m\"", "duration",
        "controller: how long the scheduler holds the room of a migration task"),
    plans::ttl_key(),
};

class MigratePlugin : public Plugin {
 public:
  explicit MigratePlugin(Host h) : Plugin(std::move(h)) {
    if (host().is_agent()) agent_ = std::make_unique<AgentSide>(host());
    else controller_ = std::make_unique<ControllerSide>(host());
  }
  Status start() override { return agent_ ? agent_->start() : controller_->start(); }
  void stop() override {
    if (agent_) agent_->stop();
    else controller_->stop();
  }

 private:
  std::unique_ptr<AgentSide> agent_;
  std::unique_ptr<ControllerSide> controller_;
};

}  // namespace
}  // namespace nodeha::migrate

NODEHA_PLUGIN(nodeha::migrate::MigratePlugin, "migrate", "0.1.0",
              "live migration: libvirt on agents, cmd.node.migrate on controllers", nodeha::kAnyRole,
              nodeha::migrate::kKeys)
