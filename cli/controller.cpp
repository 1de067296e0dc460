#include "controller.h"

#include "format.h"

#include <fmt/format.h>

#include <iostream>
#include <regex>

namespace nodeha::cli {

using nlohmann::json;

std::string hint_for(const std::string& code, const std::string& message) {
  if (code == "node_locked") {
    std::smatch m;
    if (std::regex_search(message, m, std::regex("task ([0-9a-f]{16})")))
      return fmt::format("wait for it (`nodeha task watch {0}`) or cancel it (`nodeha task cancel {0}`)", m[1].str());
    return "`nodeha task list --state running` shows the task holding it";
  }
  if (code == "no_room") return "`nodeha node list` shows what each node uses; free room, enable a node, or name another --target";
  if (code == "plan_drifted" || code == "plan_expired" || code == "unknown_plan" || code == "plan_used")
    return "a plan runs once, as it was shown: make a new one with --dry-run, check it, and run it with --plan ID";
  if (code == "task_finished") return "`nodeha task show ID` shows how it ended";
  if (code == "unavailable") return "the controller could not read or write its store; try again in a moment";
  if (code == "unknown_field" || code == "bad_type" || code == "missing_field" || code == "bad_json")
    return "this nodeha CLI and the controller may be of different versions";
  return "";
}

bool read_only(const std::string& op) {
  for (const char* r : {"node.list", "node.show", "task.list", "task.show", "vm.list"})
    if (op == r) return true;
  return false;
}

// Followers answer node.list too (docs/architecture.md, "Leadership"): an answer means that
// controllers run, none leads, and a command that changes something has nobody to take it.
bool Controller::followers_answer() {
  auto probe = std::min(g_.request_timeout, std::chrono::milliseconds(2000));
  return bus_->request(g_.prefix + ".cmd.node.list", "{}", probe).outcome == BusReply::kAnswered;
}

std::string Controller::servers_text() const { return fmt::format("{}", fmt::join(g_.servers, ", ")); }

int Controller::fail(const std::string& code, const std::string& message, int exit_code, const std::string& hint,
                     const std::string& text, const json& changes) const {
  json error = {{"code", code}, {"message", message}};
  if (changes.is_array()) error["changes"] = changes;
  if (g_.json) std::cout << json{{"error", error}}.dump(2) << '\n';
  std::cerr << "nodeha: " << (text.empty() ? message : text) << '\n';
  if (changes.is_array() && !changes.empty()) {
    std::cerr << "what changed:\n";
    for (const auto& c : changes) {
      auto shown = [](const json& v) { return v.is_string() ? v.get<std::string>() : v.is_null() ? "-" : v.dump(); };
      std::string about = str(c, "vm").empty() ? str(c, "node") : "VM " + str(c, "vm");
      std::cerr << fmt::format("  {:<14} {:<38} was {}, now {}\n", str(c, "what"), or_dash(about), shown(c.value("was", json())),
                               shown(c.value("now", json())));
    }
  }
  if (!hint.empty()) std::cerr << "hint: " << hint << '\n';
  return exit_code;
}

bool Controller::connect() {
  if (bus_) return true;
  std::string why;
  bus_ = BusClient::connect(g_.servers, {g_.creds, g_.tls_ca, "", ""}, std::min(g_.request_timeout, std::chrono::milliseconds(5000)), &why);
  if (bus_) return true;
  fail("unreachable",
       fmt::format("cannot connect to NATS at {}: {}; is nats-server running there?", servers_text(), why),
       kExitUnreachable, fmt::format("--server URL (repeatable) or ${} names the servers; --creds FILE (${}) the credentials, --tls-ca FILE (${}) the bus's CA",
                   kServerEnv, kCredsEnv, kTlsCaEnv));
  return false;
}

Controller::Outcome Controller::call(const std::string& op, const json& request, Report report) {
  auto failed = [&](const std::string& code, const std::string& message, int exit_code, const std::string& hint = "",
                    const std::string& text = "", const json& changes = nullptr) {
    if (report == kReport) fail(code, message, exit_code, hint, text, changes);
    return Outcome{exit_code, {}};
  };
  if (report == kQuiet ? !bus_ : !connect()) return {kExitUnreachable, {}};
  std::string subject = g_.prefix + ".cmd." + op;
  BusReply reply = bus_->request(subject, request.dump(), g_.request_timeout);
  switch (reply.outcome) {
    case BusReply::kNoResponders:
      if (!read_only(op) && followers_answer())
        return failed("no_leader",
                      fmt::format("no controller leads now, so nobody took {}: nothing was done. Controllers run (a "
                                  "follower answers), but none holds the leader lease: a takeover waits until the "
                                  "last leader's lease ([host] lease) has run out",
                                  subject),
                      kExitUnreachable,
                      "try again in a moment; `nodeha node list`, `node show`, `task list`, `task show` and `vm list` "
                      "answer meanwhile, from a following controller");
      return failed("unreachable",
                    fmt::format("no controller answers {} on {}: is nodeha-host (controller) running, with the plugin "
                                "that serves it?", subject, servers_text()),
                    kExitUnreachable, g_.prefix == "nodeha" ? "" : "--prefix is " + g_.prefix + "; is that the cluster's?");
    case BusReply::kTimeout:
      return failed("timeout",
                    fmt::format("the controller did not answer {} within {} (--timeout)", subject,
                                format_ms(g_.request_timeout.count())),
                    kExitUnreachable);
    case BusReply::kNotPermitted:
      return failed("not_permitted",
                    fmt::format("the NATS server refused {} to your credential ({}); nothing was sent", subject, reply.error),
                    kExitRefused, "docs/security.md says what each identity (admin, viewer, ...) may do");
    case BusReply::kLost:
      return failed("unreachable", fmt::format("lost the NATS connection to {}: {}", servers_text(), reply.error),
                    kExitUnreachable);
    case BusReply::kRefused:
      return failed("bad_value", fmt::format("not sent to {}: {}", subject, reply.error), kExitRefused);
    case BusReply::kAnswered: break;
  }
  json envelope = json::parse(reply.body, nullptr, false);
  if (!envelope.is_object() || !envelope.contains("ok"))
    return failed("bad_reply", "the controller's answer is not a reply envelope: " + reply.body.substr(0, 200), kExitFailed);
  if (envelope.value("ok", false)) return {kExitDone, envelope.value("result", json::object())};
  json error = envelope.value("error", json::object());
  std::string code = or_dash(str(error, "code")), message = str(error, "message");
  return failed(code, message, code == "unavailable" ? kExitUnreachable : kExitRefused, hint_for(code, message),
                fmt::format("refused ({}): {}", code, message), error.value("changes", json()));
}

std::optional<BusReply> Controller::request_api(const std::string& subject, const std::string& body) {
  if (!connect()) return std::nullopt;
  return bus_->request(subject, body, g_.request_timeout);
}

std::unique_ptr<BusSubscription> Controller::subscribe(const std::string& subject) {
  if (!connect()) return nullptr;
  std::string why;
  auto sub = bus_->subscribe(g_.prefix + "." + subject, &why);
  if (!sub) fail("unreachable", fmt::format("cannot subscribe to {}.{}: {}", g_.prefix, subject, why), kExitUnreachable);
  return sub;
}

int query(const Globals& g, const std::string& op, const json& request, const std::function<void(const json&)>& print) {
  Controller c(g);
  auto r = c.call(op, request);
  if (!r.ok()) return r.exit;
  if (g.json) print_document(r.result);
  else print(r.result);
  return kExitDone;
}

int query_pages(const Globals& g, const std::string& op, json request, const char* list_key,
                const std::function<void(const json&)>& print, const std::function<void(json&)>& arrange) {
  Controller c(g);
  json all;
  std::string after;
  for (;;) {
    if (!after.empty()) request["after"] = after;
    auto r = c.call(op, request);
    if (!r.ok()) return r.exit;
    if (!r.result.contains(list_key) || !r.result[list_key].is_array())
      return c.fail("bad_reply", fmt::format("the controller's answer to {} holds no list \"{}\"", op, list_key), kExitFailed);
    if (all.is_null()) all = r.result;
    else
      for (auto& item : r.result[list_key]) all[list_key].push_back(std::move(item));
    if (r.result.contains("follower")) all["follower"] = r.result["follower"];
    std::string next = r.result.contains("next") && r.result["next"].is_string() ? r.result["next"].get<std::string>() : "";
    if (next.empty()) break;
    // Keys only grow from page to page: one that does not would ask for the same page forever.
    if (next <= after)
      return c.fail("bad_reply", fmt::format("the controller's pages of {} do not advance (next \"{}\" after \"{}\")", op, next, after),
                    kExitFailed);
    after = next;
  }
  all.erase("next");
  if (arrange) arrange(all[list_key]);
  if (g.json) print_document(all);
  else print(all);
  return kExitDone;
}

}  // namespace nodeha::cli
