// One compute node of the demo cluster: its hypervisor and its nodeha agent.
//
// The hypervisor is either an isolated libvirtd with small QEMU guests (tests/support/libvirtd.h)
// or, where QEMU cannot run, the libvirt test driver inside the agent's own process (a node file
// `test:///<dir>/node.xml` listing the guests, running). A power loss kills the agent, the
// daemon and every guest's qemu (test driver: the agent, which holds the guests). Power back
// restarts the daemon (the old guests are still defined, shut off: nodeha keeps autostart off);
// then the agent starts again with its old state dir, so that it knows which domains were its
// own.
//
// Thread contract: one thread (the cluster's command loop) calls everything.
#pragma once

#include "libvirtd.h"
#include "process.h"

#include <memory>
#include <string>
#include <vector>

namespace nodeha::demo {

enum class Backend { Qemu, TestDriver };

struct Guest {
  std::string name;
  std::string uuid;
};

class Node {
 public:
  // `dir` holds the agent's config, state and logs; nothing starts yet.
  Node(std::string name, std::string dir, Backend backend, std::vector<Guest> guests);
  ~Node();  // the agent first, then the daemon and every guest (Libvirtd's destructor)
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  const std::vector<Guest>& guests() const { return guests_; }
  std::string uri() const;
  // Where Prometheus scrapes the agent: fixed, so that a restarted agent is the same target.
  std::string metrics_address() const { return "127.0.0.1:" + std::to_string(metrics_port_); }
  std::string agent_log() const;
  test::Libvirtd* libvirtd() { return libvirtd_.get(); }

  // QEMU: starts the isolated libvirtd (the first start probes QEMU, several seconds); false
  // with the reason in `error`. Test driver: writes the node file.
  bool start_hypervisor(std::string* error);
  // QEMU: defines and starts the guests (64 MiB, diskless); test driver: nothing (they are in the
  // node file).
  bool start_guests(std::string* error);
  // Writes the agent's config, its `[nats]` table made of `nats_keys` (servers and login), and
  // starts it; true once its /metrics answers (15 s).
  bool start_agent(const std::string& nats_keys, std::string* error);

  // Power loss: SIGKILL to the agent, the daemon and the qemu of every guest it runs. Returns the
  // guests that were running.
  std::vector<Guest> power_off();
  // Power back: the daemon, its old guests defined and shut off (QEMU; the test driver's come
  // back running with the agent). `back` gets their names. The agent is start_agent()'s.
  bool power_on(std::vector<std::string>* back, std::string* error);

 private:
  std::string agent_config(const std::string& nats_keys) const;
  std::string node_xml() const;

  std::string name_;
  std::string dir_;
  Backend backend_;
  std::vector<Guest> guests_;
  int metrics_port_;
  int agent_starts_ = 0;
  std::unique_ptr<test::Libvirtd> libvirtd_;
  std::vector<Guest> lost_;  // running at the last power loss
  std::vector<std::unique_ptr<test::Process>> agents_;  // every incarnation; the last one runs
};

}  // namespace nodeha::demo
