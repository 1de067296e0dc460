// Pure logic of the business-network check: targets parsed from config, and a debounced verdict
// per item so that one lost packet is no alarm.
#pragma once

#include <nodeha/plugin.hpp>

#include <string>
#include <vector>

namespace nodeha::netcheck {

enum class Method { Icmp, Tcp };

struct Target {
  Method method = Method::Icmp;
  std::string address;  // IPv4 literal
  int port = 0;         // tcp only
  std::string interface;
  std::string label() const;  // "icmp:10.0.0.1" / "tcp:10.0.0.1:22"
};

// "10.0.0.1", "icmp:10.0.0.1", "tcp:10.0.0.1:22", each optionally "@IFACE"; the interface
// defaults to `default_interface`.
Result<Target> parse_target(const std::string& text, const std::string& default_interface);

// Turns only after `threshold` consecutive results that disagree with the current state.
class Debounced {
 public:
  explicit Debounced(int threshold, bool initial = true) : threshold_(threshold), up_(initial) {}
  // Feeds one raw result; returns true when the debounced state changed.
  bool feed(bool ok);
  bool up() const { return up_; }

 private:
  int threshold_;
  bool up_;
  int streak_ = 0;  // consecutive results disagreeing with up_
};

struct ItemResult {
  std::string interface;
  std::string target;  // empty for the interface's own link state
  bool up = true;      // debounced
  std::string detail;  // why it is down, for people
};

// The check as the heartbeat carries it: ok when every item is up; the detail names what is down.
struct Verdict {
  bool ok = true;
  std::string detail;
};
Verdict summarize(const std::vector<ItemResult>& items);

}  // namespace nodeha::netcheck
