// The CLI's NATS client (cnats): one connection to the controller's servers, requests with a
// deadline, and synchronous subscriptions for task events. Every call runs on the caller's
// thread and blocks at most for its timeout; cnats' own threads never call back into the CLI.
#pragma once

#include "credential.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct __natsConnection;
struct __natsSubscription;

namespace nodeha::cli {

struct BusReply {
  enum Outcome {
    kAnswered,     // `body` is the reply
    kNoResponders, // nobody serves the subject: no controller (or not this plugin)
    kTimeout,      // no answer in time
    kLost,         // the connection failed: `error` says how
    kRefused,      // nats-server would reject it (nats_limits.h), so nothing was sent: `error` says why
    kNotPermitted, // the server refused the subject to this credential: `error` is its word
  };
  Outcome outcome = kLost;
  std::string body;
  std::string error;
};

// Messages of one subject, read in order; unsubscribed on destruction.
class BusSubscription {
 public:
  explicit BusSubscription(__natsSubscription* sub) : sub_(sub) {}
  ~BusSubscription();
  BusSubscription(const BusSubscription&) = delete;
  BusSubscription& operator=(const BusSubscription&) = delete;
  // The next message's data, or nullopt when none came within `timeout`.
  std::optional<std::string> next(std::chrono::milliseconds timeout);

 private:
  __natsSubscription* sub_;
};

class BusClient {
 public:
  // Connects to one of `servers` (each tried within `timeout`), with the credential and TLS files
  // of `security` that are not empty. Null with `*why` set when none could be reached.
  static std::unique_ptr<BusClient> connect(const std::vector<std::string>& servers, const auth::ClientSecurity& security,
                                            std::chrono::milliseconds timeout, std::string* why);
  ~BusClient();
  BusClient(const BusClient&) = delete;
  BusClient& operator=(const BusClient&) = delete;

  BusReply request(const std::string& subject, const std::string& body, std::chrono::milliseconds timeout);
  // Null with `*why` set on failure (also a subject nats-server would reject). Registered with the server before any later request on this
  // client is, so a reply read after subscribing never hides an event published after it.
  std::unique_ptr<BusSubscription> subscribe(const std::string& subject, std::string* why);

  // The server's "Permissions Violation" errors, written by cnats' thread.
  struct Refusals {
    std::mutex mu;
    std::vector<std::string> texts;
    bool about(const std::string& subject);
  };

 private:
  BusClient(__natsConnection* conn, std::unique_ptr<auth::BusLogin> login, std::unique_ptr<Refusals> refusals)
      : login_(std::move(login)), refusals_(std::move(refusals)), conn_(conn) {}
  std::unique_ptr<auth::BusLogin> login_;  // outlives conn_: signs its (re)connects
  std::unique_ptr<Refusals> refusals_;     // outlives conn_: its error handler writes here
  __natsConnection* conn_;
};

}  // namespace nodeha::cli
