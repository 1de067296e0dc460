// The effects of the network check: interface link state and one probe, bounded by a timeout.
// Blocking: call from a worker.
#pragma once

#include "verdict.h"

#include <chrono>
#include <string>

namespace nodeha::netcheck {

struct ProbeResult {
  bool ok = false;
  std::string detail;  // why not, for people
};

// /sys/class/net/IF/operstate is "up" (or "unknown", as for loopback and dummy links).
ProbeResult link_up(const std::string& interface);

// ICMP echo (raw socket, needs root) or TCP connect, bound to the target's interface.
ProbeResult probe(const Target& target, std::chrono::milliseconds timeout);

}  // namespace nodeha::netcheck
