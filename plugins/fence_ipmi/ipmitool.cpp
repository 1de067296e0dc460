#include "ipmitool.h"

#include <array>

namespace nodeha::fence_ipmi {
namespace {

bool has(std::string_view text, std::string_view what) { return text.find(what) != std::string_view::npos; }

// Lines ipmitool -v prints on the way, which say nothing of a failure.
constexpr std::array<std::string_view, 4> kNoise = {"Loading IANA PEN Registry", "Running Get VSO Capabilities",
                                                     "Discovered IPMB address", "Invalid completion code received: Invalid command"};

}  // namespace

std::vector<std::string> ipmitool_argv(const std::string& ipmitool, const Bmc& bmc, std::string_view action) {
  std::vector<std::string> argv = {ipmitool, "-I", bmc.interface};
  if (bmc.cipher_suite) argv.insert(argv.end(), {"-C", std::to_string(*bmc.cipher_suite)});
  argv.insert(argv.end(), {"-H", bmc.address, "-p", std::to_string(bmc.port), "-U", bmc.user, "-f", bmc.password_file,
                           "-R", "1", "-N", "1", "-v", "chassis", "power", std::string(action)});
  return argv;
}

Power parse_power(std::string_view out) {
  if (has(out, "Chassis Power is off")) return Power::kOff;
  if (has(out, "Chassis Power is on")) return Power::kOn;
  return Power::kUnknown;
}

Failure classify(std::string_view err) {
  // lanplus: RAKP 2 carries the BMC's verdict on the user and the password's HMAC; an unknown
  // cipher suite fails the open session request. lan: the activate session step.
  for (std::string_view refused : {"RAKP 2 HMAC is invalid", "unauthorized name", "RAKP 2 message indicates an error",
                                   "invalid authentication algorithm", "invalid integrity algorithm",
                                   "invalid confidentiality algorithm", "Activate Session command failed",
                                   "Activate Session error", "insufficient resources for session",
                                   "Set Session Privilege Level to ADMINISTRATOR failed"})
    if (has(err, refused)) return Failure::kRefused;
  for (std::string_view silent : {"Get Auth Capabilities error", "Unable to establish", "No response", "timeout"})
    if (has(err, silent)) return Failure::kNoAnswer;
  return Failure::kOther;
}

std::string trim_stderr(std::string_view err, size_t max) {
  std::string out;
  size_t at = 0;
  while (at < err.size()) {
    size_t end = err.find('\n', at);
    if (end == std::string_view::npos) end = err.size();
    std::string_view line = err.substr(at, end - at);
    at = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '>')) line.remove_prefix(1);
    bool noise = line.empty();
    for (auto n : kNoise) noise = noise || has(line, n);
    if (noise) continue;
    out += (out.empty() ? "" : "; ") + std::string(line);
  }
  if (out.size() > max) out = out.substr(0, max) + "...";
  return out;
}

}  // namespace nodeha::fence_ipmi
