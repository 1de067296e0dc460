#include "room_index.h"

namespace nodeha::scheduler {
namespace {

double share_of(const Amounts& free, const Amounts& weight) {
  return free[0] * weight[0] + free[1] * weight[1] + free[2] * weight[2];
}

}  // namespace

void RoomIndex::update_head(size_t c) {
  const States& states = states_[c];
  heads_[c].empty = states.empty();
  if (!states.empty()) heads_[c].first_share = sign_ > 0 ? states.rbegin()->first.share : states.begin()->first.share;
}

void RoomIndex::insert(size_t node, const Amounts& weight, const Amounts& free) {
  auto [found, fresh] = class_of_.try_emplace(weight, heads_.size());
  size_t c = found->second;
  if (fresh) {
    heads_.push_back(Head{weight});
    states_.emplace_back();
  }
  for (size_t r = 0; r < kResourceCount; ++r) heads_[c].ceiling[r] = std::max(heads_[c].ceiling[r], free[r]);
  std::vector<size_t>& nodes = states_[c][StateKey{share_of(free, weight), free}];
  nodes.insert(std::lower_bound(nodes.begin(), nodes.end(), node), node);
  update_head(c);
}

void RoomIndex::erase(size_t node, const Amounts& weight, const Amounts& free) {
  auto found = class_of_.find(weight);
  if (found == class_of_.end()) return;
  size_t c = found->second;
  auto state = states_[c].find(StateKey{share_of(free, weight), free});
  if (state == states_[c].end()) return;
  std::vector<size_t>& nodes = state->second;
  auto at = std::lower_bound(nodes.begin(), nodes.end(), node);
  if (at != nodes.end() && *at == node) nodes.erase(at);
  if (nodes.empty()) states_[c].erase(state);
  update_head(c);
}

}  // namespace nodeha::scheduler
