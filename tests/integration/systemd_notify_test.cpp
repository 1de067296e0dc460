// nodeha-host under systemd's Type=notify, with the test in systemd's place: a datagram socket
// named by $NOTIFY_SOCKET. READY=1 comes once every plugin started, WATCHDOG=1 every half of
// $WATCHDOG_USEC while every plugin's event thread runs, STOPPING=1 at SIGTERM.
#include "host_process.h"
#include "nats_server.h"

#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

namespace nodeha::test {
namespace {

using Clock = std::chrono::steady_clock;

// systemd's end of the notify socket. `name` is a path, or '@' and an abstract name.
class NotifyListener {
 public:
  explicit NotifyListener(std::string name) : name_(std::move(name)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string bytes = name_[0] == '@' ? std::string(1, '\0') + name_.substr(1) : name_;
    std::memcpy(a.sun_path, bytes.data(), bytes.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + bytes.size() + (name_[0] == '@' ? 0 : 1));
    bound_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&a), len) == 0;
  }
  ~NotifyListener() {
    if (fd_ >= 0) close(fd_);
  }
  bool bound() const { return bound_; }
  const std::string& name() const { return name_; }

  // The next datagram within `timeout`, if one came.
  std::optional<std::string> next(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }
  // Reads datagrams until one contains `what`; false if none did within `timeout`.
  bool wait_for(const std::string& what, std::chrono::milliseconds timeout, std::string* seen = nullptr) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      auto m = next(left);
      if (!m) return false;
      if (seen) *seen += *m + "|";
      if (m->find(what) != std::string::npos) return true;
    }
  }
  // Takes what already arrived.
  void drain() {
    while (next(std::chrono::milliseconds(0))) {
    }
  }

 private:
  std::string name_;
  int fd_ = -1;
  bool bound_ = false;
};

// The environment systemd gives a Type=notify service with WatchdogSec=, for the child only.
class SystemdEnvironment {
 public:
  SystemdEnvironment(const std::string& socket, const char* watchdog_usec, const char* watchdog_pid) {
    setenv("NOTIFY_SOCKET", socket.c_str(), 1);
    if (watchdog_usec) setenv("WATCHDOG_USEC", watchdog_usec, 1);
    if (watchdog_pid) setenv("WATCHDOG_PID", watchdog_pid, 1);
  }
  ~SystemdEnvironment() {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }
};

class SystemdNotify : public testing::Test {
 protected:
  // A controller with the heartbeat plugin and `extra` plugin tables, as systemd starts it with
  // WatchdogSec=400ms, with NOTIFY_SOCKET=`socket`.
  std::unique_ptr<HostProcess> start(const std::string& socket, const std::string& extra = "",
                                     const char* watchdog_pid = nullptr) {
    SystemdEnvironment env(socket, "400000", watchdog_pid);
    return std::make_unique<HostProcess>(controller(extra));
  }
  std::string controller(const std::string& extra = "") const {
    return host_tables("controller", "ctl-1", nats_.url()) + "[[plugin]]\nlibrary = \"heartbeat\"\n" + extra;
  }

  NatsServer nats_;
  TempDir dir_;
};

constexpr auto kWatchdog = std::chrono::milliseconds(400);  // WATCHDOG_USEC=400000

// WATCHDOG=1 `count` times in a row, each within kWatchdog of the one before (systemd's limit).
void expect_pings(NotifyListener& systemd, int count, const HostProcess& host) {
  auto last = Clock::now();
  for (int i = 0; i < count; ++i) {
    auto m = systemd.next(kWatchdog);
    ASSERT_TRUE(m) << "ping " << i << ": none within " << kWatchdog.count() << " ms\n" << host.log();
    EXPECT_EQ(*m, "WATCHDOG=1");
    auto now = Clock::now();
    EXPECT_LT(now - last, kWatchdog);
    last = now;
  }
}

TEST_F(SystemdNotify, ReadyOnceStartedThenWatchdogThenStopping) {
  NotifyListener systemd(dir_.file("notify.sock"));
  ASSERT_TRUE(systemd.bound()) << std::strerror(errno);
  auto host = start(systemd.name());
  auto ready = systemd.next(15s);
  ASSERT_TRUE(ready) << host->log();
  EXPECT_EQ(*ready, "READY=1\nSTATUS=node ctl-1, role controller: 1 plugin(s) running");
  // READY came after start() finished: the file it writes last is there.
  EXPECT_TRUE(std::filesystem::exists(host->state_dir() + "/metrics.address"));
  expect_pings(systemd, 5, *host);

  host->process().signal(SIGTERM);
  std::string seen;
  EXPECT_TRUE(systemd.wait_for("STOPPING=1", 10s, &seen)) << seen << "\n" << host->log();
  EXPECT_EQ(host->process().wait_exit(10s), 0) << host->log();
}

TEST_F(SystemdNotify, ReloadIsAnnouncedAndTheWatchdogGoesOn) {
  NotifyListener systemd(dir_.file("notify.sock"));
  ASSERT_TRUE(systemd.bound()) << std::strerror(errno);
  auto host = start(systemd.name());
  ASSERT_TRUE(systemd.wait_for("READY=1", 15s)) << host->log();
  host->rewrite(controller("[[plugin]]\nlibrary = \"tasks\"\n"));
  host->process().signal(SIGHUP);
  std::string seen;
  ASSERT_TRUE(systemd.wait_for("RELOADING=1\nMONOTONIC_USEC=", 10s, &seen)) << seen << host->log();
  seen.clear();
  ASSERT_TRUE(systemd.wait_for("READY=1\nSTATUS=node ctl-1, role controller: 2 plugin(s) running", 10s, &seen))
      << seen << host->log();
  expect_pings(systemd, 3, *host);
}

// The pings prove that every plugin's event thread runs tasks: one stuck thread stops them
// (systemd then kills and restarts the host), and they resume once it runs again.
TEST_F(SystemdNotify, AStuckEventThreadStopsThePings) {
  NotifyListener systemd(dir_.file("notify.sock"));
  ASSERT_TRUE(systemd.bound()) << std::strerror(errno);
  std::string hold = dir_.file("hold");
  auto host = start(systemd.name(), "[[plugin]]\nlibrary = \"{fixtures}/stuck_thread.so\"\npath = \"" + hold + "\"\n");
  ASSERT_TRUE(systemd.wait_for("READY=1", 15s)) << host->log();
  ASSERT_TRUE(systemd.wait_for("WATCHDOG=1", kWatchdog)) << host->log();

  std::ofstream(hold) << "";
  ASSERT_TRUE(wait_until([&] { return host->log().find("stuck_thread did not answer") != std::string::npos; }, 5s))
      << host->log();
  systemd.drain();  // pings sent before the thread got stuck
  EXPECT_FALSE(systemd.next(3 * kWatchdog)) << "a ping while a plugin's event thread is stuck";

  std::filesystem::remove(hold);
  EXPECT_TRUE(systemd.wait_for("WATCHDOG=1", 5s)) << host->log();
  expect_pings(systemd, 3, *host);
}

TEST_F(SystemdNotify, AbstractSocketAndNoWatchdogMeantForAnotherProcess) {
  NotifyListener systemd("@nodeha-test-notify-" + std::to_string(getpid()));
  ASSERT_TRUE(systemd.bound()) << std::strerror(errno);
  // WATCHDOG_PID names another process of the unit (pid 1 is never nodeha-host here).
  auto host = start(systemd.name(), "", "1");
  ASSERT_TRUE(systemd.wait_for("READY=1", 15s)) << host->log();
  EXPECT_FALSE(systemd.next(3 * kWatchdog)) << "a ping for another process's watchdog";
  host->process().signal(SIGTERM);
  EXPECT_TRUE(systemd.wait_for("STOPPING=1", 10s)) << host->log();
  EXPECT_EQ(host->process().wait_exit(10s), 0) << host->log();
}

// Outside systemd, or with a socket nobody reads, the host runs as ever and says why it cannot
// notify.
TEST_F(SystemdNotify, AnUnusableSocketIsLoggedAndChangesNothing) {
  auto relative = start("notify.sock");
  auto absent = start(dir_.file("nobody.sock"));
  ASSERT_TRUE(relative->wait_ready()) << relative->log();
  ASSERT_TRUE(absent->wait_ready()) << absent->log();
  EXPECT_NE(relative->log().find("NOTIFY_SOCKET=notify.sock is not an absolute path"), std::string::npos)
      << relative->log();
  EXPECT_NE(absent->log().find("sending READY=1 failed"), std::string::npos) << absent->log();
  relative->process().signal(SIGTERM);
  absent->process().signal(SIGTERM);
  EXPECT_EQ(relative->process().wait_exit(10s), 0) << relative->log();
  EXPECT_EQ(absent->process().wait_exit(10s), 0) << absent->log();
}

}  // namespace
}  // namespace nodeha::test
