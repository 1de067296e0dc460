// Repeat: a heartbeat taken undecoded must be exactly what decoding it would have given.
#include "heartbeat_codec.h"
#include "heartbeat_monitor_steps.h"
#include "monitor.h"
#include "node_table.h"
#include "repeat.h"

#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <string>

namespace nodeha::heartbeat {
namespace {

Heartbeat steady() {
  Heartbeat hb;
  hb.version = 2;
  hb.node = "node-7";
  hb.seq = 41;
  hb.boot_id = "6f1c2d7e-boot";
  hb.sent_at = 1700000000123;
  hb.interval_ms = 1000;
  hb.capacity = {32, 65536, 900};
  hb.use = {4, 8192, 80, 2};
  hb.addresses = {{"management", "10.0.0.5"}, {"seq", "10.0.0.6"}, {"sent_at", "10.0.0.7"}};
  hb.has_vms = false;
  hb.vms_digest = "0123456789abcdef";
  hb.checks = {{"netcheck", true, "sent_at 5, seq 6", 1700000000000}};
  return hb;
}

Repeat repeat_of(const Heartbeat& hb) {
  auto r = Repeat::of(encode_heartbeat(hb), hb);
  EXPECT_TRUE(r.has_value());
  return r.value_or(*Repeat::of(encode_heartbeat(steady()), steady()));
}

// What decoding `text` gives, or nullopt.
std::optional<Heartbeat> decoded(const std::string& text) {
  auto r = decode_heartbeat(text);
  if (!r) return std::nullopt;
  return r.value();
}

TEST(HeartbeatRepeat, TheNextHeartbeatOfASteadyNodeMatchesWithItsCounters) {
  Heartbeat hb = steady();
  Repeat r = repeat_of(hb);
  for (auto [seq, sent_at] : {std::pair<uint64_t, int64_t>{42, 1700000001123}, {0, 0}, {7, -5},
                              {18446744073709551615u, 9223372036854775807}, {1, -9223372036854775807 - 1}}) {
    Heartbeat next = hb;
    next.seq = seq;
    next.sent_at = sent_at;
    std::string text = encode_heartbeat(next);
    auto c = r.match(text);
    ASSERT_TRUE(c.has_value()) << text;
    EXPECT_EQ(c->seq, seq);
    EXPECT_EQ(c->sent_at, sent_at);
    EXPECT_EQ(decoded(text), next);  // what the decoder says of the same bytes
  }
}

TEST(HeartbeatRepeat, AnyOtherChangeIsNoMatch) {
  Heartbeat hb = steady();
  Repeat r = repeat_of(hb);
  auto changed = [&](auto edit) {
    Heartbeat next = hb;
    next.seq = 42;
    edit(next);
    return encode_heartbeat(next);
  };
  EXPECT_FALSE(r.match(changed([](Heartbeat& h) { h.checks[0].ok = false; })));
  EXPECT_FALSE(r.match(changed([](Heartbeat& h) { h.checks[0].at += 1; })));
  EXPECT_FALSE(r.match(changed([](Heartbeat& h) { h.use.vcpus = 5; })));
  EXPECT_FALSE(r.match(changed([](Heartbeat& h) { h.interval_ms = 10000; })));
  EXPECT_FALSE(r.match(changed([](Heartbeat& h) { h.boot_id = "6f1c2d7e-boou"; })));
  EXPECT_FALSE(r.match(changed([](Heartbeat& h) { h.vms_digest = "0123456789abcdee"; })));
  EXPECT_FALSE(r.match(changed([](Heartbeat& h) { h.addresses["seq"] = "10.0.0.8"; })));
  EXPECT_FALSE(r.match(changed([](Heartbeat& h) {
    h.has_vms = true;
    h.vms = {{"0b7e0000-0000-4000-8000-000000000001", "web-1", "running"}};
  })));
}

TEST(HeartbeatRepeat, CountersWrittenOtherwiseThanTheEncoderWritesThemAreNoMatch) {
  Heartbeat hb = steady();
  Repeat r = repeat_of(hb);
  std::string text = encode_heartbeat(hb);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    size_t at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return t.replace(at, from.size(), to);
  };
  EXPECT_TRUE(r.match(with("\"seq\":41", "\"seq\":9")));
  EXPECT_FALSE(r.match(with("\"seq\":41", "\"seq\":041")));
  EXPECT_FALSE(r.match(with("\"seq\":41", "\"seq\":-41")));
  EXPECT_FALSE(r.match(with("\"seq\":41", "\"seq\":18446744073709551616")));
  EXPECT_FALSE(r.match(with("\"seq\":41", "\"seq\":4.1")));
  EXPECT_FALSE(r.match(with("\"seq\":41", "\"seq\": 41")));
  EXPECT_FALSE(r.match(with("\"seq\":41", "\"seq\":")));
  EXPECT_FALSE(r.match(with("\"sent_at\":1700000000123", "\"sent_at\":-0")));
  EXPECT_FALSE(r.match(with("\"sent_at\":1700000000123", "\"sent_at\":01")));
  EXPECT_FALSE(r.match(with("\"sent_at\":1700000000123", "\"sent_at\":9223372036854775808")));
  EXPECT_FALSE(r.match(with("\"sent_at\":1700000000123", "\"sent_at\":1e3")));
  EXPECT_FALSE(r.match(text + " "));
  EXPECT_FALSE(r.match(text.substr(0, text.size() - 1)));
  EXPECT_FALSE(r.match(""));
}

TEST(HeartbeatRepeat, OnlyACanonicalHeartbeatIsKept) {
  Heartbeat hb = steady();
  std::string text = encode_heartbeat(hb);
  EXPECT_TRUE(Repeat::of(text, hb).has_value());
  EXPECT_FALSE(Repeat::of(" " + text, hb).has_value());  // decodes the same, is written otherwise
  Heartbeat other = hb;
  other.seq = 40;
  EXPECT_FALSE(Repeat::of(text, other).has_value());  // not the bytes of this heartbeat
  // A key given twice decodes to its last value: such a message is not canonical, so it is
  // never a Repeat whose first "seq" a later message could change unseen.
  std::string twice = text;
  twice.insert(1, "\"seq\":3,");
  ASSERT_TRUE(decode_heartbeat(twice).is_ok());
  EXPECT_FALSE(Repeat::of(twice, *decode_heartbeat(twice)).has_value());
}

// Hostile messages on the heartbeat subject find no repeat: they go to the full decoder, which
// refuses them (heartbeat_codec_test.cpp), and nothing kept is touched.
TEST(HeartbeatRepeat, HostileMessagesFindNoRepeat) {
  struct Entry {
    std::optional<Repeat> repeat;
  };
  NodeTable<Entry> table;
  Heartbeat hb = steady();
  table.try_emplace("node-7").first->second.repeat = repeat_of(hb);
  const std::string prefix = "nodeha.hb.";
  Heartbeat next = hb;
  next.seq = 42;
  const std::string text = encode_heartbeat(next);
  auto found = [&](const std::string& subject, const std::string& data) {
    return find_repeat(table, prefix, Message{subject, "", data}).first != nullptr;
  };
  ASSERT_TRUE(found("nodeha.hb.node-7", text));  // the one that should match does

  EXPECT_FALSE(found("nodeha.hb." + std::string(5000, 'x'), text));  // a 5,000-character node id
  EXPECT_FALSE(found("nodeha.hb.node-8", text));                     // another node's subject
  EXPECT_FALSE(found("nodeha.hb.", text));                           // no node at all
  EXPECT_FALSE(found("nodeha.hb", text));
  EXPECT_FALSE(found("other.hb.node-7", text));
  std::string bad_utf8 = text;
  bad_utf8.replace(bad_utf8.find("6f1c2d7e-boot"), 4, "\xff\xfe\xc0\x80");
  EXPECT_FALSE(found("nodeha.hb.node-7", bad_utf8));  // bytes that are not UTF-8
  std::string quoted = text;
  quoted.replace(quoted.find("\"seq\":42"), 8, "\"seq\":\"42\"");
  EXPECT_FALSE(found("nodeha.hb.node-7", quoted));  // a counter of the wrong type
  std::string nested = text;
  nested.replace(nested.find("\"seq\":42"), 8, "\"seq\":{\"a\":42}");
  EXPECT_FALSE(found("nodeha.hb.node-7", nested));
  EXPECT_FALSE(found("nodeha.hb.node-7", std::string(text.size(), '\0')));
  EXPECT_FALSE(found("nodeha.hb.node-7", text + std::string(1 << 20, ' ')));  // a megabyte more
  // The kept heartbeat is still the one to match.
  EXPECT_TRUE(found("nodeha.hb.node-7", text));
}

// Every one-byte change of the next heartbeat: whenever it matches, the decoder reads the same
// bytes as the kept heartbeat with the matched counters; whenever the decoder reads it as that
// heartbeat with other counters, it matches, unless written otherwise than the encoder writes.
TEST(HeartbeatRepeat, EveryOneByteChangeMatchesOnlyWhatDecodesToTheSameHeartbeat) {
  Heartbeat hb = steady();
  Repeat r = repeat_of(hb);
  Heartbeat next = hb;
  next.seq = 42;
  next.sent_at = 1700000001123;
  const std::string text = encode_heartbeat(next);
  int matched = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    for (char c : std::string("0129-a\" ,{}:")) {
      for (int op = 0; op < 3; ++op) {  // replace, insert before, delete
        std::string t = text;
        if (op == 0) t[i] = c;
        else if (op == 1) t.insert(i, 1, c);
        else t.erase(i, 1);
        auto m = r.match(t);
        if (!m) continue;
        ++matched;
        Heartbeat expect = hb;
        expect.seq = m->seq;
        expect.sent_at = m->sent_at;
        auto d = decoded(t);
        ASSERT_TRUE(d.has_value()) << "matched, but the decoder refuses: " << t;
        EXPECT_EQ(*d, expect) << t;
        EXPECT_EQ(encode_heartbeat(expect), t);
      }
    }
  }
  EXPECT_GT(matched, 20);  // the counters' own digits do change
}

// Effects as text, to compare two monitors' steps.
std::string text(const Effects& effects) {
  std::ostringstream out;
  for (const auto& e : effects) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          out << x.node << ":";
          if constexpr (std::is_same_v<T, Transition>) out << "transition " << int(x.from) << ">" << int(x.to) << " " << x.reason;
          if constexpr (std::is_same_v<T, ReasonChanged>) out << "reason " << x.old_reason << ">" << x.new_reason;
          if constexpr (std::is_same_v<T, PingRequest>) out << "ping";
          if constexpr (std::is_same_v<T, Rebooted>) out << "rebooted " << x.old_boot_id << ">" << x.new_boot_id;
          if constexpr (std::is_same_v<T, Registered>) out << "registered " << int(x.monitor) << " " << x.reason;
          if constexpr (std::is_same_v<T, Suspected>) out << "suspected " << x.detail;
          out << ";";
        },
        e);
  }
  return out.str();
}

void expect_same_state(const Monitor& a, const Monitor& b, const std::string& node) {
  const NodeState* x = a.find(node);
  const NodeState* y = b.find(node);
  ASSERT_EQ(x == nullptr, y == nullptr);
  if (!x) return;
  EXPECT_EQ(x->monitor, y->monitor);
  EXPECT_EQ(x->reason, y->reason);
  EXPECT_EQ(x->checks, y->checks);
  for (size_t i = 0; i < x->checks.size() && i < y->checks.size(); ++i) EXPECT_EQ(x->checks[i].at, y->checks[i].at);
  EXPECT_EQ(x->failing_checks, y->failing_checks);
  EXPECT_EQ(x->boot_id, y->boot_id);
  EXPECT_EQ(x->interval, y->interval);
  EXPECT_EQ(x->last_heartbeat, y->last_heartbeat);
  EXPECT_EQ(x->last_seq, y->last_seq);
  EXPECT_EQ(x->heartbeat, y->heartbeat);
  EXPECT_EQ(x->last_seen, y->last_seen);
  EXPECT_EQ(x->ping_pending, y->ping_pending);
  EXPECT_EQ(x->suspected_at, y->suspected_at);
}

TEST(HeartbeatRepeat, OnRepeatOfAnUnheardNodeChangesNothing) {
  Monitor m(fast());
  EXPECT_FALSE(m.handle("n1"));
  EXPECT_FALSE(m.on_repeat(m.handle("n1"), 2, 0, at(0)).has_value());
  EXPECT_EQ(m.find("n1"), nullptr);
  m.restore(std::vector<KnownNode>{KnownNode{"n1"}}, at(0));  // known, but no heartbeat yet
  ASSERT_TRUE(m.handle("n1"));
  EXPECT_FALSE(m.on_repeat(m.handle("n1"), 2, 0, at(0)).has_value());
  EXPECT_FALSE(m.find("n1")->heartbeat.has_value());
}

// A seeded random walk: one monitor decodes every heartbeat (on_heartbeat with the last one's
// copy and new counters), its twin takes the same heartbeats as repeats; every other input is
// the same. Their effects and states must never differ.
TEST(HeartbeatRepeat, ARepeatHasTheEffectsOfTheHeartbeatItRepeats) {
  Monitor decoded(MonitorConfig{milliseconds(1000), 3, milliseconds(500), true, milliseconds(500)});
  Monitor repeated(decoded.config());
  std::mt19937 rng(11);
  std::vector<std::string> ids = {"a", "b", "c"};
  std::map<std::string, Heartbeat> last;
  int64_t now = 0, repeats = 0;
  auto both = [&](auto step) {
    auto x = step(decoded);
    auto y = step(repeated);
    EXPECT_EQ(text(x), text(y)) << "at " << now;
  };
  for (int i = 0; i < 4000; ++i) {
    now += 50 + static_cast<int64_t>(rng() % 400);
    const std::string& id = ids[rng() % ids.size()];
    switch (rng() % 9) {
      case 0:  // a heartbeat that changes something: both decode it
      {
        Heartbeat hb = beat(id, rng() % 100, rng() % 2 ? net_up() : net_down(), rng() % 4 ? "boot-1" : "boot-2");
        hb.sent_at = now + 1000000;
        if (rng() % 2) hb.checks[0].at = now + 1000000 - 1;
        last[id] = hb;
        both([&](Monitor& m) { return m.on_heartbeat(hb, at(now)); });
        break;
      }
      case 1: case 2: case 3: {  // the last heartbeat again, new counters
        if (!last.count(id)) break;
        Heartbeat hb = last[id];
        hb.seq += 1 + rng() % 3;
        hb.sent_at = now + 1000000;
        last[id] = hb;
        auto x = decoded.on_heartbeat(hb, at(now));
        auto y = repeated.on_repeat(repeated.handle(id), hb.seq, hb.sent_at, at(now));
        ASSERT_TRUE(y.has_value());
        EXPECT_EQ(text(x), text(*y)) << "at " << now;
        ++repeats;
        break;
      }
      case 4: both([&](Monitor& m) { return m.on_tick(at(now)); }); break;
      case 5: {
        std::string boot = rng() % 3 ? "boot-1" : "boot-3";
        both([&](Monitor& m) { return m.on_ping_reply(id, boot, at(now)); });
        break;
      }
      case 6: both([&](Monitor& m) { return m.on_ping_failed(id, at(now), "no responders"); }); break;
      case 7: {  // a check's own verdict, sometimes newer than the heartbeat's
        Check c{"netcheck", rng() % 2 == 0, "eth1 flaps", now + 1000000 + static_cast<int64_t>(rng() % 3) - 1};
        both([&](Monitor& m) { return m.on_checks(id, std::span<const Check>(&c, 1), at(now)); });
        break;
      }
      case 8: both([&](Monitor& m) { return m.on_link_ok(at(now - 100), at(now)); }); break;
    }
    for (const auto& n : ids) expect_same_state(decoded, repeated, n);
    if (HasFailure()) return;
  }
  EXPECT_GT(repeats, 1000);
}

}  // namespace
}  // namespace nodeha::heartbeat
