// nodeha-host --config FILE [--set section.key=value ...]
#include "host.h"
#include "sd_notify.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nats/nats.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <ctime>
#include <optional>
#include <pthread.h>

namespace {

using nodeha::host::Host;
using nodeha::host::SystemdNotifier;

std::string status_line(Host& host, const std::string& note = "") {
  const auto& h = host.config();
  std::string line = fmt::format("STATUS=node {}, role {}: {} plugin(s) running", h.node_id,
                                 h.role == NODEHA_ROLE_CONTROLLER ? "controller" : "agent", host.running_plugins());
  if (!note.empty()) line += "; " + note.substr(0, note.find('\n'));
  return line;
}

uint64_t monotonic_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// The next of `signals`, or 0 once `deadline` passed (never, without one).
int next_signal(const sigset_t& signals, std::optional<std::chrono::steady_clock::time_point> deadline) {
  if (!deadline) {
    int sig = 0;
    return sigwait(&signals, &sig) == 0 ? sig : 0;
  }
  auto left = std::max(*deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration::zero());
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  int sig = sigtimedwait(&signals, nullptr, &ts);
  return sig > 0 ? sig : 0;  // EAGAIN: the deadline; EINTR: look again
}

// Serves until SIGTERM or SIGINT: reloads on SIGHUP and, when systemd watches the host, tells it
// every period that every plugin's event thread still runs tasks. A ping is sent at most half a
// period late (the probe's bound), so pings are at most 3/4 of WatchdogSec apart.
void serve(Host& host, const sigset_t& signals, const SystemdNotifier& systemd, const std::string& config) {
  using Clock = std::chrono::steady_clock;
  const auto period = systemd.watchdog();
  std::optional<Clock::time_point> next_ping;
  if (period) next_ping = Clock::now() + *period;
  for (;;) {
    int sig = next_signal(signals, next_ping);
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP: reloading {}", config);
      systemd.send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading {}", monotonic_usec(), config));
      auto s = host.reload();
      systemd.send("READY=1\n" + status_line(host, s ? "" : "the last reload failed: " + s.message()));
      continue;
    }
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("{}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      return;
    }
    if (!period || Clock::now() < *next_ping) continue;
    next_ping = Clock::now() + *period;
    auto bound = std::chrono::duration_cast<std::chrono::milliseconds>(*period / 2);
    if (auto s = host.event_threads_answer(bound); s) systemd.send("WATCHDOG=1");
    else spdlog::warn("watchdog: {}; not telling systemd that the host is alive", s.message());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nodeha-host: loads the plugins named in its config (agent or controller role)"};
  std::string config;
  std::vector<std::string> overrides;
  bool check_only = false;
  app.add_option("-c,--config", config, "TOML config file")->required();
  app.add_option("--set", overrides, "override a key: section.key=value or plugin.NAME.key=value (repeatable)");
  app.add_flag("--check", check_only, "validate the config and load every plugin library, then exit");
  app.footer("Exit status: 0 stopped cleanly, 1 a plugin failed to start, 2 config or plugin refused.\n"
             "Signals: SIGTERM/SIGINT stop, SIGHUP reloads the config.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : nodeha::host::kExitRefused;
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("nodeha"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");

  if (check_only) {
    auto doc = nodeha::host::ConfigDocument::load(config, overrides);
    auto planned = doc ? nodeha::host::plan_plugins(doc.value())
                       : nodeha::Result<std::vector<nodeha::host::PlannedPlugin>>(doc.status());
    if (!planned) {
      spdlog::error("refused: {}", planned.status().message());
      return nodeha::host::kExitRefused;
    }
    spdlog::info("{}: valid, {} plugin(s)", config, planned.value().size());
    return 0;
  }

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  // Under systemd (Type=notify): READY once every plugin started, the watchdog fed from then on.
  auto systemd = SystemdNotifier::from_environment();
  int code;
  {
    Host host(config, overrides);
    code = host.start();
    if (code == 0) {
      systemd.send("READY=1\n" + status_line(host));
      serve(host, signals, systemd, config);
      systemd.send("STOPPING=1\nSTATUS=stopping");
    } else {
      systemd.send(fmt::format("STATUS={} (exit {}); the log says why",
                               code == nodeha::host::kExitRefused ? "refused" : "a plugin failed to start", code));
    }
    host.stop();
  }
  // Waits for cnats' own threads: one still in OpenSSL while exit() tears it down crashes the host.
  nats_CloseAndWait(5000);
  spdlog::shutdown();
  return code;
}
