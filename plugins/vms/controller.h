// The controller side of the vms plugin, in the queue group "nodeha-controller", on workers (a
// following controller's instance serves cmd.vm.list alone):
//   <prefix>.cmd.vm.list {node?, stranded?} -> {vms:[record without xml]} sorted by node, then
//   name; stranded: true lists only the VMs a rebuild left behind (docs/node-operations.md,
//   "Controller commands");
//   <prefix>.cmd.vm.set_ha {vm: uuid, ha: "off" | 0..1000} -> the record without xml: the VM's
//   automatic-recovery priority (vm_record.h);
//   <prefix>.ctl.<node>.vm.write: the record desk, which writes the `vms` bucket for the agents
//   (record_desk.h), only what desk_rules.h lets that node's agent write;
//   <prefix>.ctl.<node>.vm.event: agents' VM events, relayed on evt.vm.<uuid> as said by <node>
//   (on the event thread: no round trip).
#pragma once

#include <nodeha/plugin.hpp>

#include <optional>
#include <string>

namespace nodeha::vms {

class ControllerSide {
 public:
  explicit ControllerSide(const Host& host) : host_(host) {}
  // Event thread. A following controller's instance (Host::following) serves cmd.vm.list only.
  Status start();

 private:
  // Runs `fn` on a worker for each message on `subject`, in the queue group.
  Status serve(const std::string& subject, void (ControllerSide::*fn)(const Message&) const);
  void list(const Message& m) const;   // worker
  void set_ha(const Message& m) const;  // worker
  void write(const Message& m) const;  // worker
  void relay(const Message& m) const;  // event thread
  // Whether `owner` lists VM `uuid` (vm.list); nullopt when it does not answer.
  std::optional<std::string> owner_state(const std::string& owner, const std::string& uuid) const;

  const Host& host_;
  Metric refused_;
};

}  // namespace nodeha::vms
