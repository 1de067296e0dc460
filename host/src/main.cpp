// nodeha-host --config FILE [--set section.key=value ...]
#include "host.h"

#include <CLI/CLI.hpp>
#include <nats/nats.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <pthread.h>

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

  int code;
  {
    nodeha::host::Host host(config, overrides);
    code = host.start();
    if (code == 0) {
      for (;;) {
        int sig = 0;
        sigwait(&signals, &sig);
        if (sig == SIGHUP) {
          spdlog::info("SIGHUP: reloading {}", config);
          (void)host.reload();
          continue;
        }
        spdlog::info("{}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
      }
    }
    host.stop();
  }
  nats_Close();
  spdlog::shutdown();
  return code;
}
