// On controllers: keeps each node record's "stranded" count (nodes bucket) equal to the number of
// VM records marked stranded on that node (vm_record.h), whoever set or ended the marks (this
// plugin's rebuilds, the record desk when the node's agent reports a VM again, a move, a removed
// record). A watch of the vms bucket feeds a StrandedTally on the event thread; a worker writes
// the nodes whose count changed, revision-checked, keeping every other field. Several controllers
// write the same figures; a count that could not be written is tried again every 5 s.
#pragma once

#include "stranded_tally.h"

#include <nodeha/plugin.hpp>

#include <mutex>
#include <set>
#include <string>

namespace nodeha::rebuild {

class StrandedCounts {
 public:
  explicit StrandedCounts(const Host& host) : host_(host) {}
  // Event thread: reads both buckets once (a count left stale while no controller ran is
  // corrected), then watches the vms bucket.
  Status start();

 private:
  void seen(const KvEntry& e);                               // event thread
  void changed(const std::vector<std::string>& nodes);       // any thread, with mu_ not held
  void flush();                                              // worker
  Status write(const std::string& node, int64_t count) const;  // worker

  const Host& host_;
  std::mutex mu_;
  StrandedTally tally_;           // guarded by mu_
  std::set<std::string> dirty_;   // guarded by mu_: nodes whose stored count may be wrong
  bool flushing_ = false;         // guarded by mu_: a worker runs flush()
};

}  // namespace nodeha::rebuild
