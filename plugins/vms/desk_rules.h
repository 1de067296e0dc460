// What the controller's record desk (record_desk.h) writes for an agent: only what that node's
// agent may write of the `vms` bucket (docs/node-operations.md, "Who writes what"). Pure.
//   - a new record: it names the writing node, generation 1 (a domain nobody recorded yet);
//   - a record naming the writing node: any change, `generation` unchanged, or one more when it
//     moves the VM away (the source of a migration hands it to the destination);
//   - a record naming another node, or none: only a claim (the writing node, generation + 1), and
//     only once the recorded node has been asked and does not list the VM (or does not answer: a
//     live migration landed while the source is cut off, as the agent's own rule says);
//   - a removal: only of a record naming the writing node.
#pragma once

#include "record_desk.h"

#include <nlohmann/json.hpp>

#include <string>

namespace nodeha::vms {

struct DeskVerdict {
  enum class Kind { Write, AskOwner, Refuse };
  Kind kind = Kind::Refuse;
  std::string code;     // Refuse
  std::string message;  // Refuse
  std::string owner;    // AskOwner: the node whose vm.list decides the claim
};

// `current` is the record as stored (null: none). `node` is the desk subject's node, checked.
DeskVerdict judge(const std::string& node, const nlohmann::json& current, const desk::VmWrite& w);

// The stranded mark (vm_record.h) to store with a write `judge` let through; null: none. The mark
// is the controller's: whatever the agent wrote in its place is ignored. It is kept from `current`
// unless this write ends it: the node it is stranded on reports the VM there (any state but
// "missing": its agent runs again and has the domain), or the record moves to another node.
nlohmann::json stranded_after(const std::string& node, const nlohmann::json& current, const desk::VmWrite& w);

}  // namespace nodeha::vms
