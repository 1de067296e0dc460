#include "controller.h"

#include "command.h"
#include "sync_plan.h"
#include "vm_record.h"

#include <algorithm>

namespace nodeha::vms {

Status ControllerSide::start() {
  auto id = host_.subscribe(
      host_.subject("cmd.vm.list"),
      [this](const Message& m) {
        if (Status s = host_.spawn([this, m] { list(m); }); !s)
          host_.respond(m.reply, command::fail(command::kUnavailable, s.message()));
      },
      "nodeha-controller");
  return id ? Status::ok() : id.status();
}

void ControllerSide::list(const Message& m) const {
  nlohmann::json req;
  if (auto e = command::decode(m.data, {{"node", command::Type::String}}, &req))
    return (void)host_.respond(m.reply, command::fail(*e));
  std::optional<NodeId> id;
  if (req.contains("node"))
    if (auto e = command::parse_id("node", req["node"], &id)) return (void)host_.respond(m.reply, command::fail(*e));
  std::string node = id ? id->str() : "";
  auto entries = host_.kv_list(vm_record::kBucket);
  if (!entries)
    return (void)host_.respond(
        m.reply, command::fail(command::kUnavailable, "cannot read the vms bucket: " + entries.status().message()));
  std::vector<nlohmann::json> vms;
  for (const auto& e : entries.value()) {
    auto record = nlohmann::json::parse(e.value, nullptr, false);
    if (!record.is_object() || (!node.empty() && text(record, "node") != node)) continue;
    vms.push_back(vm_record::summary(record));
  }
  // A node that has no record and no VM is most likely a typo: say so rather than list nothing.
  if (!node.empty() && vms.empty()) {
    auto known = host_.kv_get("nodes", node);
    if (!known && known.status().code() == NODEHA_ERR_NOT_FOUND)
      return (void)host_.respond(
          m.reply,
          command::fail(command::kUnknownNode, "no node " + node + " is known (`nodeha node list` shows them)"));
  }
  std::sort(vms.begin(), vms.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
    return std::make_pair(text(a, "node"), text(a, "name")) < std::make_pair(text(b, "node"), text(b, "name"));
  });
  host_.respond(m.reply, command::ok({{"vms", vms}}));
}

}  // namespace nodeha::vms
