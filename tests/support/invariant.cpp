#include "invariant.h"

#include "wait.h"

#include <gtest/gtest.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <algorithm>
#include <cstdio>

namespace nodeha::test {

namespace {

void quiet(void*, virErrorPtr) {}  // an unreadable node is expected in some tests: no stderr noise

std::string seconds(std::chrono::milliseconds t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(t.count()) / 1000.0);
  return buf;
}

std::string joined(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

// uuid -> nodes running it, from `conn`; false when the node cannot be read.
bool read_running(virConnectPtr conn, const std::string& node, std::map<std::string, std::vector<std::string>>* out) {
  virDomainPtr* doms = nullptr;
  int n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (n < 0) return false;
  for (int i = 0; i < n; ++i) {
    int state = 0, reason = 0;
    // A domain that vanished between the listing and this call is not running.
    if (virDomainGetState(doms[i], &state, &reason, 0) == 0 && (state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_BLOCKED)) {
      char uuid[VIR_UUID_STRING_BUFLEN] = {};
      virDomainGetUUIDString(doms[i], uuid);
      (*out)[uuid].push_back(node);
    }
    virDomainFree(doms[i]);
  }
  free(doms);
  return true;
}

bool read_with(const InvariantMonitor::Node& node, std::map<std::string, std::vector<std::string>>* out) {
  auto running = node.read();
  if (!running) return false;
  for (const auto& uuid : *running) (*out)[uuid].push_back(node.name);
  return true;
}

std::vector<std::string> common(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::string> out;
  for (const auto& x : a)
    if (std::find(b.begin(), b.end(), x) != b.end()) out.push_back(x);
  return out;
}

}  // namespace

InvariantMonitor::InvariantMonitor(std::vector<Node> nodes, std::chrono::milliseconds period)
    : nodes_(std::move(nodes)), period_(period), start_(std::chrono::steady_clock::now()),
      conns_(nodes_.size(), nullptr) {
  virSetErrorFunc(nullptr, &quiet);
  thread_ = std::thread([this] { run(); });
}

InvariantMonitor::~InvariantMonitor() { stop(); }

void InvariantMonitor::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& c : conns_)
    if (c) {
      virConnectClose(static_cast<virConnectPtr>(c));
      c = nullptr;
    }
}

void InvariantMonitor::run() {
  auto next = std::chrono::steady_clock::now();
  while (!stop_) {
    auto at = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_);
    bool complete = false;
    Round round = sample(&complete);
    record(round, complete, at);
    next += period_;
    auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;  // a slow round: the next one at once, no catching up
    // The sampling period, not a wait for an outcome.
    while (!stop_ && std::chrono::steady_clock::now() < next) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

InvariantMonitor::Round InvariantMonitor::sample(bool* complete) {
  Round round;
  *complete = true;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    {
      std::lock_guard lock(mu_);
      if (down_.count(nodes_[i].name)) continue;  // powered off: runs nothing, known without asking
    }
    if (nodes_[i].read) {
      if (!read_with(nodes_[i], &round)) *complete = false;
      continue;
    }
    auto& c = conns_[i];
    if (!c) c = virConnectOpen(nodes_[i].uri.c_str());
    if (c && read_running(static_cast<virConnectPtr>(c), nodes_[i].name, &round)) continue;
    *complete = false;  // unknown this round; reopen next time
    if (c) {
      virConnectClose(static_cast<virConnectPtr>(c));
      c = nullptr;
    }
  }
  return round;
}

void InvariantMonitor::record(const Round& round, bool complete, std::chrono::milliseconds at) {
  std::lock_guard lock(mu_);
  ++rounds_;
  for (const auto& [uuid, nodes] : round) {
    auto it = previous_.find(uuid);
    if (it == previous_.end()) continue;
    auto both = common(it->second, nodes);
    if (both.size() < 2) continue;
    std::string key = uuid + " " + joined(both, " ");
    if (!reported_.insert(key).second) continue;
    violations_.push_back({uuid, both, previous_at_,
                           "VM " + uuid + " running on " + joined(both, " and ") + " at " + seconds(previous_at_)});
  }
  previous_ = round;
  previous_at_ = at;
  if (!complete) return;
  ++complete_rounds_;
  last_complete_ = at;
  for (const auto& [uuid, nodes] : round) {
    auto& t = timelines_[uuid];
    std::vector<std::string> sorted = nodes;
    std::sort(sorted.begin(), sorted.end());
    if (t.empty() || t.back().nodes != sorted) t.push_back({at, sorted});
  }
  for (auto& [uuid, t] : timelines_)
    if (!round.count(uuid) && !t.back().nodes.empty()) t.push_back({at, {}});
}

std::vector<InvariantMonitor::Violation> InvariantMonitor::violations() const {
  std::lock_guard lock(mu_);
  return violations_;
}

std::string InvariantMonitor::violations_text() const {
  std::string out;
  for (const auto& v : violations()) out += v.text + "\n";
  return out;
}

int InvariantMonitor::rounds() const {
  std::lock_guard lock(mu_);
  return rounds_;
}

int InvariantMonitor::complete_rounds() const {
  std::lock_guard lock(mu_);
  return complete_rounds_;
}

bool InvariantMonitor::wait_rounds(int n, std::chrono::milliseconds timeout) const {
  int target = complete_rounds() + n;
  return wait_until([&] { return complete_rounds() >= target; }, timeout);
}

std::vector<InvariantMonitor::Change> InvariantMonitor::timeline(const std::string& uuid) const {
  std::lock_guard lock(mu_);
  auto it = timelines_.find(uuid);
  return it == timelines_.end() ? std::vector<Change>{} : it->second;
}

std::string InvariantMonitor::timeline_text(const std::string& uuid) const {
  std::string out;
  for (const auto& c : timeline(uuid))
    out += seconds(c.at) + ": " + (c.nodes.empty() ? std::string("nowhere") : joined(c.nodes, ", ")) + "\n";
  return out;
}

std::chrono::milliseconds InvariantMonitor::longest_gap(const std::string& uuid) const {
  auto t = timeline(uuid);
  std::chrono::milliseconds end;
  {
    std::lock_guard lock(mu_);
    end = last_complete_;
  }
  std::chrono::milliseconds longest{0};
  for (size_t i = 0; i < t.size(); ++i) {
    if (!t[i].nodes.empty()) continue;
    auto until = i + 1 < t.size() ? t[i + 1].at : end;
    longest = std::max(longest, until - t[i].at);
  }
  return longest;
}

std::vector<std::string> InvariantMonitor::running_on(const std::string& uuid) const {
  auto t = timeline(uuid);
  return t.empty() ? std::vector<std::string>{} : t.back().nodes;
}

bool InvariantMonitor::expect_all_running(const std::set<std::string>& expected,
                                          const std::map<std::string, std::string>& allowed_missing) const {
  Round now;
  bool ok = true;
  for (const auto& n : nodes_) {
    {
      std::lock_guard lock(mu_);
      if (down_.count(n.name)) continue;
    }
    bool read = false;
    if (n.read) {
      read = read_with(n, &now);
    } else {
      virConnectPtr c = virConnectOpen(n.uri.c_str());
      read = c && read_running(c, n.name, &now);
      if (c) virConnectClose(c);
    }
    if (!read) {
      ADD_FAILURE() << "invariant: node " << n.name << " (" << (n.read ? "its reader" : n.uri) << ") cannot be read";
      ok = false;
    }
  }
  for (const auto& uuid : expected) {
    auto it = now.find(uuid);
    size_t copies = it == now.end() ? 0 : it->second.size();
    if (copies == 1) continue;
    if (copies == 0 && allowed_missing.count(uuid)) continue;
    ok = false;
    if (copies == 0)
      ADD_FAILURE() << "invariant: VM " << uuid << " runs nowhere\n" << timeline_text(uuid);
    else
      ADD_FAILURE() << "invariant: VM " << uuid << " runs on " << joined(it->second, " and ") << "\n" << timeline_text(uuid);
  }
  return ok;
}

void InvariantMonitor::set_down(const std::string& node, bool down) {
  std::lock_guard lock(mu_);
  if (down)
    down_.insert(node);
  else
    down_.erase(node);
}

}  // namespace nodeha::test
