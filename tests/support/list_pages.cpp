#include "list_pages.h"

#include <algorithm>

namespace nodeha::test {

ListPages list_pages(host::Bus& bus, const std::string& subject, nlohmann::json request, const char* list_key,
                     std::chrono::milliseconds timeout) {
  ListPages l;
  std::string after;
  for (;;) {
    if (!after.empty()) request["after"] = after;
    auto r = bus.request(subject, request.dump(), timeout);
    if (!r) {
      l.error = "page " + std::to_string(l.pages) + ": " + r.status().message();
      return l;
    }
    ++l.pages;
    l.bytes += r.value().size();
    l.largest = std::max(l.largest, r.value().size());
    auto page = nlohmann::json::parse(r.value(), nullptr, false);
    if (!page.is_object() || page.value("ok", false) != true || !page["result"].contains(list_key)) {
      l.error = "page " + std::to_string(l.pages) + ": " + r.value().substr(0, 300);
      return l;
    }
    for (auto& item : page["result"][list_key]) l.items.push_back(std::move(item));
    std::string next = page["result"].value("next", "");
    if (next.empty()) break;
    if (next <= after || l.pages >= 10000) {
      l.error = "the pages do not advance: next \"" + next + "\" after \"" + after + "\"";
      return l;
    }
    after = next;
  }
  l.ok = true;
  return l;
}

}  // namespace nodeha::test
