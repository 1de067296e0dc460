// A session with the controller over NATS (docs/node-operations.md, "Controller commands"):
// connects as the global options say, sends `<prefix>.cmd.<op>` requests, and turns every way a
// command can go wrong into advice for the operator and an exit code for scripts.
#pragma once

#include "bus_client.h"
#include "cli.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace nodeha::cli {

class Controller {
 public:
  explicit Controller(const Globals& g) : g_(g) {}

  struct Outcome {
    int exit = kExitDone;  // kExitDone: `result` is the reply's result; otherwise already reported
    nlohmann::json result;
    bool ok() const { return exit == kExitDone; }
  };
  enum Report { kReport, kQuiet };
  // Sends `op` ("node.list") with `request` (connecting first if needed). A refusal, no
  // controller, a timeout: reported (stderr, and the error document with --json) unless kQuiet,
  // and its exit code returned.
  Outcome call(const std::string& op, const nlohmann::json& request, Report report = kReport);

  // A request on `subject` as given, no prefix (the JetStream API), connecting first; nullopt when
  // not connected (reported).
  std::optional<BusReply> request_api(const std::string& subject, const std::string& body);

  // Subscribes to `<prefix>.<subject>`; null when not connected or refused (reported).
  std::unique_ptr<BusSubscription> subscribe(const std::string& subject);

  // Reports a failure: "nodeha: <message>" (or `text`, when given), each of `changes` (a refused
  // plan's: [{what, vm?, node?, was, now}]) and the hint on stderr; {"error":{code,message,
  // changes?}} on stdout with --json. Returns `exit_code`.
  int fail(const std::string& code, const std::string& message, int exit_code, const std::string& hint = "",
           const std::string& text = "", const nlohmann::json& changes = nullptr) const;

  const Globals& globals() const { return g_; }

 private:
  bool connect();
  // Whether a controller answers node.list, which followers serve too.
  bool followers_answer();
  std::string servers_text() const;

  const Globals& g_;
  std::unique_ptr<BusClient> bus_;
};

// The usual command: sends `op` with `request`; prints the result with `print` (for people) or
// as one JSON document (--json). Returns the exit code.
int query(const Globals& g, const std::string& op, const nlohmann::json& request,
          const std::function<void(const nlohmann::json& result)>& print);

// The same for a list whose answer comes in pages (node.list, vm.list, task.list;
// plugins/common/command.h):
// asks for each page in turn, `after` the last one's `next`, and prints one result holding every
// page's `list_key` items, put in order by `arrange` when given (for people and --json alike).
// A page answered by a follower marks the whole result so.
int query_pages(const Globals& g, const std::string& op, nlohmann::json request, const char* list_key,
                const std::function<void(const nlohmann::json& result)>& print,
                const std::function<void(nlohmann::json& items)>& arrange = nullptr);

// Whether `op` only reads: a following controller answers it too. Pure.
bool read_only(const std::string& op);

// Advice after a refusal with `code`, or "" when its message says it all. Pure.
std::string hint_for(const std::string& code, const std::string& message);

}  // namespace nodeha::cli
