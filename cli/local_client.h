// The client side of the node-local socket (docs/node-operations.md, "The node-local path"):
// one request per connection, one line out, the reply body back. No NATS involved.
#pragma once

#include <chrono>
#include <string>

namespace nodeha::cli {

struct LocalReply {
  enum Outcome {
    kAnswered,     // `body` is the agent's reply (an envelope)
    kUnreachable,  // nobody to talk to: `error` says why (connect failed, closed without answer)
    kTimeout,      // no answer within the timeout; the operation may still run on the agent
  };
  Outcome outcome = kUnreachable;
  std::string body;
  std::string error;
};

// Sends `data` (a request body) to `subject` ("local.drain") on the socket at `path` and waits
// up to `timeout` for the whole reply.
LocalReply local_call(const std::string& path, const std::string& subject, const std::string& data,
                      std::chrono::milliseconds timeout);

}  // namespace nodeha::cli
