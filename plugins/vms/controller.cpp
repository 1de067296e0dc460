#include "controller.h"

#include "command.h"
#include "desk_rules.h"
#include "evidence.h"
#include "record_fields.h"
#include "sync_plan.h"
#include "vm_record.h"

#include <algorithm>
#include <vector>

namespace nodeha::vms {

Status ControllerSide::start() {
  // A following controller's instance answers vm.list from the bucket, in the same queue group
  // as the leader's; the desk and the relay write and publish: the leader's alone.
  if (host_.following()) return serve(host_.subject("cmd.vm.list"), &ControllerSide::list);
  if (Status s = desk::ensure_bucket(host_, vm_record::kBucket); !s)
    host_.warn("cannot bind the vms bucket yet (agents wait for it): " + s.message());
  refused_ = host_.counter("nodeha_record_desk_refused_total",
                           "VM record writes and VM events agents sent the controller's desks and it refused (not "
                           "its node's, a claim the recorded node contradicts, malformed): a stolen agent credential "
                           "shows here");
  for (auto [subject, fn] : {std::pair{host_.subject("cmd.vm.list"), &ControllerSide::list},
                             std::pair{host_.subject("cmd.vm.set_ha"), &ControllerSide::set_ha},
                             std::pair{host_.subject("ctl.*.vm.write"), &ControllerSide::write}})
    if (Status s = serve(subject, fn); !s) return s;
  auto events = host_.subscribe(host_.subject("ctl.*.vm.event"), [this](const Message& m) { relay(m); }, "nodeha-controller");
  return events ? Status::ok() : events.status();
}

Status ControllerSide::serve(const std::string& subject, void (ControllerSide::*fn)(const Message&) const) {
  auto id = host_.subscribe(
      subject,
      [this, fn](const Message& m) {
        if (Status s = host_.spawn([this, fn, m] { (this->*fn)(m); }); !s)
          host_.respond(m.reply, command::fail(command::kUnavailable, s.message()));
      },
      "nodeha-controller");
  return id ? Status::ok() : id.status();
}

void ControllerSide::relay(const Message& m) const {
  std::string node;
  desk::VmEvent e;
  auto bad = desk::node_of(host_, m.subject, &node);
  if (!bad) bad = desk::decode(m.data, &e);
  if (bad) {
    refused_.inc();
    host_.warn("refused a VM event from " + (node.empty() ? std::string("?") : node) + ": " + bad->message);
    return;
  }
  e.event["node"] = node;  // whoever says it, says it as itself
  // The agent saw it; its own words (a reason, a detail) are the summary when it gave them. An
  // agent's `evidence` is not taken: the controller vouches only for who said it.
  std::string name = record::text(e.event, "event", "event");
  std::string words = record::text(e.event, "reason");
  if (words.empty()) words = record::text(e.event, "detail");
  if (words.empty()) words = record::text(e.event, "error");
  evidence::Evidence ev;
  ev.summary = name + " reported by the agent of " + node + (words.empty() ? "" : ": " + words);
  ev.by = node;
  ev.facts = evidence::scalar_facts(e.event);
  ev.facts.erase("event");
  ev.facts.erase("node");
  ev.facts.erase("time");
  (void)evidence::publish(host_, "evt.vm." + e.uuid, std::move(e.event), ev);
}

void ControllerSide::write(const Message& m) const {
  auto refuse = [&](const std::string& node, const command::Error& e) {
    refused_.inc();
    host_.warn("refused a VM record write from " + (node.empty() ? std::string("?") : node) + ": " + e.code + ": " +
               e.message);
    host_.respond(m.reply, command::fail(e));
  };
  std::string node;
  if (auto e = desk::node_of(host_, m.subject, &node)) return refuse("", *e);
  desk::VmWrite w;
  if (auto e = desk::decode(m.data, &w)) return refuse(node, *e);
  auto cur = host_.kv_get(vm_record::kBucket, w.uuid);
  if (!cur && cur.status().code() != NODEHA_ERR_NOT_FOUND)
    return (void)host_.respond(m.reply, command::fail(command::kUnavailable, "cannot read the vms bucket: " +
                                                                                 cur.status().message()));
  const uint64_t revision = cur ? cur->revision : 0;
  if (revision != w.revision)
    return (void)host_.respond(m.reply, command::fail(desk::kConflict, "the record of VM " + w.uuid +
                                                                           " changed since revision " +
                                                                           std::to_string(w.revision) + ": read it again"));
  nlohmann::json current = cur ? nlohmann::json::parse(cur->value, nullptr, false) : nlohmann::json();
  if (current.is_discarded()) current = nlohmann::json::object();  // unreadable: it names no node
  DeskVerdict v = judge(node, current, w);
  if (v.kind == DeskVerdict::Kind::Refuse) return refuse(node, {v.code, v.message});
  if (v.kind == DeskVerdict::Kind::AskOwner) {
    auto there = owner_state(v.owner, w.uuid);
    if (there && !there->empty())
      return refuse(node, {desk::kClaimRefused, "VM " + w.uuid + " is " + *there + " on " + v.owner +
                                                    ", its recorded node: it is not " + node + "'s to claim"});
    host_.info(node + " claims VM " + w.uuid + " from " + v.owner +
               (there ? ", which does not have it" : ", which does not answer (a migration landed while it is cut off)"));
    // Marked, so that the node it was taken from, once back, removes its own copy only if that one
    // is shut off (sync_plan.h, contested): a claim nobody could contradict may be a lie.
    w.record["claim"] = {{"from", v.owner}, {"answered", there.has_value()}};
  } else if (!w.remove && record::text(current, "node") == node) {
    // The mark is the desk's: the owner's own writes keep it (or drop it, moving the VM on).
    if (record::text(w.record, "node") == node && current.is_object() && current.contains("claim"))
      w.record["claim"] = current["claim"];
    else
      w.record.erase("claim");
  } else if (!w.remove) {
    w.record.erase("claim");  // a new record
  }
  if (!w.remove) {
    // The recovery priority is the operator's (vm.set_ha): whatever the agent sent, the stored one stays.
    w.record.erase(vm_record::kHa);
    if (current.is_object() && current.contains(vm_record::kHa)) w.record[vm_record::kHa] = current[vm_record::kHa];
    // The stranded mark is the controller's too: kept, or ended by this write (desk_rules.h).
    auto mark = stranded_after(node, current, w);
    if (!mark.is_null()) {
      w.record[vm_record::kStranded] = std::move(mark);
    } else {
      w.record.erase(vm_record::kStranded);
      if (vm_record::stranded_of(current))
        host_.info("VM " + w.uuid + " is no longer stranded: " + node + " reports it " + text(w.record, "state"));
    }
  }
  // A removal is checked against the revision read just above, not by the store (the host API has
  // no revision-checked delete): a move by a task in the milliseconds between would be undone.
  // Removals come from vm.undefine of a domain that is defined and stopped on the writing node.
  Result<uint64_t> done = revision;
  if (w.remove && cur) {
    if (Status s = host_.kv_delete(vm_record::kBucket, w.uuid); !s) done = s;
  } else if (!w.remove) {
    done = cur ? host_.kv_update(vm_record::kBucket, w.uuid, w.record.dump(), revision)
               : host_.kv_create(vm_record::kBucket, w.uuid, w.record.dump());
  }
  if (!done && done.status().code() == NODEHA_ERR_CONFLICT)
    return (void)host_.respond(m.reply, command::fail(desk::kConflict, "the record of VM " + w.uuid +
                                                                           " changed meanwhile: read it again"));
  if (!done) return (void)host_.respond(m.reply, command::fail(command::kUnavailable, done.status().message()));
  host_.respond(m.reply, command::ok({{"revision", done.value()}}));
}

std::optional<std::string> ControllerSide::owner_state(const std::string& owner, const std::string& uuid) const {
  auto r = host_.request(host_.subject("agent." + owner + ".vm.list"), "{}", Millis(1000));
  if (!r) return std::nullopt;
  auto reply = command::parse_envelope(r.value());
  if (!reply.ok) return std::nullopt;
  auto states = vm_record::listed_states(reply.result);
  auto it = states.find(uuid);
  return it == states.end() ? "" : it->second;
}

void ControllerSide::set_ha(const Message& m) const {
  nlohmann::json req;
  if (auto e = command::decode(m.data, {{"vm", command::Type::String, true}, {"ha", command::Type::StringOrInteger, true}}, &req))
    return (void)host_.respond(m.reply, command::fail(*e));
  std::optional<VmUuid> uuid;
  if (auto e = command::parse_id("vm", req["vm"], &uuid)) return (void)host_.respond(m.reply, command::fail(*e));
  std::optional<int> priority;
  const auto& ha = req["ha"];
  if (ha.is_number_integer() && ha.get<int64_t>() >= 0 && ha.get<int64_t>() <= vm_record::kMaxHa) {
    priority = ha.get<int>();
  } else if (!(ha.is_string() && ha.get<std::string>() == "off")) {
    return (void)host_.respond(m.reply, command::fail(command::kBadValue, "field \"ha\" must be \"off\" or an integer "
                                                                           "from 0 to " + std::to_string(vm_record::kMaxHa) +
                                                                           " (higher recovers first)"));
  }
  auto r = vm_record::set_ha(host_, uuid->str(), priority);
  if (!r && r.status().code() == NODEHA_ERR_NOT_FOUND)
    return (void)host_.respond(m.reply, command::fail(command::kUnknownVm, "no VM " + uuid->str() + " is recorded (`nodeha vm list` shows them)"));
  if (!r) return (void)host_.respond(m.reply, command::fail(command::kUnavailable, "cannot write the VM's record: " + r.status().message()));
  host_.info("VM " + uuid->str() + ": ha " + (priority ? std::to_string(*priority) : std::string("off")));
  host_.respond(m.reply, command::ok(vm_record::summary(r.value())));
}

void ControllerSide::list(const Message& m) const {
  nlohmann::json req;
  std::optional<NodeId> id;
  std::string after;
  auto bad = command::decode(
      m.data, {{"node", command::Type::String}, {"stranded", command::Type::Bool}, {"after", command::Type::String}}, &req);
  if (!bad && req.contains("node")) bad = command::parse_id("node", req["node"], &id);
  if (!bad) bad = command::page_after(req, &after);
  if (bad) return (void)host_.respond(m.reply, command::fail(*bad));
  std::string node = id ? id->str() : "";
  const bool only_stranded = record::flag(req, "stranded");
  auto entries = host_.kv_list(vm_record::kBucket);
  if (!entries)
    return (void)host_.respond(
        m.reply, command::fail(command::kUnavailable, "cannot read the vms bucket: " + entries.status().message()));
  // In pages by uuid (command.h): 10,000 VMs' records are several MiB. By uuid, not by node and
  // name, so that a VM that moves between two pages is in one of them only; the CLI sorts. Only
  // the records up to the page's end are parsed: the entries after `after`, in key order.
  std::vector<const KvEntry*> order;
  for (const auto& e : entries.value())
    if (e.key > after) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const KvEntry* a, const KvEntry* b) { return a->key < b->key; });
  command::Page page;
  size_t matched = 0;
  for (const KvEntry* e : order) {
    auto record = nlohmann::json::parse(e->value, nullptr, false);
    if (!record.is_object() || (!node.empty() && text(record, "node") != node)) continue;
    if (only_stranded && !vm_record::stranded_of(record)) continue;
    ++matched;
    if (!page.add(e->key, vm_record::summary(record))) break;
  }
  // A node that has no record and no VM is most likely a typo: say so rather than list nothing.
  if (!node.empty() && matched == 0) {
    auto known = host_.kv_get("nodes", node);
    if (!known && known.status().code() == NODEHA_ERR_NOT_FOUND)
      return (void)host_.respond(
          m.reply,
          command::fail(command::kUnknownNode, "no node " + node + " is known (`nodeha node list` shows them)"));
  }
  nlohmann::json result = nlohmann::json::object();
  std::move(page).put(&result, "vms");
  host_.respond(m.reply, command::ok(result));
}

}  // namespace nodeha::vms
