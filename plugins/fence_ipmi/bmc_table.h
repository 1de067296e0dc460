// The BMCs the fence_ipmi plugin may power off: its `bmc` config key (an array of tables) read
// into one typed record per node, checked whole when the plugin loads. A bad entry is refused with
// its index, its node and the field at fault, so `nodeha-host --check` names what to fix.
// Pure: no file, process or bus is touched (the plugin checks the password files itself).
#pragma once

#include <nodeha/ids.hpp>
#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>

namespace nodeha::fence_ipmi {

struct Bmc {
  std::string node;  // a NodeId's text (checked by NodeId::parse)
  std::string address;  // host name or IP address of the BMC
  int port = 623;  // UDP (RMCP)
  std::string user;
  std::string password_file;  // absolute path; handed to ipmitool with -f, never on its argv
  std::string interface = "lanplus";  // "lanplus" (IPMI 2.0, RMCP+) or "lan" (IPMI 1.5)
  std::optional<int> cipher_suite;  // lanplus -C; unset: ipmitool's own default
};

// The BMCs by node id. The error names the entry: `bmc[2] (node-b): field "port": must be an
// integer from 1 to 65535, got 70000`.
Result<std::map<std::string, Bmc>> parse_bmcs(const nlohmann::json& table);

}  // namespace nodeha::fence_ipmi
