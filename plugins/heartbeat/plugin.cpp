// heartbeat: the agent side publishes heartbeats and answers pings; the controller side tracks
// every node; a following controller's instance answers node.list and node.show (follower.h).
// One library, the side chosen by the host's role and the instance's mode.
#include "agent.h"
#include "controller.h"
#include "follower.h"

#include <nodeha/plugin.hpp>

namespace nodeha::heartbeat {
namespace {

const nodeha_config_key kKeys[] = {
    key("interval", NODEHA_CONFIG_DURATION, "\"15s\"", "duration",
        "agent: time between heartbeats; controller: assumed for nodes not heard from yet"),
    key("misses", NODEHA_CONFIG_INTEGER, "3", "intervals", "controller: silent intervals before the ping-back"),
    key("ping_timeout", NODEHA_CONFIG_DURATION, "\"5s\"", "duration", "controller: how long the ping-back may take"),
    key("record_every", NODEHA_CONFIG_DURATION, "\"60s\"", "duration",
        "controller: refresh a node record's last_heartbeat at least this often (states are written at once)"),
    key("tick", NODEHA_CONFIG_DURATION, "\"100ms\"", "duration", "controller: how often deadlines are checked"),
    key("addresses", NODEHA_CONFIG_TABLE, "{}", nullptr,
        "agent: this node's address per network, e.g. { management = \"10.0.0.5\", business = \"192.168.10.5\" }"),
    key("wire", NODEHA_CONFIG_INTEGER, "2", "version",
        "the highest heartbeat wire version this side speaks: 2 (a digest of the VM list, the list only when it "
        "changes), or 1 (the whole list every time), to pin a fleet during an upgrade"),
    key("disk_path", NODEHA_CONFIG_STRING, "\"/var/lib/libvirt/images\"", nullptr,
        "agent: file system whose size is reported as the node's disk capacity"),
};

class HeartbeatPlugin : public Plugin {
 public:
  explicit HeartbeatPlugin(Host h) : Plugin(std::move(h)) {
    if (host().is_agent()) agent_ = std::make_unique<AgentSide>(host());
    else if (host().following()) follower_ = std::make_unique<FollowerSide>(host());
    else controller_ = std::make_unique<ControllerSide>(host());
  }
  Status start() override {
    return agent_ ? agent_->start() : follower_ ? follower_->start() : controller_->start();
  }

 private:
  std::unique_ptr<AgentSide> agent_;
  std::unique_ptr<ControllerSide> controller_;
  std::unique_ptr<FollowerSide> follower_;  // a following controller's instance
};

}  // namespace
}  // namespace nodeha::heartbeat

NODEHA_PLUGIN_WITH_FLAGS(nodeha::heartbeat::HeartbeatPlugin, "heartbeat", "0.1.0",
                         "heartbeats (agent) and node monitoring (controller)", nodeha::kAnyRole, nodeha::heartbeat::kKeys,
                         nodeha::kServesFollowers)
