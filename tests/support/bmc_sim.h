// A real BMC for tests: Debian's `ipmi_sim` (package openipmi) answering IPMI over LAN (RMCP and
// RMCP+, UDP) on an address and port, optionally inside a network namespace (netns.h), whose
// chassis power is a "machine": a process that runs while the power is on.
//
// How power maps to the machine (lan.conf, see BmcSim::lan_conf in bmc_sim.cpp): `startcmd` runs
// the machine (`startnow true`: powered on when the simulator starts); ipmi_sim reports the power
// on while that process lives. `chassis power off` has ipmi_sim send it SIGTERM at its next
// one-second tick (no VM is connected to the serial channel, so there is no graceful step), and
// SIGKILL `kill_wait` seconds later. The machine traps SIGTERM, runs the test's `on_power_off`
// command (e.g. "kill this node's QEMUs and agent"), and exits: then the power reads off.
// `chassis power on` starts a new machine.
//
// Nothing outlives the object: the machine runs in a session of its own, and the destructor
// kills its whole process group (its sleep, a command it runs) and ipmi_sim.
//
// Thread contract: one test thread uses the object; nothing here is thread-safe.
#pragma once

#include "process.h"
#include "wait.h"

#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>

namespace nodeha::test {

// A port of `type` (SOCK_DGRAM, SOCK_STREAM) on IPv4 `address` in network namespace `ns` ("" for
// the test's own) that was free a moment ago; 0 when none could be bound.
int free_port_in(const std::string& ns, const std::string& address, int type);

struct BmcSimOptions {
  std::string netns;                  // network namespace to run in; empty: the test's own
  std::string address = "127.0.0.1";  // the LAN channel's address (in `netns`)
  int port = 0;                       // UDP; 0: a free one
  std::string user = "admin";         // an admin user (1-16 characters)
  std::string password = "secret";
  std::string on_power_off;           // /bin/sh command the machine runs when powered off; may be empty
};

class BmcSim {
 public:
  // Started with the machine powered on, or ok() is false and error() says why.
  explicit BmcSim(BmcSimOptions options);
  ~BmcSim();
  BmcSim(const BmcSim&) = delete;
  BmcSim& operator=(const BmcSim&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& address() const { return options_.address; }
  int port() const { return options_.port; }
  const std::string& user() const { return options_.user; }
  // A file (mode 0600) holding the password: what a fence plugin's password_file names.
  std::string password_file() const { return dir_.file("password"); }

  // Through ipmitool (from the simulator's namespace): the chassis power is on (true) or off
  // (false); nullopt when the BMC did not answer.
  std::optional<bool> power_status() const;
  // `chassis power on`, then waits until the machine runs; false if it does not within 10 s.
  bool power_on();
  // The machine's process, while it runs (read from its pid file, checked alive); 0 otherwise.
  pid_t machine_pid() const;
  bool machine_running() const { return machine_pid() != 0; }

  // The chassis loses its power (its supply fails; the BMC, on standby power, goes on answering):
  // the machine's process group is killed at once, its on_power_off not run, and the power reads
  // off (ipmi_sim sees its child gone). False when no machine ran.
  bool lose_power();

  // Kills the machine's process group and ipmi_sim; idempotent.
  void stop();
  // ipmi_sim's output and the machine's, for failure messages.
  std::string log() const;

 private:
  // `ipmitool ... chassis power <action>`: its exit status and output.
  std::optional<int> ipmitool(const std::string& action, std::string* out) const;
  std::string lan_conf(int serial_port) const;

  BmcSimOptions options_;
  TempDir dir_;
  std::unique_ptr<Process> sim_;
  std::string error_;
};

}  // namespace nodeha::test
