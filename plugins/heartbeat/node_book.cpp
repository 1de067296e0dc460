#include "node_book.h"

#include "command.h"
#include "record_fields.h"

#include <algorithm>
#include <string_view>

namespace nodeha::heartbeat {

Result<Heartbeat> heartbeat_of(const Host& host, const Message& m, uint32_t max_wire) {
  auto hb = decode_heartbeat(m.data, max_wire);
  if (!hb) return hb.status();
  if (m.subject != host.subject("hb." + hb->node))
    return Status(NODEHA_ERR_INVALID, "its node field names another node (" + hb->node + ")");
  return hb;
}

nlohmann::json NodeBook::keep(const KvEntry& e) {
  if (e.deleted) {
    records_.erase(e.key);
    return nlohmann::json(nlohmann::json::value_t::discarded);
  }
  auto j = nlohmann::json::parse(e.value, nullptr, false);
  if (j.is_object()) records_[e.key] = Stored{e.value, e.revision};
  return j.is_object() ? j : nlohmann::json(nlohmann::json::value_t::discarded);
}

const NodeBook::Stored* NodeBook::stored(const std::string& id) const {
  auto it = records_.find(id);
  return it == records_.end() ? nullptr : &it->second;
}

nlohmann::json NodeBook::describe(const std::string& id, const std::optional<NodeLive>& live) const {
  auto rec = records_.find(id);
  nlohmann::json out = rec != records_.end() ? nlohmann::json::parse(rec->second.text, nullptr, false) : nlohmann::json::object();
  if (!out.is_object()) out = nlohmann::json::object();
  out["node"] = id;
  if (live) {
    // The live view beats the stored one: records are written lazily.
    for (auto it = live->fields.begin(); it != live->fields.end(); ++it) out[it.key()] = it.value();
    out["vms"] = nlohmann::json::array();
    if (live->vms)
      for (const auto& v : *live->vms) out["vms"].push_back({{"uuid", v.uuid}, {"name", v.name}, {"state", v.state}});
  }
  if (!out.contains("lock")) out["lock"] = nullptr;
  int64_t last = out.value("last_heartbeat", int64_t{0});
  out["heartbeat_age_s"] = last > 0 ? nlohmann::json((unix_ms() - last) / 1000.0) : nlohmann::json();
  return out;
}

nlohmann::json NodeBook::age_of(const std::string& id) const {
  int64_t last = last_heard_(id);
  if (last <= 0)
    if (const Stored* r = stored(id)) last = record::integer(nlohmann::json::parse(r->text, nullptr, false), "last_heartbeat", 0);
  return {{"node", id}, {"heartbeat_age_s", last > 0 ? nlohmann::json((unix_ms() - last) / 1000.0) : nlohmann::json()}};
}

void NodeBook::cmd_list(const Message& m) const {
  nlohmann::json req;
  std::string after;
  auto e = command::decode(m.data, {{"after", command::Type::String}, {"ages", command::Type::Bool}}, &req);
  if (!e) e = command::page_after(req, &after);
  if (e) return (void)host_.respond(m.reply, command::fail(*e));
  const bool ages = record::flag(req, "ages");
  // In pages by node id (command.h): 10,000 nodes with their VM lists are several MiB. Only the
  // ids after `after` are sorted, as views: every page of 10,000 nodes copies no id.
  std::vector<std::string_view> ids;
  auto take = [&](std::string_view id) {
    if (id > after) ids.push_back(id);
  };
  live_ids_(take);
  for (const auto& [id, r] : records_) take(id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  command::Page page;
  for (std::string_view view : ids) {
    std::string id(view);
    if (!page.add(id, ages ? age_of(id) : describe(id, live_(id)))) break;
  }
  nlohmann::json result = nlohmann::json::object();
  std::move(page).put(&result, "nodes");
  if (host_.following()) result["follower"] = host_.node_id();
  host_.respond(m.reply, command::ok(result));
}

std::optional<NodeId> requested_node(const Host& host, const Message& m) {
  nlohmann::json req;
  std::optional<NodeId> node;
  auto e = command::decode(m.data, {{"node", command::Type::String, true}}, &req);
  if (!e) e = command::parse_id("node", req["node"], &node);
  if (!e) return node;
  host.respond(m.reply, command::fail(*e));
  return std::nullopt;
}

void refuse_unknown_node(const Host& host, const Message& m, const std::string& id) {
  host.respond(m.reply, command::fail(command::kUnknownNode, "no node named \"" + id + "\"; `nodeha node list` shows the known nodes"));
}

void NodeBook::cmd_show(const Message& m) const {
  auto node = requested_node(host_, m);
  if (!node) return;
  const std::string& id = node->str();
  auto live = live_(id);
  if (!live && !knows(id)) return refuse_unknown_node(host_, m, id);
  auto out = describe(id, live);
  if (live && live->heartbeat) {
    out["heartbeat"] = nlohmann::json::parse(encode_heartbeat(*live->heartbeat));
    out["heartbeat"].erase("vms");  // taken into `vms`
  }
  if (host_.following()) out["follower"] = host_.node_id();
  host_.respond(m.reply, command::ok(out));
}

}  // namespace nodeha::heartbeat
