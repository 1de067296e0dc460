#include "vm_lists.h"

namespace nodeha::heartbeat {

bool VmLists::take(Heartbeat& hb) {
  if (hb.version >= 2 && !hb.has_vms) {
    auto it = lists_.find(hb.node);
    return it != lists_.end() && it->second.digest == hb.vms_digest;
  }
  List& l = lists_[hb.node];
  l.digest = hb.version >= 2 ? hb.vms_digest : std::string();
  l.vms = std::move(hb.vms);
  hb.vms.clear();
  return true;
}

const std::vector<VmInfo>* VmLists::find(const std::string& node) const {
  auto it = lists_.find(node);
  return it == lists_.end() ? nullptr : &it->second.vms;
}

}  // namespace nodeha::heartbeat
