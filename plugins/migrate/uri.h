// URI templates of the migrate plugin's config ("qemu+tcp://{address}/system", "tcp://{dest}")
// and the host part of a migration URI. Pure.
#pragma once

#include <string>
#include <string_view>

namespace nodeha::migrate {

// `tmpl` with every "{<name>}" replaced by `address`, bracketed when it is an IPv6 literal
// ("tcp://[fd00::5]").
std::string expand_address(std::string_view tmpl, std::string_view name, std::string_view address);

// The host of "scheme://host[:port][/...]" ("tcp://[::1]:49152" gives "::1"); empty when there is
// no "://" or no host.
std::string uri_host(std::string_view uri);

// Whether `text` is an IPv4 or IPv6 address literal.
bool is_ip_address(std::string_view text);

}  // namespace nodeha::migrate
