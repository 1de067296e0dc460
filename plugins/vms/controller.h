// The controller side of the vms plugin: <prefix>.cmd.vm.list {node?} in the queue group
// "nodeha-controller" -> {vms:[record without xml]} sorted by node, then name
// (docs/node-operations.md, "Controller commands"). The bucket is read on a worker.
#pragma once

#include <nodeha/plugin.hpp>

namespace nodeha::vms {

class ControllerSide {
 public:
  explicit ControllerSide(const Host& host) : host_(host) {}
  Status start();  // event thread

 private:
  void list(const Message& m) const;  // worker

  const Host& host_;
};

}  // namespace nodeha::vms
