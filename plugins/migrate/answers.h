// The answers to the controller's vm.migrate requests. The controller asks again every few
// seconds while it waits (tasks::call_until), because a reply sent across a nats-server restart is
// lost: the server forgets the request, and with auth on its allow_responses refuses the reply
// (docs/security.md). So one migration may be asked for many times: the first ask starts it, a
// later ask for the same VM and task joins it, and an ask that comes just after it ended gets its
// result at once (a success only: a failed one asked again runs again). Every ask is answered with
// the one migration's outcome.
//
// Threads: every method may be called from any thread.
#pragma once

#include <nodeha/plugin.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace nodeha::migrate {

class Answers {
 public:
  enum class Ask { Start, Joined, Answered, Busy };
  explicit Answers(const Host& host) : host_(host) {}

  // `reply` asks for the migration of `uuid` on behalf of `task` (not empty). Start: nothing is
  // running or remembered for it, the caller starts it and later calls finish(). Joined: it runs
  // for this task, `reply` gets its answer. Answered: it ended lately for this task, answered now.
  // Busy: it runs for another task.
  Ask ask(const std::string& uuid, const std::string& task, const std::string& reply);
  // Answers every ask of the migration of `uuid` with `body`; a success is kept for late asks (a
  // failure is not: asked again, it is tried again).
  void finish(const std::string& uuid, const std::string& body, bool succeeded);
  // The migration was not started after all (refused before it ran): forget the ask.
  void forget(const std::string& uuid);

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kKeep = std::chrono::minutes(5);
  struct Entry {
    std::string task;
    std::vector<std::string> replies;
    std::optional<std::string> answer;
    Clock::time_point ended;
  };
  const Host& host_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;  // by VM uuid
};

}  // namespace nodeha::migrate
