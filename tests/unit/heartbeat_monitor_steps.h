// Steps shared by the monitor's unit tests: heartbeats, times on a fake clock, effect filters.
#pragma once

#include "monitor.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nodeha::heartbeat {

inline constexpr const char* kNetDown = "eth1 target 10.0.0.1 unreachable";

inline TimePoint at(int64_t ms) { return TimePoint{} + milliseconds(ms); }

inline MonitorConfig fast() { return MonitorConfig{milliseconds(1000), 3, milliseconds(500)}; }

inline Heartbeat beat(const std::string& node, uint64_t seq, std::vector<Check> checks = {},
               const std::string& boot = "boot-1", int64_t interval_ms = 1000) {
  Heartbeat hb;
  hb.node = node;
  hb.seq = seq;
  hb.boot_id = boot;
  hb.interval_ms = interval_ms;
  hb.checks = std::move(checks);
  return hb;
}

inline std::vector<Check> net_down() { return {{"netcheck", false, kNetDown}}; }
inline std::vector<Check> net_up() { return {{"netcheck", true, ""}}; }

template <class T>
std::vector<T> only(const Effects& effects) {
  std::vector<T> out;
  for (const auto& e : effects)
    if (auto* t = std::get_if<T>(&e)) out.push_back(*t);
  return out;
}

// The single effect of a step, which must be a T.
template <class T>
T single(const Effects& effects) {
  EXPECT_EQ(effects.size(), 1u);
  if (effects.size() != 1 || !std::holds_alternative<T>(effects[0])) {
    ADD_FAILURE() << "expected exactly one effect of the asked kind";
    return T{};
  }
  return std::get<T>(effects[0]);
}

// Ticks every 100 ms over (from, to], collecting every effect.
inline Effects tick_through(Monitor& m, int64_t from, int64_t to) {
  Effects all;
  for (int64_t t = from + 100; t <= to; t += 100)
    for (auto& e : m.on_tick(at(t))) all.push_back(std::move(e));
  return all;
}

// A monitor whose only node, n1, beat at 0 and was pinged at 3 s (the end of its window).
inline Monitor pinged_n1(MonitorConfig config = fast()) {
  Monitor m(config);
  m.on_heartbeat(beat("n1", 1), at(0));
  EXPECT_EQ(only<PingRequest>(m.on_tick(at(3000))).size(), 1u);
  return m;
}

}  // namespace nodeha::heartbeat
