// The node-local socket's request, apart from the socket (local_socket.h has the protocol): where
// the request line ends in what a client sent, and what the line says. Pure, so that it is
// unit-tested and fuzzed (fuzz/local_request_fuzz.cpp) without a socket.
#pragma once

#include <nodeha/plugin.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace nodeha::host {

// A request line; plans and VM lists are far smaller.
inline constexpr size_t kMaxLocalLine = 1 << 20;

enum class LocalFraming {
  kMore,     // no line yet: wait for more bytes (or, at EOF, the client said nothing)
  kLine,     // `line` is the request line, without its '\n'
  kTooLong,  // the line is longer than kMaxLocalLine: refuse it
};

struct LocalFrame {
  LocalFraming state = LocalFraming::kMore;
  std::string_view line;  // a view into `received`, when state is kLine
};

// The request line in `received` (everything read so far): up to the first '\n', or everything
// when the client closed its side (`eof`) without one. Bytes after the '\n' are ignored.
LocalFrame frame_local_request(std::string_view received, bool eof);

struct LocalRequest {
  std::string subject;  // "local.<name>"
  std::string data;     // the request body, handed to the plugin as is ("" when absent)
};

// `{"subject":"local.<name>","data":"<body>"}`: exactly these fields, both strings, "data"
// optional. Errors are NODEHA_ERR_INVALID with what is wrong, e.g. "unknown field 'x'".
Result<LocalRequest> parse_local_request(std::string_view line);

}  // namespace nodeha::host
