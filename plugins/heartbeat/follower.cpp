#include "follower.h"

#include "node_record.h"


namespace nodeha::heartbeat {

FollowerSide::FollowerSide(const Host& host)
    : host_(host),
      max_wire_(wire_setting(host)),
      hb_prefix_(host.subject("hb.")),
      book_(host, [this](const std::string& id) { return live(id); },
            [this](const auto& take) {
              for (const auto& [id, h] : heard_) take(id);
            },
            [this](const std::string& id) -> int64_t {
              const auto* heard = heard_.find(id);
              return heard ? heard->second.at_unix_ms : 0;
            }) {}

Status FollowerSide::start() {
  // Every heartbeat (no queue group: each controller hears all), as the leader does.
  if (auto r = host_.subscribe(host_.subject("hb.*"), [this](const Message& m) { on_heartbeat(m); }, {}, NODEHA_SUB_BATCH); !r) return r.status();
  if (auto w = host_.kv_watch(kNodesBucket, ">", [this](const KvEntry& e) { book_.keep(e); }); !w) return w.status();
  for (auto [subject, fn] : {std::pair{"cmd.node.list", &NodeBook::cmd_list}, std::pair{"cmd.node.show", &NodeBook::cmd_show}})
    if (auto r = host_.subscribe(host_.subject(subject), [this, fn](const Message& m) { (book_.*fn)(m); }, "nodeha-controller"); !r)
      return r.status();
  return Status::ok();
}

// A malformed one is the leader's to count and log; here it is only not heard.
void FollowerSide::on_heartbeat(const Message& m) {
  if (take_repeat(m)) return;
  auto hb = heartbeat_of(host_, m, max_wire_);
  if (!hb) return;
  std::string node = hb->node;
  auto repeat = Repeat::of(m.data, hb.value());  // before the list is taken out of it
  // A list it missed stays as last heard: a follower may not ask the agent (its publishes are
  // refused); the leader does, and the agent's answer comes here too.
  lists_.take(hb.value());
  heard_.try_emplace(node).first->second = Heard{std::move(hb.value()), unix_ms(), std::move(repeat)};
}

// The node's last heartbeat with new counters: taken as the leader takes it, undecoded.
bool FollowerSide::take_repeat(const Message& m) {
  auto [entry, counters] = find_repeat(heard_, hb_prefix_, m);
  if (!entry) return false;
  Heard& heard = entry->second;
  heard.heartbeat.seq = counters.seq;
  heard.heartbeat.sent_at = counters.sent_at;
  heard.at_unix_ms = unix_ms();
  return true;
}

std::optional<NodeLive> FollowerSide::live(const std::string& id) const {
  const auto* heard = heard_.find(id);
  if (!heard) return std::nullopt;
  const Heartbeat& hb = heard->second.heartbeat;
  NodeLive l{heartbeat_fields(hb), &hb, lists_.find(id)};
  l.fields["last_heartbeat"] = heard->second.at_unix_ms;
  l.fields["boot_id"] = hb.boot_id;
  l.fields["interval_ms"] = hb.interval_ms;
  return l;
}

}  // namespace nodeha::heartbeat
