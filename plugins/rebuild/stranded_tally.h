// How many VMs are stranded on each node (vm_record.h: a rebuild skipped them, their disks being
// on that node only), from the vms bucket as a watch delivers it. Pure; not thread-safe (its owner
// locks). Memory: one entry per stranded VM; O(log n) per change.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace nodeha::rebuild {

class StrandedTally {
 public:
  // The VM's record as now stored (null: deleted). Returns the nodes whose count changed: none,
  // one (marked or cleared), or two (a mark that names another node now).
  std::vector<std::string> update(const std::string& uuid, const nlohmann::json& record);
  int64_t count(const std::string& node) const;

 private:
  std::map<std::string, std::string> node_of_;  // uuid -> the node it is stranded on
  std::map<std::string, int64_t> counts_;
};

// The node record `record` with its "stranded" count set to `count` (the field absent when 0, as
// on a node that never had any); nullopt when it already says so. Every other field is kept: the
// record has several writers (plugins/heartbeat/node_record.h).
std::optional<nlohmann::json> with_stranded_count(const nlohmann::json& record, int64_t count);

}  // namespace nodeha::rebuild
