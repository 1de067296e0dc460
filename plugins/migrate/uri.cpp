#include "uri.h"

#include <arpa/inet.h>

namespace nodeha::migrate {

std::string expand_address(std::string_view tmpl, std::string_view name, std::string_view address) {
  std::string needle = "{" + std::string(name) + "}";
  std::string value(address);
  if (value.find(':') != std::string::npos && value.front() != '[') value = "[" + value + "]";
  std::string out(tmpl);
  for (size_t pos = out.find(needle); pos != std::string::npos; pos = out.find(needle, pos + value.size()))
    out.replace(pos, needle.size(), value);
  return out;
}

std::string uri_host(std::string_view uri) {
  size_t scheme = uri.find("://");
  if (scheme == std::string_view::npos) return {};
  std::string_view rest = uri.substr(scheme + 3);
  if (size_t at = rest.find('@'); at != std::string_view::npos && at < rest.find('/')) rest = rest.substr(at + 1);
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    return close == std::string_view::npos ? std::string() : std::string(rest.substr(1, close - 1));
  }
  size_t end = rest.find_first_of(":/?");
  return std::string(rest.substr(0, end));
}

bool is_ip_address(std::string_view text) {
  std::string s(text);
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace nodeha::migrate
