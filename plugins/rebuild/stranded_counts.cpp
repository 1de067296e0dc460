#include "stranded_counts.h"

#include "engine.h"
#include "record_fields.h"
#include "vm_record.h"

#include <map>

namespace nodeha::rebuild {

Status StrandedCounts::start() {
  if (auto vms = host_.kv_list(vm_record::kBucket); vms) {
    std::lock_guard lock(mu_);
    for (const auto& e : vms.value()) tally_.update(e.key, nlohmann::json::parse(e.value, nullptr, false));
  }
  std::vector<std::string> stale;
  if (auto nodes = host_.kv_list(tasks::kNodesBucket); nodes) {
    std::lock_guard lock(mu_);
    for (const auto& e : nodes.value())
      if (record::integer(nlohmann::json::parse(e.value, nullptr, false), vm_record::kStranded) != tally_.count(e.key))
        stale.push_back(e.key);
  }
  changed(stale);
  auto w = host_.kv_watch(vm_record::kBucket, ">", [this](const KvEntry& e) { seen(e); });
  if (!w) return w.status();
  // A count that could not be written (the bus was away) is tried again, even with no new change.
  auto t = host_.timer(Millis(5000), Millis(5000), [this] { changed({}); });
  return t ? Status::ok() : t.status();
}

void StrandedCounts::seen(const KvEntry& e) {
  std::vector<std::string> nodes;
  {
    std::lock_guard lock(mu_);
    nodes = tally_.update(e.key, e.deleted ? nlohmann::json() : nlohmann::json::parse(e.value, nullptr, false));
  }
  changed(nodes);
}

void StrandedCounts::changed(const std::vector<std::string>& nodes) {
  std::lock_guard lock(mu_);
  dirty_.insert(nodes.begin(), nodes.end());
  if (dirty_.empty() || flushing_) return;
  flushing_ = host_.spawn([this] { flush(); }).is_ok();
}

void StrandedCounts::flush() {
  std::set<std::string> failed;
  for (;;) {
    std::map<std::string, int64_t> batch;
    {
      std::lock_guard lock(mu_);
      for (const auto& node : dirty_)
        if (!failed.count(node)) batch[node] = tally_.count(node);
      if (batch.empty()) {
        flushing_ = false;  // what failed stays dirty: the timer tries it again
        return;
      }
      for (const auto& [node, count] : batch) dirty_.erase(node);
    }
    for (const auto& [node, count] : batch)
      if (Status s = write(node, count); !s) {
        host_.warn("could not write the stranded count of " + node + " (" + std::to_string(count) + "): " + s.message());
        failed.insert(node);
        std::lock_guard lock(mu_);
        dirty_.insert(node);
      }
  }
}

Status StrandedCounts::write(const std::string& node, int64_t count) const {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto cur = host_.kv_get(tasks::kNodesBucket, node);
    if (!cur) return cur.status().code() == NODEHA_ERR_NOT_FOUND ? Status::ok() : cur.status();  // no record yet
    auto next = with_stranded_count(nlohmann::json::parse(cur->value, nullptr, false), count);
    if (!next) return Status::ok();
    auto w = host_.kv_update(tasks::kNodesBucket, node, next->dump(), cur->revision);
    if (w) return Status::ok();
    if (w.status().code() != NODEHA_ERR_CONFLICT) return w.status();  // lost a race: read again
  }
  return Status(NODEHA_ERR_CONFLICT, "the record kept changing");
}

}  // namespace nodeha::rebuild
