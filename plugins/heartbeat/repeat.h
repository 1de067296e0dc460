// A steady node's heartbeats differ only in their counters: each is the last one with a new seq
// and sent_at. The controller keeps the bytes of a node's last decoded heartbeat as a Repeat and
// takes the next one that matches it without decoding it again (docs/performance.md, "Node
// monitoring": the decode was a quarter of the controller's time at 10,000 nodes).
//
// Exact, not a guess: a Repeat is kept only for a message that is the canonical encoding of the
// heartbeat it decoded to (encode_heartbeat(decoded) == text). Such a message names "sent_at" and
// "seq" once each, in plain keys; every other number or string in it is in a fixed place. A message
// that equals it byte for byte outside those two numbers, whose own two numbers are written as the
// encoder writes them (no sign on seq, no leading zero, in range), is therefore the canonical
// encoding of the same heartbeat with the new counters: what decode_heartbeat would return for it.
// Anything else does not match and is decoded in full.
//
// Pure; the plugin's event thread. Memory: the message's bytes (~0.4 KB at 3 VMs on version 2).
#pragma once

#include "heartbeat_codec.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace nodeha::heartbeat {

class Repeat {
 public:
  struct Counters {
    uint64_t seq = 0;
    int64_t sent_at = 0;
  };

  // The Repeat of `text`, which decoded to `hb`; nullopt when `text` is not hb's canonical
  // encoding (then every heartbeat like it is decoded in full).
  static std::optional<Repeat> of(std::string_view text, const Heartbeat& hb);

  // The counters of `text` when it is the kept heartbeat with only they changed.
  std::optional<Counters> match(std::string_view text) const;

 private:
  Repeat() = default;

  std::string text_;
  // The kept text's two numbers, in the order they appear: [0] is "sent_at", [1] "seq" (the
  // encoder writes keys in sorted order).
  struct Span {
    size_t at = 0;
    size_t size = 0;
  };
  Span sent_at_, seq_;
};

// The entry of `table` (a NodeTable of entries with an std::optional<Repeat> `repeat`) for the
// node a heartbeat's subject names after `prefix` ("<prefix>.hb."), with the counters of the
// message when it repeats that entry's heartbeat; a null entry otherwise.
template <class Table>
std::pair<typename Table::value_type*, Repeat::Counters> find_repeat(Table& table, std::string_view prefix, const Message& m) {
  std::string_view subject = m.subject;
  if (subject.size() <= prefix.size() || !subject.starts_with(prefix)) return {nullptr, {}};
  auto* entry = table.find(subject.substr(prefix.size()));
  if (!entry || !entry->second.repeat) return {nullptr, {}};
  auto counters = entry->second.repeat->match(m.data);
  if (!counters) return {nullptr, {}};
  return {entry, *counters};
}

}  // namespace nodeha::heartbeat
