#include "verdict.h"

#include <arpa/inet.h>

namespace nodeha::netcheck {

std::string Target::label() const {
  return method == Method::Tcp ? "tcp:" + address + ":" + std::to_string(port) : "icmp:" + address;
}

Result<Target> parse_target(const std::string& text, const std::string& default_interface) {
  auto bad = [&](const std::string& why) { return Status(NODEHA_ERR_INVALID, "target '" + text + "': " + why); };
  Target t;
  std::string rest = text;
  if (auto at = rest.find('@'); at != std::string::npos) {
    t.interface = rest.substr(at + 1);
    rest = rest.substr(0, at);
    if (t.interface.empty()) return bad("empty interface after '@'");
  } else {
    t.interface = default_interface;
  }
  if (rest.rfind("tcp:", 0) == 0) {
    t.method = Method::Tcp;
    rest = rest.substr(4);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return bad("tcp targets need a port: tcp:ADDRESS:PORT");
    try {
      size_t used = 0;
      t.port = std::stoi(rest.substr(colon + 1), &used);
      if (used != rest.size() - colon - 1) throw std::invalid_argument("port");
    } catch (...) {
      return bad("the port is not a number");
    }
    if (t.port <= 0 || t.port > 65535) return bad("the port must be between 1 and 65535");
    rest = rest.substr(0, colon);
  } else if (rest.rfind("icmp:", 0) == 0) {
    rest = rest.substr(5);
  }
  in_addr a{};
  if (inet_pton(AF_INET, rest.c_str(), &a) != 1) return bad("'" + rest + "' is not an IPv4 address");
  t.address = rest;
  return t;
}

bool Debounced::feed(bool ok) {
  if (ok == up_) {
    streak_ = 0;
    return false;
  }
  if (++streak_ < threshold_) return false;
  up_ = ok;
  streak_ = 0;
  return true;
}

Verdict summarize(const std::vector<ItemResult>& items) {
  Verdict v;
  for (const auto& i : items) {
    if (i.up) continue;
    v.ok = false;
    if (!v.detail.empty()) v.detail += "; ";
    v.detail += i.target.empty() ? i.interface + " link " + i.detail : i.target + " via " + i.interface + " " + i.detail;
  }
  if (v.ok) v.detail = "business network reachable";
  return v;
}

}  // namespace nodeha::netcheck
