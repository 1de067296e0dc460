// fence_ipmi (controller): `cmd.fence.<method>` {node, timeout_ms?}. Powers the node off through
// its BMC with ipmitool and answers ok only once `chassis power status` says off: the fence
// contract of docs/plugins.md ("Fence plugins"), which the recovery ladder relies on before it
// rebuilds a node's VMs elsewhere.
//
// Threads: the subscription hands each request to a worker (Host::spawn); ipmitool runs there,
// each call killed at the request's deadline (child_run.h), so the event thread never waits on a
// BMC. stop() makes every running call end within 100 ms and its request answer fence_failed.
#include "bmc_table.h"
#include "child_run.h"
#include "command.h"
#include "fence_loop.h"
#include "fence_request.h"
#include "ipmitool.h"

#include <nodeha/plugin.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

namespace nodeha::fence_ipmi {
namespace {

using Clock = std::chrono::steady_clock;

inline constexpr const char* kFenceFailed = "fence_failed";
// Between two tries, and between two looks at the power state.
constexpr Millis kPause(250);

const nodeha_config_key kKeys[] = {
    key("method", NODEHA_CONFIG_STRING, "\"ipmi\"", "", "the fence method served: requests come on cmd.fence.<method>"),
    key("ipmitool", NODEHA_CONFIG_STRING, "\"ipmitool\"", "path", "the ipmitool program (searched in PATH without a '/')"),
    key("timeout", NODEHA_CONFIG_DURATION, "\"10s\"", "duration",
        "how long a fence may take when the request names no timeout_ms: power off sent and confirmed off"),
    key("bmc", NODEHA_CONFIG_TABLE_ARRAY, "[]", "",
        "one table per node: node, address, port (623), user, password_file, interface (\"lanplus\"), cipher_suite"),
};

// The method is a subject token.
bool valid_method(const std::string& m) {
  if (m.empty() || m.size() > 32) return false;
  for (char c : m)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  return true;
}

// Whether `program` can be run: a path to an executable file, or a name found in PATH.
bool runnable(const std::string& program) {
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0;
  const char* path = getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t at = 0; at <= dirs.size();) {
    size_t end = dirs.find(':', at);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(at, end - at);
    if (access(((dir.empty() ? "." : dir) + "/" + program).c_str(), X_OK) == 0) return true;
    at = end + 1;
  }
  return false;
}

class FenceIpmiPlugin : public Plugin {
 public:
  explicit FenceIpmiPlugin(Host h)
      : Plugin(std::move(h)), method_(host().config().at("method").get<std::string>()),
        ipmitool_(host().config().at("ipmitool").get<std::string>()), timeout_(host().duration("timeout")) {
    if (!valid_method(method_))
      throw ConfigError("method \"" + method_.substr(0, 40) + "\": must be 1-32 lowercase letters, digits, '-' or '_' "
                        "(it is a subject token: cmd.fence.<method>)");
    if (timeout_.count() < 1 || timeout_.count() > kMaxFenceTimeoutMs) throw ConfigError("timeout must be from 1ms to 10m");
    auto bmcs = parse_bmcs(host().config().at("bmc"));
    if (!bmcs) throw ConfigError(bmcs.status().message());
    bmcs_ = std::move(bmcs.value());
    for (const auto& [node, b] : bmcs_) check_password_file(b);
    if (!bmcs_.empty() && !runnable(ipmitool_))
      throw ConfigError("ipmitool \"" + ipmitool_ + "\" cannot be run (not found, or not executable): install ipmitool, or set "
                        "the ipmitool key to its path");
  }

  Status start() override {
    auto total = [&](const char* result) {
      return host().counter("nodeha_fence_total", "fence requests that named a node, by method and result",
                            {{"method", method_}, {"result", result}});
    };
    ok_ = total("ok");
    failed_ = total("failed");
    duration_ = host().histogram("nodeha_fence_duration_seconds", "time from a fence request to the confirmed power off",
                                 {0.5, 1, 2, 5, 10, 20, 30, 60, 120}, {{"method", method_}});
    auto r = host().subscribe(host().subject("cmd.fence." + method_), [this](const Message& m) {
      host().spawn([this, m] { fence(m); });
    }, "nodeha-controller");
    if (!r) return r.status();
    host().info("fencing " + std::to_string(bmcs_.size()) + " node(s) over IPMI on cmd.fence." + method_);
    return Status::ok();
  }
  // Running ipmitool calls are killed; their requests answer fence_failed.
  void stop() override { stopping_ = true; }

 private:
  void check_password_file(const Bmc& b) const {
    int fd = open(b.password_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw ConfigError("bmc of node " + b.node + ": password_file " + b.password_file + ": " + std::strerror(errno));
    struct stat st {};
    bool loose = fstat(fd, &st) == 0 && (st.st_mode & 077) != 0;
    close(fd);
    if (loose) host().warn("bmc of node " + b.node + ": password_file " + b.password_file + " is readable by others than its owner");
  }

  void fence(const Message& m) {
    auto started = Clock::now();
    FenceRequest req;
    if (auto e = decode_fence_request(m.data, timeout_, &req)) {
      host().respond(m.reply, command::fail(*e));
      return;
    }
    const std::string& node = req.node->str();
    auto it = bmcs_.find(node);
    if (it == bmcs_.end()) {
      failed_.inc();
      host().respond(m.reply, command::fail(command::kUnknownNode, "no BMC is configured for " + node + " in the fence_ipmi plugin (method " +
                                                                      method_ + "): add a [[plugin.bmc]] table for it"));
      return;
    }
    auto out = power_off(it->second, started + req.timeout);
    auto took = std::chrono::duration_cast<Millis>(Clock::now() - started);
    if (!out.off) {
      failed_.inc();
      host().warn("fencing " + node + " failed: " + out.why);
      host().respond(m.reply, command::fail(kFenceFailed, node + " is not confirmed off: " + out.why));
      return;
    }
    ok_.inc();
    duration_.observe(took.count() / 1000.0);
    host().info("fenced " + node + " over IPMI in " + std::to_string(took.count()) + " ms: " + out.detail);
    host().respond(m.reply, command::ok({{"node", node}, {"method", method_}, {"off", true}, {"detail", out.detail},
                                         {"took_ms", took.count()}}));
  }

  // The loop of fence_loop.h over ipmitool calls on this worker, each killed at the deadline.
  Outcome power_off(const Bmc& b, Clock::time_point deadline) {
    FenceSteps steps;
    steps.time_left = [&] { return !stopping_ && Clock::now() < deadline; };
    steps.pause = [&] {
      auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() > 0) std::this_thread::sleep_for(std::min(left, kPause));
    };
    steps.call = [&](const char* action) {
      auto r = run_child(ipmitool_argv(ipmitool_, b, action), deadline, &stopping_);
      if (r.ok()) return Try{Try::kAnswered, r.out, ""};
      std::string why = failure(b, action, r);
      if (!r.started) return Try{Try::kRefused, "", why};
      if (r.killed) return Try{Try::kNoAnswer, "", why};
      switch (classify(r.err)) {
        case Failure::kRefused: return Try{Try::kRefused, "", why};
        case Failure::kNoAnswer: return Try{Try::kNoAnswer, "", why};
        case Failure::kOther: break;
      }
      return Try{Try::kFailed, "", why};
    };
    auto out = confirm_off(steps);
    if (!out.off && stopping_) out.why = "the fence plugin stopped before the power was confirmed off (" + out.why + ")";
    else if (!out.off && Clock::now() >= deadline) out.why = "no confirmed power off before the deadline: " + out.why;
    return out;
  }

  std::string failure(const Bmc& b, const char* action, const ChildResult& r) const {
    std::string at = b.address + ":" + std::to_string(b.port);
    std::string said = trim_stderr(r.err);
    std::string tail = said.empty() ? "" : " (ipmitool: " + said + ")";
    if (!r.started) return r.err;
    if (r.killed)
      return "the BMC at " + at + " did not answer `chassis power " + std::string(action) + "` before the deadline (ipmitool "
             "was killed while it waited)" + tail;
    switch (classify(r.err)) {
      case Failure::kRefused:
        return "the BMC at " + at + " refused the login of user " + b.user + " (wrong user, password or cipher suite)" + tail;
      case Failure::kNoAnswer: return "the BMC at " + at + " did not answer (unreachable?)" + tail;
      case Failure::kOther: break;
    }
    return "`chassis power " + std::string(action) + "` on the BMC at " + at + " failed with exit status " +
           std::to_string(r.exit_code) + tail;
  }

  std::string method_;
  std::string ipmitool_;
  Millis timeout_;
  std::map<std::string, Bmc> bmcs_;
  std::atomic<bool> stopping_{false};
  Metric ok_, failed_;
  Metric duration_;
};

}  // namespace
}  // namespace nodeha::fence_ipmi

NODEHA_PLUGIN(nodeha::fence_ipmi::FenceIpmiPlugin, "fence_ipmi", "0.1.0",
              "fence.<method>: a node powered off over IPMI and confirmed off", nodeha::kControllerRole,
              nodeha::fence_ipmi::kKeys)
