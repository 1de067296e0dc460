// The node-local socket: what a client sends (any bytes, possibly no newline, then EOF or not)
// framed into a request line, and the line parsed into subject and body.
#include "fuzz_check.h"
#include "local_request.h"

using namespace nodeha;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view received = fuzz::as_text(data, size);
  for (bool eof : {false, true}) {
    auto frame = host::frame_local_request(received, eof);
    if (frame.state != host::LocalFraming::kLine) continue;
    fuzz::require(frame.line.size() <= host::kMaxLocalLine, "a line is within the bound");
    fuzz::require(frame.line.find('\n') == std::string_view::npos, "a line holds no newline");
    fuzz::require(frame.line.data() == received.data(), "the line is what the client sent first");
    auto request = host::parse_local_request(frame.line);
    if (!request) fuzz::require(!request.status().message().empty(), "a refusal says why");
  }
  return 0;
}
