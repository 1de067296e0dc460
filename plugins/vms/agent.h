// The agent side of the vms plugin (docs/node-operations.md): keeps the vms bucket true for this
// node (inventory.h: records, stale copies, claims, supervision) and serves, under
// <prefix>.agent.<node>.:
//   vm.list      {}                          -> {vms:[{uuid,name,state,reason,vcpus,memory_mib,local_disk}]}
//   vm.define    {xml}                       -> {uuid}
//   vm.start     {uuid}                      -> {uuid,state}; node_drained on a drained node
//   vm.stop      {uuid,timeout_ms?,force?}   -> {uuid,state,forced}
//   vm.undefine  {uuid}                      -> {uuid}; bad_value while it runs
//   drain        {timeout_ms?,parallel?}     -> {vms:[{uuid,name,result,forced,error}]}
// and <prefix>.local.drain {confirm?,timeout_ms?} -> {plan}, or the journalled task {task,state,steps}.
// Out of sync (before the first sync, after the bus was lost) only local.drain is served: stale
// copies are removed before anything could start them, and a node's administrator can always
// stop its VMs. Handlers run on the event thread; libvirt and the buckets are used on workers,
// which reply themselves (drains.cpp has the two drains).
#pragma once

#include "command.h"
#include "domain_policy.h"
#include "guards.h"
#include "inventory.h"
#include "stopper.h"

#include <nodeha/plugin.hpp>

#include <functional>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string>

namespace nodeha::vms {

// What a worker hands back for a reply: a result, or why not.
struct Answer {
  nlohmann::json result;
  std::optional<command::Error> error;
};

class AgentSide {
 public:
  explicit AgentSide(const Host& host);  // throws ConfigError
  Status start();                        // event thread

 private:
  void tick();  // event thread: starts a sync unless one runs
  // Event thread: decodes a request of an op served only in sync; replies the refusal itself.
  bool accept(const Message& m, std::initializer_list<command::Field> fields, nlohmann::json* req);
  // Event thread: runs `work` on a worker, which replies with its answer.
  void answer(const Message& m, std::function<Answer()> work);

  void on_list(const Message& m);
  void on_define(const Message& m);
  void on_start(const Message& m);
  void on_stop(const Message& m);
  void on_undefine(const Message& m);
  void on_drain(const Message& m);        // drains.cpp
  void on_local_drain(const Message& m);  // drains.cpp

  // Workers.
  Answer list() const;
  Answer define(const std::string& xml) const;
  Answer start_vm(const std::string& uuid);
  Answer undefine(const std::string& uuid);
  void drain_domains(const Message& m, Millis timeout, int parallel);                           // drains.cpp
  void local_drain(const Message& m, const nlohmann::json& req, bool confirm, Millis timeout);  // drains.cpp
  void journal_drain(const std::string& reply, nlohmann::json task);                            // drains.cpp

  const Host& host_;
  std::vector<std::string> shared_paths_;
  DomainPolicy policy_;  // what vm.define accepts
  // libvirt's emulators when the policy names none (libvirt_emulators is slow on a fresh
  // libvirtd): read at start and every 10 minutes on a worker, at a define only if still unknown.
  std::vector<std::string> emulators(virConnectPtr conn) const;
  void refresh_emulators() const;  // blocking
  mutable std::mutex emulators_mu_;
  mutable std::vector<std::string> emulators_;
  Millis sync_every_;
  Millis stop_timeout_;
  int drain_parallel_;
  Busy busy_;
  Held held_;
  Inventory inventory_;
  Stopper stopper_;
  bool syncing_ = false;  // event thread
};

}  // namespace nodeha::vms
