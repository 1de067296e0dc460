// A NATS client the project did not write: cnats used directly (no host::Bus), as an outsider on
// the bus would. It pipelines requests to reply subjects of its own (at most `window` in flight),
// publishes with any reply subject it likes, and says whether the server ever dropped it, so a
// test knows its traffic arrived as sent.
#pragma once

#include "nats_handles.h"

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace nodeha::test {

// cnats' handles, owned as everywhere in the tree (the test still bypasses the project's Bus).
using NatsOptionsPtr = nats::OptionsPtr;
using NatsConnectionPtr = nats::ConnectionPtr;
using NatsSubscriptionPtr = nats::SubscriptionPtr;
using NatsMsgPtr = nats::MsgPtr;

struct RawReply {
  enum class Kind { Answer, NoResponders, Timeout, NotSent };
  Kind kind = Kind::NotSent;
  std::string data;  // the answer's body
};
const char* to_string(RawReply::Kind k);

struct RawRequest {
  std::string subject;
  std::string body;
};

class RawNatsClient {
 public:
  // Connects to `url` (no reconnects: a server that drops this client must show); the test fails
  // if it cannot.
  explicit RawNatsClient(const std::string& url, const std::string& name = "hostile-client");
  ~RawNatsClient();
  RawNatsClient(const RawNatsClient&) = delete;
  RawNatsClient& operator=(const RawNatsClient&) = delete;

  // Sends every request with a reply subject of this client, at most `window` unanswered at a
  // time, and waits for each answer up to `timeout` after it was sent. Once `give_up` requests
  // have timed out the rest are not sent (NotSent): a dead responder must not stall the test.
  std::vector<RawReply> request_all(const std::vector<RawRequest>& requests, size_t window,
                                    std::chrono::milliseconds timeout, size_t give_up = 100);
  // Publishes with `reply` as the reply subject ("" for none); the cnats status.
  natsStatus publish(const std::string& subject, const std::string& body, const std::string& reply = "");
  // One round trip to the server: everything published before it has reached the server.
  bool flush(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Calls `fn` (on a cnats thread) for every message on `subject`.
  bool subscribe(const std::string& subject, std::function<void(const std::string& subject, const std::string& data)> fn);

  bool connected() const;
  // Times the server closed or dropped this client, and asynchronous errors it reported
  // (slow consumer, permissions, ...): both stay 0 when the traffic went out as sent.
  int drops() const { return drops_; }
  int async_errors() const { return async_errors_; }
  std::string last_async_error() const;

 private:
  static void on_reply(natsConnection*, natsSubscription*, natsMsg* msg, void* closure);
  static void on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure);
  static void on_disconnected(natsConnection*, void* closure);
  static void on_error(natsConnection*, natsSubscription*, natsStatus s, void* closure);

  NatsOptionsPtr opts_;
  NatsConnectionPtr conn_;
  NatsSubscriptionPtr inbox_sub_;
  std::vector<NatsSubscriptionPtr> subs_;
  std::vector<std::unique_ptr<std::function<void(const std::string&, const std::string&)>>> handlers_;
  std::string inbox_;  // replies arrive on <inbox_>.<index>

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RawReply>* replies_ = nullptr;  // the current request_all's, guarded by mu_
  std::vector<bool> done_;
  uint64_t first_token_ = 0;  // the current request_all's first token; tokens never repeat
  uint64_t next_token_ = 1;
  size_t in_flight_ = 0;
  std::string last_error_;
  std::atomic<int> drops_{0};
  std::atomic<int> async_errors_{0};
};

}  // namespace nodeha::test
