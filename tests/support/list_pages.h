// Every page of a list command that answers in pages (node.list, vm.list, task.list; see
// plugins/common/command.h), walked as a client walks them: the same request again with `after`
// set to the last page's `next`, until a page names none.
#pragma once

#include "bus.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace nodeha::test {

struct ListPages {
  bool ok = false;     // every page answered ok, and each `next` was past the one before
  std::string error;   // why not, when !ok
  int pages = 0;
  size_t largest = 0;  // bytes of the largest reply
  size_t bytes = 0;    // of all replies
  std::vector<nlohmann::json> items;  // every page's `list_key` items, in the order received
};

ListPages list_pages(host::Bus& bus, const std::string& subject, nlohmann::json request, const char* list_key,
                     std::chrono::milliseconds timeout = std::chrono::seconds(20));

}  // namespace nodeha::test
