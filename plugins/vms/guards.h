// What the inventory sync must know about the agent's own operations. Both thread-safe.
//
// Busy: the VMs an operation (start, stop, undefine, a drain) is working on. The sync decides
// from a snapshot (libvirt, then the bucket) that may be older than the operation's change, so it
// writes no record of such a VM and restarts none until a sync that began after the operation
// ended: otherwise a sync that saw "shut off, desired running" a moment before vm.stop recorded
// "desired stopped" would start the VM again, or one that listed a domain just before vm.undefine
// would record it again.
//
// Held: VMs a local drain stopped while their record could not be written (the bus was down).
// Supervision leaves them stopped; every sync tries to record `desired: stopped` and lets go of
// those it wrote. Kept in a file, so that an agent restarted before the bus came back still
// knows.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

namespace nodeha::vms {

class Busy {
 public:
  class Guard {
   public:
    Guard(Busy* busy, std::string uuid) : busy_(busy), uuid_(std::move(uuid)) {}
    ~Guard() { busy_->end(uuid_); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    Busy* busy_;
    std::string uuid_;
  };

  // Marks `uuid` busy for the life of the guard.
  std::unique_ptr<Guard> hold(const std::string& uuid);
  // A sync begins: forgets operations that ended before it.
  void new_round();
  // Whether an operation worked on `uuid` since the current round began.
  bool touched(const std::string& uuid) const;

 private:
  void end(const std::string& uuid);
  mutable std::mutex mu_;
  std::map<std::string, int> busy_;  // uuid -> operations under way
  std::set<std::string> touched_;
};

class Held {
 public:
  // Reads the set kept in `path` (none when the file is absent).
  explicit Held(std::string path);
  // Both return false when the set could not be written to its file (it still changed in memory).
  bool add(const std::string& uuid);
  bool remove(const std::string& uuid);
  bool contains(const std::string& uuid) const;
  std::set<std::string> all() const;

 private:
  bool save() const;  // mu_ held
  std::string path_;
  mutable std::mutex mu_;
  std::set<std::string> uuids_;
};

}  // namespace nodeha::vms
