// The candidate nodes of one placement, indexed by the room they have left, so that the best node
// for a VM is found by looking at a few nodes instead of scoring every one.
//
// The score of node i for a VM (placement.h: the mean over resources of free_after / capacity) is
//   share_left_after(free_i, weight_i, need) = sum_r (free_ir - need_r) * weight_ir
//                                            = share_i - sum_r need_r * weight_ir
// where share_i = sum_r free_ir * weight_ir and weight_i depends on the node's capacity only. So
// among nodes of one capacity class (the same weights), the order by score is the order by
// share_i, whatever the VM. The index keeps:
//  * classes: one per distinct weight vector (nodes of the same hardware share one);
//  * in each class, states ordered by share: a state is one free vector and the nodes that have
//    exactly it (all empty nodes of a class are one state), in increasing index order.
// best() bounds each class by its first state in the policy's order, searches the class of the
// highest bound, then every other class whose bound reaches the best score found; in a class it
// walks the states in order until the bound falls below that score. It returns exactly the node
// a scan over every node would: the highest score, then the smallest index (the scan's
// tie-break). Bounds are compared with a slack far above floating-point rounding (scores lie in
// [0, 1]), so rounding can only make it look at a state more, never skip the winner.
//
// Cost: insert and erase O(log S) for S states in the class (plus the state's node count);
// best() O(C) for C classes to bound them, then O(1) per state looked at. States that lack room
// for the VM are walked past: with pack, the nearly full nodes sit first in every class. So best()
// gives up (nullopt) after looking at `budget` states and the caller scans every node instead:
// never much worse than the scan, far better where nodes share a few hardware kinds.
// Not thread-safe; one placement owns one index.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <vector>

namespace nodeha::scheduler {

// Resources as an array, so each rule is written once: vcpus, memory, disk. Amounts are whole
// numbers held in doubles (exact below 2^53).
inline constexpr size_t kResourceCount = 3;
using Amounts = std::array<double, kResourceCount>;
inline constexpr size_t kNone = std::numeric_limits<size_t>::max();

// The placement score before the policy's sign: the mean share of capacity left once `need` is
// taken. The one formula every path uses, so equal inputs give bit-equal scores.
inline double share_left_after(const Amounts& free, const Amounts& weight, const Amounts& need) {
  return (free[0] - need[0]) * weight[0] + (free[1] - need[1]) * weight[1] + (free[2] - need[2]) * weight[2];
}

inline bool fits(const Amounts& free, const Amounts& need) {
  return need[0] <= free[0] && need[1] <= free[1] && need[2] <= free[2];
}

class RoomIndex {
 public:
  // sign: +1 spread (the highest share left wins), -1 pack (the lowest wins).
  explicit RoomIndex(double sign) : sign_(sign) {}

  // Node `node` (an index: smaller wins ties) with these weights now has `free`.
  void insert(size_t node, const Amounts& weight, const Amounts& free);
  // Takes back an insert with the same arguments.
  void erase(size_t node, const Amounts& weight, const Amounts& free);

  // The node with room for `need` and !skip(node) of the highest sign * share_left_after, then
  // the smallest index; kNone when there is none; nullopt when it looked at more than `budget`
  // states without an answer.
  template <typename Skip>
  std::optional<size_t> best(const Amounts& need, Skip skip, size_t budget) const;

 private:
  struct StateKey {
    double share;  // sum_r free_r * weight_r
    Amounts free;
    bool operator<(const StateKey& o) const { return share != o.share ? share < o.share : free < o.free; }
  };
  using States = std::map<StateKey, std::vector<size_t>>;  // nodes sorted by index
  // What best() reads of every class for every VM, kept together apart from the states.
  struct Head {
    Amounts weight;
    Amounts ceiling{};  // the most of each resource any state had: a VM needing more skips the class
    double first_share = 0;  // of the first state in the policy's order; meaningless when empty
    bool empty = true;
  };
  // One search's progress.
  struct Search {
    size_t best = kNone;
    double best_score = -std::numeric_limits<double>::infinity();
    size_t budget = 0;  // states it may still look at
    bool reachable(double bound) const { return best == kNone || bound >= best_score - kSlack; }
  };

  // Anything within this of the best score is looked at: rounding errs by ~1e-15 on scores in [0, 1].
  static constexpr double kSlack = 1e-9;

  static double cost(const Head& h, const Amounts& need) {
    return need[0] * h.weight[0] + need[1] * h.weight[1] + need[2] * h.weight[2];
  }
  // The highest score any state of the class can give, or -inf when none can take the VM.
  double class_bound(const Head& h, const Amounts& need) const {
    if (h.empty || !fits(h.ceiling, need)) return -std::numeric_limits<double>::infinity();
    return sign_ * (h.first_share - cost(h, need));
  }
  void update_head(size_t c);
  // False when the budget ran out.
  template <typename Skip>
  bool search(size_t c, const Amounts& need, Skip& skip, Search& s) const;
  template <typename Skip>
  void consider(const Head& h, const States::value_type& state, const Amounts& need, Skip& skip, Search& s) const;

  double sign_;
  std::vector<Head> heads_;     // by class
  std::vector<States> states_;  // by class
  std::map<Amounts, size_t> class_of_;  // weight -> class
  mutable std::vector<double> bounds_;  // best()'s scratch, by class
};

template <typename Skip>
void RoomIndex::consider(const Head& h, const States::value_type& state, const Amounts& need, Skip& skip,
                         Search& s) const {
  const Amounts& free = state.first.free;
  if (!fits(free, need)) return;
  for (size_t node : state.second) {
    if (skip(node)) continue;
    // Every node of a state has the same score, so only its first one that may take the VM counts.
    double score = sign_ * share_left_after(free, h.weight, need);
    if (s.best == kNone || score > s.best_score || (score == s.best_score && node < s.best)) {
      s.best = node;
      s.best_score = score;
    }
    return;
  }
}

template <typename Skip>
bool RoomIndex::search(size_t c, const Amounts& need, Skip& skip, Search& s) const {
  const Head& h = heads_[c];
  const States& states = states_[c];
  double c_cost = cost(h, need);
  auto walk = [&](auto it, auto end) {
    for (; it != end && s.reachable(sign_ * (it->first.share - c_cost)); ++it) {
      if (s.budget == 0) return false;
      --s.budget;
      consider(h, *it, need, skip, s);
    }
    return true;
  };
  return sign_ > 0 ? walk(states.rbegin(), states.rend()) : walk(states.begin(), states.end());
}

template <typename Skip>
std::optional<size_t> RoomIndex::best(const Amounts& need, Skip skip, size_t budget) const {
  bounds_.resize(heads_.size());
  size_t top = kNone;
  for (size_t c = 0; c < heads_.size(); ++c) {
    bounds_[c] = class_bound(heads_[c], need);
    if (bounds_[c] > -std::numeric_limits<double>::infinity() && (top == kNone || bounds_[c] > bounds_[top])) top = c;
  }
  Search s;
  s.budget = budget;
  if (top == kNone) return kNone;
  if (!search(top, need, skip, s)) return std::nullopt;
  for (size_t c = 0; c < heads_.size(); ++c) {
    if (c == top || bounds_[c] == -std::numeric_limits<double>::infinity() || !s.reachable(bounds_[c])) continue;
    if (!search(c, need, skip, s)) return std::nullopt;
  }
  return s.best;
}

}  // namespace nodeha::scheduler
