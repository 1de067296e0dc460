#include "placement.h"

#include "room_index.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

namespace nodeha::scheduler {
namespace {

using Json = nlohmann::json;

constexpr std::array<const char*, kResourceCount> kResourceName = {"vcpus", "memory", "disk"};
constexpr std::array<const char*, kResourceCount> kResourceUnit = {"vCPUs", "MiB", "GiB"};

Amounts amounts(const Resources& r) {
  return {static_cast<double>(r.vcpus), static_cast<double>(r.memory_mib), static_cast<double>(r.disk_gib)};
}

Amounts need_of(const VmRequest& vm) {
  return amounts(Resources{vm.vcpus, vm.memory_mib, vm.local_disk ? vm.disk_gib : 0});
}

int64_t overcommitted(int64_t reported, int64_t reserve, double ratio) {
  int64_t base = reported - reserve;
  if (base <= 0 || !(ratio > 0)) return 0;
  // A hair of tolerance: 100 * 1.15 is 114.99999999999999 in doubles, and means 115.
  double scaled = std::floor(static_cast<double>(base) * ratio + 1e-6);
  constexpr double kCeiling = 4503599627370496.0;  // 2^52: far beyond any machine, exact in a double
  return static_cast<int64_t>(std::min(scaled, kCeiling));
}

// Why a node is out before any VM is looked at; each node counts once, for the first that holds.
enum Ruled : size_t { kIn, kNotEnabled, kNotNormal, kExcluded, kRuledCount };

Ruled state_filter(const NodeState& node, const std::unordered_set<std::string_view>& exclude) {
  if (node.management != kManagementEnabled) return kNotEnabled;
  if (node.monitor != kMonitorNormal) return kNotNormal;
  if (exclude.count(node.id) > 0) return kExcluded;
  return kIn;
}

// The nodes that pass the state filters, in id order (a candidate's index is its rank by id).
struct Candidates {
  std::vector<const NodeState*> node;
  // capacity - used - reservations, never below zero; shrinks as VMs land.
  std::vector<Amounts> free;
  // 1 / (capacity * resources counted), so the weighted sum of free amounts is the mean share
  // left; 0 for a resource the node has none of, which stays out of its mean.
  std::vector<Amounts> weight;
  std::vector<int64_t> group_count;  // VMs of the group at hand; zero between searches

  size_t size() const { return node.size(); }

  void add(const NodeState& n, const OvercommitRatios& ratios) {
    Amounts capacity = amounts(effective_capacity(n, ratios));
    Amounts used = amounts(n.used);
    Amounts held = amounts(n.reservations);
    double counted = 0;
    for (size_t r = 0; r < kResourceCount; ++r) counted += capacity[r] > 0 ? 1 : 0;
    Amounts f{}, w{};
    for (size_t r = 0; r < kResourceCount; ++r) {
      f[r] = std::max(0.0, capacity[r] - used[r] - held[r]);
      w[r] = capacity[r] > 0 ? 1.0 / (capacity[r] * counted) : 0.0;
    }
    free.push_back(f);
    weight.push_back(w);
    node.push_back(&n);
    group_count.push_back(0);
  }

  bool fits(size_t i, const Amounts& need) const { return scheduler::fits(free[i], need); }

  // Mean over resources of free_after / capacity.
  double share_left_after(size_t i, const Amounts& need) const {
    return scheduler::share_left_after(free[i], weight[i], need);
  }

  // How far the node is from taking the VM: the sum of each short resource's missing fraction.
  double shortfall(size_t i, const Amounts& need) const {
    double sum = 0;
    for (size_t r = 0; r < kResourceCount; ++r) {
      if (need[r] > free[i][r]) sum += (need[r] - free[i][r]) / need[r];
    }
    return sum;
  }

  // "node-b lacks memory: needs 4096 MiB, 1024 MiB free after overcommit, short by 3072 MiB"
  std::string shortage_text(size_t i, const Amounts& need) const {
    auto amount = [](double value, size_t r) {
      std::string unit = value == 1 && r == 0 ? "vCPU" : kResourceUnit[r];
      return std::to_string(static_cast<int64_t>(value)) + " " + unit;
    };
    std::string text = node[i]->id + " lacks ";
    const char* separator = "";
    for (size_t r = 0; r < kResourceCount; ++r) {
      if (need[r] <= free[i][r]) continue;
      text += separator;
      text += kResourceName[r];
      text += ": needs " + amount(need[r], r) + ", " + amount(free[i][r], r) + " free after overcommit, short by " +
              amount(need[r] - free[i][r], r);
      separator = "; ";
    }
    return text;
  }
};

std::string nodes_text(size_t n) { return std::to_string(n) + (n == 1 ? " node" : " nodes"); }

Reason reason(ReasonCode code, std::string message) { return Reason{code, std::move(message)}; }

// Places VMs one at a time onto a fixed set of nodes, keeping what each placement consumed.
class Planner {
 public:
  Planner(const std::vector<NodeState>& nodes, const PlacementRequest& request, const SchedulerSettings& settings)
      : target_id_(request.target),
        sign_(request.policy.value_or(settings.default_policy) == Policy::kPack ? -1 : 1),
        index_(sign_) {
    std::vector<const NodeState*> sorted;
    sorted.reserve(nodes.size());
    for (const NodeState& node : nodes) sorted.push_back(&node);
    auto by_id = [](auto* a, auto* b) { return a->id < b->id; };
    // The view hands them sorted; sorting again would be most of the setup at 10,000 nodes.
    if (!std::is_sorted(sorted.begin(), sorted.end(), by_id)) std::sort(sorted.begin(), sorted.end(), by_id);

    std::unordered_set<std::string_view> exclude(request.exclude.begin(), request.exclude.end());
    for (const NodeState* node : sorted) {
      Ruled ruled = state_filter(*node, exclude);
      ++ruled_count_[ruled];
      if (ruled == kIn) {
        candidates_.add(*node, settings.overcommit);
        size_t i = candidates_.size() - 1;
        if (!target_id_) index_.insert(i, candidates_.weight[i], candidates_.free[i]);
      }
      if (target_id_ && node->id == *target_id_) {
        target_ = node;
        target_ruled_ = ruled;
        if (ruled == kIn) target_candidate_ = candidates_.size() - 1;
      }
    }

    for (const VmRequest& vm : request.vms) {
      if (vm.group.empty()) continue;
      auto policy = request.groups.find(vm.group);
      groups_.try_emplace(vm.group, Group{policy == request.groups.end() || policy->second == GroupPolicy::kHard, {}});
    }
    // Only candidates can take a VM, so only their members matter.
    for (size_t i = 0; i < candidates_.size(); ++i) {
      for (const auto& [name, count] : candidates_.node[i]->groups) {
        auto group = groups_.find(name);
        if (group != groups_.end() && count > 0) group->second.members[i] = count;
      }
    }
  }

  Placement place(const VmRequest& vm) {
    Amounts need = need_of(vm);
    auto found = vm.group.empty() ? groups_.end() : groups_.find(vm.group);
    Group* group = found == groups_.end() ? nullptr : &found->second;
    size_t chosen = kNone;
    std::optional<Reason> why;
    if (target_id_) {
      chosen = target_candidate_;
      why = check_target(need, group, vm.group);
    } else {
      chosen = choose(need, group);
      if (chosen == kNone) why = explain(need, group, vm.group);
    }
    if (why) return Placement{vm.uuid, "", std::move(why)};
    if (!target_id_) index_.erase(chosen, candidates_.weight[chosen], candidates_.free[chosen]);
    for (size_t r = 0; r < kResourceCount; ++r) candidates_.free[chosen][r] -= need[r];
    if (!target_id_) index_.insert(chosen, candidates_.weight[chosen], candidates_.free[chosen]);
    if (group) ++group->members[chosen];
    return Placement{vm.uuid, candidates_.node[chosen]->id, std::nullopt};
  }

 private:
  struct Group {
    bool hard = true;
    std::unordered_map<size_t, int64_t> members;  // candidate -> VMs of the group there
  };

  // The best candidate with room, or kNone.
  size_t choose(const Amounts& need, const Group* group) {
    if (group) {
      for (const auto& [i, count] : group->members) candidates_.group_count[i] = count;
    }
    size_t best = group && !group->hard ? choose_spreading_group(need, *group) : choose_by_score(need);
    if (group) {
      for (const auto& [i, count] : group->members) candidates_.group_count[i] = 0;
    }
    return best;
  }

  // No group, or a hard one: nodes holding the group are out, the best score wins. The index
  // finds it looking at a few nodes; when it would look at many (nodes lacking room for the VM
  // stand in its way), every node is scored instead: the same answer either way. After the index
  // gave up, the next VMs (1, 2, 4, .. 64 of them) are scanned at once, as they likely meet the
  // same nodes; one answer from the index resets that.
  size_t choose_by_score(const Amounts& need) {
    if (scan_next_ > 0) {
      --scan_next_;
      return scan(need);
    }
    size_t budget = std::max<size_t>(64, candidates_.size() / 8);
    auto found = index_.best(need, [this](size_t i) { return candidates_.group_count[i] > 0; }, budget);
    if (found) {
      backoff_ = 1;
      return *found;
    }
    scan_next_ = backoff_;
    backoff_ = std::min<size_t>(backoff_ * 2, 64);
    return scan(need);
  }

  size_t scan(const Amounts& need) const {
    size_t best = kNone;
    double best_score = -std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < candidates_.size(); ++i) {
      if (!candidates_.fits(i, need) || candidates_.group_count[i] > 0) continue;
      double score = sign_ * candidates_.share_left_after(i, need);
      // Candidates come in id order, so on a tie the smallest id stays.
      if (score > best_score) {
        best = i;
        best_score = score;
      }
    }
    return best;
  }

  // A soft group: the fewest VMs of the group first, then the best score. A node without the
  // group has the fewest there can be, so the best of those wins when there is one; otherwise
  // the group's nodes (no more than its VMs) compete.
  size_t choose_spreading_group(const Amounts& need, const Group& group) {
    size_t best = choose_by_score(need);
    if (best != kNone) return best;
    int64_t best_count = 0;
    double best_score = 0;
    for (const auto& [i, count] : group.members) {
      if (!candidates_.fits(i, need)) continue;
      double score = sign_ * candidates_.share_left_after(i, need);
      bool better = count < best_count || (count == best_count && (score > best_score || (score == best_score && i < best)));
      if (best == kNone || better) {
        best = i;
        best_count = count;
        best_score = score;
      }
    }
    return best;
  }

  // Why choose() found nothing.
  Reason explain(const Amounts& need, const Group* group, const std::string& group_name) const {
    if (candidates_.size() == 0) return reason(ReasonCode::kNoCandidates, "no candidate node: " + filtered_text());
    size_t with_room = 0;
    size_t closest = kNone;
    double closest_shortfall = 0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      if (candidates_.fits(i, need)) {
        ++with_room;
        continue;
      }
      double missing = candidates_.shortfall(i, need);
      if (closest == kNone || missing < closest_shortfall) {
        closest = i;
        closest_shortfall = missing;
      }
    }
    // Room exists, so only the hard group can have kept the VM out.
    if (with_room > 0 && group) {
      return reason(ReasonCode::kAntiAffinity, "group '" + group_name +
                                                   "' (hard anti-affinity) already has a VM on every candidate "
                                                   "node with room (" + nodes_text(with_room) + ")");
    }
    return reason(ReasonCode::kInsufficientCapacity, "no candidate node has room (" + nodes_text(candidates_.size()) +
                                                         "); closest: " + candidates_.shortage_text(closest, need));
  }

  // Why the target cannot take the VM, or nullopt when it can.
  std::optional<Reason> check_target(const Amounts& need, const Group* group, const std::string& group_name) const {
    const std::string& id = *target_id_;
    auto unavailable = [](std::string text) { return reason(ReasonCode::kTargetUnavailable, std::move(text)); };
    if (!target_) return unavailable("target " + id + " is not a known node");
    switch (target_ruled_) {
      case kNotEnabled:
        return unavailable("target " + id + " is not enabled (management state '" + target_->management + "')");
      case kNotNormal: return unavailable("target " + id + " is not normal (monitor state '" + target_->monitor + "')");
      case kExcluded: return unavailable("target " + id + " is excluded");
      default: break;
    }
    if (group && group->hard && group->members.count(target_candidate_) > 0) {
      return unavailable("target " + id + " already has a VM of hard anti-affinity group '" + group_name + "'");
    }
    if (!candidates_.fits(target_candidate_, need)) {
      return reason(ReasonCode::kTargetInsufficient, candidates_.shortage_text(target_candidate_, need));
    }
    return std::nullopt;
  }

  // "3 nodes not enabled, 2 not normal, 1 excluded"
  std::string filtered_text() const {
    static constexpr std::array<const char*, kRuledCount> kWhat = {"", "not enabled", "not normal", "excluded"};
    std::string text;
    for (size_t f = kNotEnabled; f < kRuledCount; ++f) {
      if (ruled_count_[f] == 0) continue;
      text += text.empty() ? nodes_text(ruled_count_[f]) : ", " + std::to_string(ruled_count_[f]);
      text += std::string(" ") + kWhat[f];
    }
    return text.empty() ? "no nodes known" : text;
  }

  std::optional<std::string> target_id_;
  double sign_;  // +1 spread, -1 pack: the best node has the highest sign_ * share left
  std::array<size_t, kRuledCount> ruled_count_{};
  Candidates candidates_;
  RoomIndex index_;  // the candidates by room left; unused (empty) with a target
  size_t scan_next_ = 0, backoff_ = 1;  // VMs to scan without asking the index; how many next time
  const NodeState* target_ = nullptr;  // the target node, when there is one and it is known
  Ruled target_ruled_ = kIn;
  size_t target_candidate_ = kNone;
  std::unordered_map<std::string, Group> groups_;  // the groups of the request's VMs
};

// Higher priority first (when room runs out, what is left is the least important); within one, big
// VMs first, so they are not starved by small ones; uuid, then position, settle the rest.
bool placed_before(const VmRequest& a, size_t a_index, const VmRequest& b, size_t b_index) {
  if (a.priority != b.priority) return a.priority > b.priority;
  Amounts x = need_of(a), y = need_of(b);
  if (x[1] != y[1]) return x[1] > y[1];
  if (x[0] != y[0]) return x[0] > y[0];
  if (x[2] != y[2]) return x[2] > y[2];
  if (a.uuid != b.uuid) return a.uuid < b.uuid;
  return a_index < b_index;
}

}  // namespace

PlacementResult place(const std::vector<NodeState>& nodes, const PlacementRequest& request,
                      const SchedulerSettings& settings) {
  const auto& vms = request.vms;
  std::vector<size_t> order(vms.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return placed_before(vms[a], a, vms[b], b); });

  Planner planner(nodes, request, settings);
  PlacementResult result;
  result.placements.resize(vms.size());
  for (size_t i : order) result.placements[i] = planner.place(vms[i]);
  return result;
}

Resources effective_capacity(const NodeState& node, const OvercommitRatios& ratios) {
  return Resources{overcommitted(node.capacity.vcpus, node.host_reserve.vcpus, ratios.cpu),
                   overcommitted(node.capacity.memory_mib, node.host_reserve.memory_mib, ratios.memory),
                   overcommitted(node.capacity.disk_gib, node.host_reserve.disk_gib, ratios.disk)};
}

Status check_settings(const SchedulerSettings& settings) {
  const std::array<std::pair<const char*, double>, 3> ratios = {
      {{"cpu", settings.overcommit.cpu}, {"memory", settings.overcommit.memory}, {"disk", settings.overcommit.disk}}};
  for (const auto& [name, ratio] : ratios) {
    if (!std::isfinite(ratio) || ratio <= 0) {
      return Status(NODEHA_ERR_INVALID, std::string("overcommit ratio for ") + name + " must be a positive number");
    }
  }
  return Status::ok();
}

const char* reason_name(ReasonCode code) {
  switch (code) {
    case ReasonCode::kNoCandidates: return "no_candidates";
    case ReasonCode::kInsufficientCapacity: return "insufficient_capacity";
    case ReasonCode::kTargetUnavailable: return "target_unavailable";
    case ReasonCode::kTargetInsufficient: return "target_insufficient";
    case ReasonCode::kAntiAffinity: return "anti_affinity";
  }
  return "unknown";
}

const char* policy_name(Policy policy) { return policy == Policy::kPack ? "pack" : "spread"; }

// JSON ---------------------------------------------------------------------------------------

namespace {

constexpr std::array<ReasonCode, 5> kReasonCodes = {ReasonCode::kNoCandidates, ReasonCode::kInsufficientCapacity,
                                                    ReasonCode::kTargetUnavailable, ReasonCode::kTargetInsufficient,
                                                    ReasonCode::kAntiAffinity};

std::string item(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

bool is_name(const Json& v) { return v.is_string() && !v.get_ref<const std::string&>().empty(); }

// Reads the fields of one JSON object, keeping the first error; after an error every read is a
// no-op returning a default, so a decoder reads straight through and checks once at the end.
class Reader {
 public:
  Reader(const Json& json, std::string path, std::vector<std::string_view> known, Status& error)
      : json_(json), path_(std::move(path)), error_(error) {
    if (!ok()) return;
    if (!json_.is_object()) {
      fail(path_ + " must be an object");
      return;
    }
    for (const auto& [key, value] : json_.items()) {
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      fail(at(key) + " is not a known field (known: " + list + ")");
      return;
    }
  }

  bool ok() const { return error_.is_ok(); }
  void fail(std::string message) {
    if (ok()) error_ = Status(NODEHA_ERR_INVALID, std::move(message));
  }
  std::string at(std::string_view name) const {
    return path_.empty() ? std::string(name) : path_ + "." + std::string(name);
  }

  // The field, or nullptr when absent (an error if required) or after an error.
  const Json* get(const char* name, bool required) {
    if (!ok()) return nullptr;
    auto it = json_.find(name);
    if (it != json_.end()) return &*it;
    if (required) fail(at(name) + " is missing");
    return nullptr;
  }

  std::string name(const char* field, bool required = true) {
    const Json* v = get(field, required);
    if (v && is_name(*v)) return v->get<std::string>();
    if (v) fail(at(field) + " must be a non-empty string");
    return {};
  }

  // One of `options` (the field must be present).
  std::string choice(const char* field, const std::vector<std::string>& options) {
    const Json* v = get(field, true);
    if (v && v->is_string() && std::find(options.begin(), options.end(), *v) != options.end()) return *v;
    if (v) fail(at(field) + " must be \"" + options[0] + "\" or \"" + options[1] + "\"");
    return {};
  }

  // An integer in [minimum, kMaxQuantity].
  int64_t quantity(const char* field, int64_t minimum) {
    const Json* v = get(field, true);
    if (!v) return 0;
    bool too_large = v->is_number_unsigned() ? v->get<uint64_t>() > uint64_t{kMaxQuantity}
                                             : v->is_number_integer() && v->get<int64_t>() > kMaxQuantity;
    if (too_large) {
      fail(at(field) + " must be at most " + std::to_string(kMaxQuantity));
      return 0;
    }
    if (!v->is_number_integer() || v->get<int64_t>() < minimum) {
      fail(at(field) + (minimum > 0 ? " must be a positive integer" : " must be a non-negative integer"));
      return 0;
    }
    return v->get<int64_t>();
  }

  bool boolean(const char* field) {
    const Json* v = get(field, true);
    if (v && !v->is_boolean()) fail(at(field) + " must be true or false");
    return v && v->is_boolean() && v->get<bool>();
  }

  // The field when it is an array; nullptr when absent (an error if required) or not an array.
  const Json* array(const char* field, bool required) {
    const Json* v = get(field, required);
    if (v && !v->is_array()) fail(at(field) + " must be an array");
    return ok() ? v : nullptr;
  }

 private:
  const Json& json_;
  std::string path_;
  Status& error_;
};

VmRequest decode_vm(const Json& json, const std::string& path, Status& error) {
  Reader in(json, path, {"uuid", "vcpus", "memory_mib", "disk_gib", "local_disk", "group", "priority"}, error);
  VmRequest vm;
  vm.uuid = in.name("uuid");
  vm.vcpus = in.quantity("vcpus", 1);
  vm.memory_mib = in.quantity("memory_mib", 1);
  vm.disk_gib = in.quantity("disk_gib", 0);
  vm.local_disk = in.boolean("local_disk");
  vm.group = in.name("group", false);
  if (json.is_object() && json.contains("priority")) vm.priority = in.quantity("priority", 0);
  return vm;
}

Placement decode_placement(const Json& json, const std::string& path, Status& error) {
  Reader in(json, path, {"uuid", "node", "code", "message"}, error);
  Placement p;
  p.uuid = in.name("uuid");
  p.node = in.name("node", false);
  if (!in.ok()) return p;
  if (!p.node.empty()) {
    if (json.contains("code") || json.contains("message")) in.fail(path + " has a node, so no code or message");
    return p;
  }
  std::string code = in.name("code");
  std::string message = in.name("message");
  auto known = std::find_if(kReasonCodes.begin(), kReasonCodes.end(),
                            [&](ReasonCode c) { return code == reason_name(c); });
  if (in.ok() && known == kReasonCodes.end()) {
    in.fail(in.at("code") + " must be no_candidates, insufficient_capacity, target_unavailable, "
                            "target_insufficient or anti_affinity");
  }
  if (in.ok()) p.reason = Reason{*known, message};
  return p;
}

void decode_groups(const Json& json, Reader& in, PlacementRequest& request) {
  if (!json.is_object()) return in.fail("groups must be an object of group name to \"hard\" or \"soft\"");
  for (const auto& [name, policy] : json.items()) {
    if (name.empty()) return in.fail("groups has an empty group name");
    if (policy != "hard" && policy != "soft") return in.fail("groups." + name + " must be \"hard\" or \"soft\"");
    request.groups[name] = policy == "hard" ? GroupPolicy::kHard : GroupPolicy::kSoft;
  }
}

Json parse(std::string_view text, const char* what, Status& error) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    error = Status(NODEHA_ERR_INVALID,
                   std::string(what) + " is not valid JSON (at byte " + std::to_string(e.byte) + ")");
    return nullptr;
  } catch (const Json::exception& e) {  // out_of_range: a number beyond double, like 1e999
    error = Status(NODEHA_ERR_INVALID, std::string(what) + " is not valid JSON: " + e.what());
    return nullptr;
  }
}

}  // namespace

Result<PlacementRequest> decode_request(const Json& json) {
  if (!json.is_object()) return Status(NODEHA_ERR_INVALID, "request must be a JSON object");
  Status error;
  Reader in(json, "", {"vms", "exclude", "target", "policy", "groups"}, error);
  PlacementRequest request;
  if (const Json* vms = in.array("vms", true)) {
    std::unordered_map<std::string, size_t> seen;  // uuid -> first index
    for (size_t i = 0; i < vms->size() && in.ok(); ++i) {
      request.vms.push_back(decode_vm((*vms)[i], item("vms", i), error));
      auto [first, fresh] = seen.try_emplace(request.vms.back().uuid, i);
      if (!fresh) in.fail(item("vms", i) + ".uuid repeats " + item("vms", first->second) + ".uuid");
    }
  }
  if (const Json* exclude = in.array("exclude", false)) {
    for (size_t i = 0; i < exclude->size() && in.ok(); ++i) {
      if (is_name((*exclude)[i])) {
        request.exclude.push_back((*exclude)[i].get<std::string>());
      } else {
        in.fail(item("exclude", i) + " must be a non-empty string");
      }
    }
  }
  if (json.contains("target")) request.target = in.name("target");
  if (json.contains("policy")) {
    request.policy = in.choice("policy", {"spread", "pack"}) == "pack" ? Policy::kPack : Policy::kSpread;
  }
  if (const Json* groups = in.get("groups", false)) decode_groups(*groups, in, request);
  if (!error.is_ok()) return error;
  return request;
}

Result<PlacementRequest> parse_request(std::string_view text) {
  Status error;
  Json json = parse(text, "request", error);
  if (!error.is_ok()) return error;
  return decode_request(json);
}

Json encode_request(const PlacementRequest& request) {
  Json vms = Json::array();
  for (const VmRequest& vm : request.vms) {
    Json j = {{"uuid", vm.uuid}, {"vcpus", vm.vcpus}, {"memory_mib", vm.memory_mib},
              {"disk_gib", vm.disk_gib}, {"local_disk", vm.local_disk}};
    if (!vm.group.empty()) j["group"] = vm.group;
    if (vm.priority != 0) j["priority"] = vm.priority;
    vms.push_back(std::move(j));
  }
  Json groups = Json::object();
  for (const auto& [name, policy] : request.groups) groups[name] = policy == GroupPolicy::kHard ? "hard" : "soft";
  Json json = {{"vms", std::move(vms)}, {"exclude", request.exclude}, {"groups", std::move(groups)}};
  if (request.target) json["target"] = *request.target;
  if (request.policy) json["policy"] = policy_name(*request.policy);
  return json;
}

Result<PlacementResult> decode_result(const Json& json) {
  if (!json.is_object()) return Status(NODEHA_ERR_INVALID, "result must be a JSON object");
  Status error;
  Reader in(json, "", {"placements"}, error);
  PlacementResult result;
  if (const Json* placements = in.array("placements", true)) {
    for (size_t i = 0; i < placements->size() && in.ok(); ++i) {
      result.placements.push_back(decode_placement((*placements)[i], item("placements", i), error));
    }
  }
  if (!error.is_ok()) return error;
  return result;
}

Result<PlacementResult> parse_result(std::string_view text) {
  Status error;
  Json json = parse(text, "result", error);
  if (!error.is_ok()) return error;
  return decode_result(json);
}

Json encode_result(const PlacementResult& result) {
  Json placements = Json::array();
  for (const Placement& p : result.placements) {
    if (p.reason) {
      placements.push_back({{"uuid", p.uuid}, {"code", reason_name(p.reason->code)}, {"message", p.reason->message}});
    } else {
      placements.push_back({{"uuid", p.uuid}, {"node", p.node}});
    }
  }
  return Json{{"placements", std::move(placements)}};
}

namespace {

// A JSON string as nlohmann's dump() writes it: quote, backslash and control characters escaped
// (the short forms where JSON has them, else \u00xx), everything else as it is.
void append_string(std::string& out, std::string_view text) {
  out += '"';
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace

void append_placements(std::string& out, const PlacementResult& result) {
  out += '[';
  for (size_t i = 0; i < result.placements.size(); ++i) {
    const Placement& p = result.placements[i];
    out += i == 0 ? "{" : ",{";
    if (p.reason) {  // keys in dump()'s (sorted) order
      out += "\"code\":";
      append_string(out, reason_name(p.reason->code));
      out += ",\"message\":";
      append_string(out, p.reason->message);
    } else {
      out += "\"node\":";
      append_string(out, p.node);
    }
    out += ",\"uuid\":";
    append_string(out, p.uuid);
    out += '}';
  }
  out += ']';
}

}  // namespace nodeha::scheduler
