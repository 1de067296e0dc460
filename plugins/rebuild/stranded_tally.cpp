#include "stranded_tally.h"

#include "record_fields.h"
#include "vm_record.h"

namespace nodeha::rebuild {

std::vector<std::string> StrandedTally::update(const std::string& uuid, const nlohmann::json& record) {
  auto mark = vm_record::stranded_of(record);
  std::string now = mark ? mark->node : "";
  auto it = node_of_.find(uuid);
  std::string was = it == node_of_.end() ? "" : it->second;
  if (now == was) return {};
  std::vector<std::string> changed;
  if (!was.empty()) {
    if (--counts_[was] == 0) counts_.erase(was);
    node_of_.erase(it);
    changed.push_back(was);
  }
  if (!now.empty()) {
    ++counts_[now];
    node_of_[uuid] = now;
    changed.push_back(now);
  }
  return changed;
}

int64_t StrandedTally::count(const std::string& node) const {
  auto it = counts_.find(node);
  return it == counts_.end() ? 0 : it->second;
}

std::optional<nlohmann::json> with_stranded_count(const nlohmann::json& record, int64_t count) {
  if (!record.is_object()) return std::nullopt;  // not a node record anyone could read: left alone
  const auto& stored = record::field(record, vm_record::kStranded);
  if (count == 0 ? stored.is_null() : stored.is_number_integer() && stored.get<int64_t>() == count) return std::nullopt;
  nlohmann::json out = record;
  if (count == 0)
    out.erase(vm_record::kStranded);
  else
    out[vm_record::kStranded] = count;
  return out;
}

}  // namespace nodeha::rebuild
