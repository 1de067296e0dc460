// What the fence_ipmi plugin says to ipmitool and how it reads the answers. Pure: the argv of one
// call and the meaning of its output; running it is child_run.h's.
//
// Every call is one try of one second (`-R 1 -N 1`): a BMC that does not answer fails in about
// two seconds, and the plugin's own loop decides whether time is left for another try. `-v` makes
// ipmitool say why a session failed (no answer, or which step of the login was refused).
#pragma once

#include "bmc_table.h"

#include <string>
#include <string_view>
#include <vector>

namespace nodeha::fence_ipmi {

// `<ipmitool> -I <interface> [-C <suite>] -H <address> -p <port> -U <user> -f <password_file>
// -R 1 -N 1 -v chassis power <action>`, action "off" or "status".
std::vector<std::string> ipmitool_argv(const std::string& ipmitool, const Bmc& bmc, std::string_view action);

enum class Power { kOn, kOff, kUnknown };
// From the stdout of `chassis power status`: "Chassis Power is on|off".
Power parse_power(std::string_view out);

// Why a call failed, from ipmitool's stderr (and how it ended).
enum class Failure {
  kNoAnswer,  // the BMC did not answer: worth another try while time is left
  kRefused,   // the BMC answered and refused the login (user, password, cipher suite): final
  kOther,     // anything else (a command refused, ipmitool missing, killed at the deadline)
};
Failure classify(std::string_view err);

// The stderr lines worth showing a person, joined with "; " and cut to `max` characters; the
// progress lines -v prints are left out.
std::string trim_stderr(std::string_view err, size_t max = 400);

}  // namespace nodeha::fence_ipmi
