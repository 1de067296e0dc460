// The fence of one node as a loop over ipmitool calls, apart from the calls themselves, so that
// its decisions are unit-tested with scripted answers (tests/unit/fence_ipmi_core_test.cpp).
//
//   off ──answered──▶ status ──"off"──▶ confirmed off (ok)
//    │                  └──"on", no answer──▶ pause, status again
//    ├─no answer / cut short──▶ pause, off again
//    ├─command refused (answered, exit ≠ 0)──▶ status: some BMCs refuse to power off what is
//    │                                         off; "off" confirms, "on" sends off again
//    └─login refused, cannot run ipmitool──▶ failed at once (no retry would change it)
//
// Every state ends when time_left() says no: failed, with the last reason. Cost: one call per
// step, each bounded by the request's deadline (the caller's run); the pause bounds the rate.
// Thread: the caller's (a worker); nothing is shared.
#pragma once

#include <functional>
#include <string>

namespace nodeha::fence_ipmi {

// One call as the loop sees it.
struct Try {
  enum Kind {
    kAnswered,  // exit 0; `out` is ipmitool's stdout
    kNoAnswer,  // the BMC did not answer, or the deadline cut the call short: try again
    kRefused,   // final: the login was refused, or ipmitool cannot run
    kFailed,    // the BMC answered and the command failed
  } kind = kAnswered;
  std::string out;
  std::string why;  // for a person, when not answered
};

struct FenceSteps {
  std::function<Try(const char* action)> call;  // action "off" or "status"
  std::function<bool()> time_left;  // false once the deadline passed (or the plugin stops)
  std::function<void()> pause;  // between two tries
};

struct Outcome {
  bool off = false;
  std::string detail;  // what ipmitool said, when confirmed off
  std::string why;     // the last reason, when not
};

Outcome confirm_off(const FenceSteps& steps);

}  // namespace nodeha::fence_ipmi
