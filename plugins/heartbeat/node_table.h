// A table keyed by node id, found by string_view, whose entries are never removed: what the
// controller, a follower and the monitor keep per node.
//
// Why not an std::unordered_map alone: at 10,000 nodes a heartbeat's lookup in one cost about
// 1.6 µs on our VM, a quarter of the plugin thread's time (docs/performance.md, "Node
// monitoring"). Its bucket points at the node before the one sought, and the node's cached hash
// sits after its value, hundreds of bytes from its key: four or five cache misses a lookup. Here
// the map only owns the entries; lookups probe a flat array of (hash, entry) pairs, 16 bytes
// each, kept at most half full, and then compare the one entry's key.
//
// Entries stay where they are (the map is node-based and nothing is erased), so pointers to them
// stay good. Not thread-safe: one thread, as the plugin's event thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nodeha::heartbeat {

template <class T>
class NodeTable {
 public:
  using Map = std::unordered_map<std::string, T>;
  using value_type = typename Map::value_type;  // std::pair<const std::string, T>

  NodeTable() = default;
  // The index points into the map: a copy would point into the other table.
  NodeTable(const NodeTable&) = delete;
  NodeTable& operator=(const NodeTable&) = delete;
  NodeTable(NodeTable&&) = default;  // the map's nodes move with it
  NodeTable& operator=(NodeTable&&) = default;

  // The entry of `id`, or null.
  value_type* find(std::string_view id) { return const_cast<value_type*>(std::as_const(*this).find(id)); }
  const value_type* find(std::string_view id) const {
    if (slots_.empty()) return nullptr;
    size_t h = hash(id);
    for (size_t i = h & mask();; i = (i + 1) & mask()) {
      const Slot& s = slots_[i];
      if (!s.entry) return nullptr;
      if (s.hash == h && s.entry->first == id) return s.entry;
    }
  }

  // The entry of `id`, made from `args` when there is none; and whether it was made.
  template <class... Args>
  std::pair<value_type*, bool> try_emplace(const std::string& id, Args&&... args) {
    if (value_type* e = find(id)) return {e, false};
    auto [it, made] = map_.try_emplace(id, std::forward<Args>(args)...);
    if (map_.size() * 2 > slots_.size()) grow();
    else place(&*it);
    return {&*it, made};
  }

  size_t size() const { return map_.size(); }
  auto begin() { return map_.begin(); }
  auto end() { return map_.end(); }
  auto begin() const { return map_.begin(); }
  auto end() const { return map_.end(); }

 private:
  struct Slot {
    size_t hash = 0;
    value_type* entry = nullptr;  // null: empty
  };

  static size_t hash(std::string_view id) { return std::hash<std::string_view>{}(id); }
  size_t mask() const { return slots_.size() - 1; }

  void place(value_type* e) {
    size_t h = hash(e->first);
    size_t i = h & mask();
    while (slots_[i].entry) i = (i + 1) & mask();
    slots_[i] = Slot{h, e};
  }

  // Doubles the array (a power of two, at least 16) and places every entry again.
  void grow() {
    size_t n = slots_.empty() ? 16 : slots_.size() * 2;
    while (n < map_.size() * 2) n *= 2;
    slots_.assign(n, Slot{});
    for (auto& e : map_) place(&e);
  }

  Map map_;
  std::vector<Slot> slots_;
};

}  // namespace nodeha::heartbeat
