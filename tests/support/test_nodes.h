// Compute nodes on the libvirt test driver, for integration tests: a node file (its CPUs, memory
// and running domains) that an agent's `test://<file>` URI loads into the agent's own process,
// and the config of such an agent. Killing the agent is the node's power loss; starting it again
// on the same file brings its domains back, running, as a node that returns with its old VMs.
#pragma once

#include "wait.h"

#include <set>
#include <string>
#include <vector>

namespace nodeha::test {

struct Vm {
  std::string name, uuid;
  bool local_disk = false;  // a file disk under /var/lib/libvirt/images; else a shared rbd disk
  std::string devices;      // more of them, after the disk
};

// "0000000N-0000-4000-8000-00000000000I": VM i of node N.
std::string uuid_for(int node, int i);
// VMs "vm-N-0".. of node N; the first `local` of them with a local disk.
std::vector<Vm> vms_of(int node, int count, int local = 0);
// A test-driver node file: 8 CPUs, `memory_mib`, and the given domains (running, 64 MiB, 1 vCPU).
std::string node_xml(const std::vector<Vm>& vms, int memory_mib = 16384);

// A test's node files in `dir`, each written once: a node started again finds its file and
// "returns" with the domains it had.
class NodeFiles {
 public:
  explicit NodeFiles(const TempDir& dir) : dir_(dir) {}
  // The path of the file of `node`; written with `vms` and `memory_mib` the first time only.
  std::string path(const std::string& node, const std::vector<Vm>& vms = {}, int memory_mib = 16384);

 private:
  const TempDir& dir_;
  std::set<std::string> written_;
};

// An agent of node `node` on the node file `node_file`, NATS at `nats_urls`: heartbeat every
// second, vms syncing every 300 ms and destroying at once (stop_timeout 0s).
std::string test_agent_config(const std::string& node, const std::string& node_file,
                              const std::vector<std::string>& nats_urls);

}  // namespace nodeha::test
