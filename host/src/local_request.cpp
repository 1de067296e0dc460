#include "local_request.h"

#include <nlohmann/json.hpp>
#include <nodeha/ids.hpp>

namespace nodeha::host {

LocalFrame frame_local_request(std::string_view received, bool eof) {
  auto newline = received.find('\n');
  std::string_view line = received.substr(0, newline);
  if (line.size() > kMaxLocalLine) return {LocalFraming::kTooLong, {}};
  if (newline != std::string_view::npos || (eof && !line.empty())) return {LocalFraming::kLine, line};
  return {LocalFraming::kMore, {}};
}

Result<LocalRequest> parse_local_request(std::string_view line) {
  auto bad = [](std::string why) { return Status(NODEHA_ERR_INVALID, std::move(why)); };
  auto request = nlohmann::json::parse(line, nullptr, false);
  if (request.is_discarded() || !request.is_object()) return bad("the request is not a JSON object");
  for (const auto& [key, value] : request.items())
    if (key != "subject" && key != "data") return bad("unknown field " + echo_value(key));
  auto subject = request.find("subject");
  if (subject == request.end() || !subject->is_string()) return bad("'subject' must be a string");
  auto data = request.find("data");
  if (data != request.end() && !data->is_string()) return bad("'data' must be a string (the request body)");
  return LocalRequest{subject->get<std::string>(), data != request.end() ? data->get<std::string>() : std::string()};
}

}  // namespace nodeha::host
