// systemd's service notification protocol (sd_notify(3)), spoken by hand: one AF_UNIX datagram of
// "KEY=VALUE" lines to $NOTIFY_SOCKET ('@' first: the abstract namespace). No libsystemd: the host
// needs four messages, and the protocol is a stable interface of systemd. Outside systemd (no
// $NOTIFY_SOCKET) every call does nothing.
//
// Threads: the main thread only (it starts, reloads and stops the host and feeds the watchdog).
#pragma once

#include <nodeha/plugin.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <sys/types.h>

namespace nodeha::host {

// How often to tell the watchdog we are alive: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
// advises, when that is a positive number and $WATCHDOG_PID is unset or names `self` (a watchdog
// meant for another process of the unit is not ours to feed). Pure, for the tests.
std::optional<std::chrono::microseconds> watchdog_period(const char* watchdog_usec, const char* watchdog_pid,
                                                         pid_t self);

class SystemdNotifier {
 public:
  // Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID. A socket path that cannot be an
  // AF_UNIX address is logged once and leaves the notifier off.
  static SystemdNotifier from_environment();
  SystemdNotifier() = default;
  ~SystemdNotifier();
  SystemdNotifier(SystemdNotifier&& other) noexcept;
  SystemdNotifier& operator=(SystemdNotifier&& other) noexcept;

  bool enabled() const { return fd_ >= 0; }
  // The watchdog period (see watchdog_period) when systemd watches us; nullopt otherwise.
  std::optional<std::chrono::microseconds> watchdog() const { return enabled() ? watchdog_ : std::nullopt; }
  // Sends `state` ("READY=1\nSTATUS=...") as one datagram. A failure is logged and returned;
  // nothing else depends on it (systemd acts on a missed READY or WATCHDOG by itself).
  Status send(const std::string& state) const;

 private:
  int fd_ = -1;
  std::string path_;     // as given, '@' kept: for messages
  std::string address_;  // sun_path's bytes: a leading NUL for the abstract namespace
  std::optional<std::chrono::microseconds> watchdog_;
  mutable bool warned_ = false;  // a failed send was logged as a warning
};

}  // namespace nodeha::host
