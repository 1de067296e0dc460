// The node-local transport: subscriptions made with NODEHA_SUB_LOCAL are also served on a unix
// socket, so that `nodeha local …` reaches the agent's plugins when NATS is down.
//
// Protocol (docs/node-operations.md, "The node-local path"): one request per connection; the
// client writes one line `{"subject":"local.drain","data":"<body>"}` and reads the reply body,
// one line, up to EOF. Failures of the transport itself come back in the command envelope with
// the codes below; the plugin's own reply is passed through untouched.
//
// A request reaches the plugin as a Message with subject "<prefix>.local.X" and a reply token
// ("_LOCAL.<nonce>.<n>") that PluginInstance's respond hands back here instead of to NATS.
//
// Threads: one I/O thread polls the listening socket and every connection, and calls Deliver;
// everything else may be called from any thread.
#pragma once

#include "metrics.h"

#include <nodeha/plugin.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace nodeha::host {

// Error codes of the transport (the plugins' codes are theirs).
inline constexpr const char* kLocalUnknownSubject = "unknown_subject";  // no plugin serves it here
inline constexpr const char* kLocalBadJson = "bad_json";                // not the request line above
inline constexpr const char* kLocalTimeout = "timeout";                 // no reply within max_wait
inline constexpr const char* kLocalUnavailable = "unavailable";         // plugin stopped, host stopping, busy

struct LocalSocketOptions {
  std::string path;
  std::string prefix;  // [nats] prefix: "<prefix>.local.X" is served as "local.X"
  // How long a request may wait for its reply. Local drains and migrations run for minutes; the
  // client sets its own, shorter, timeout. This only bounds what a silent plugin can leak.
  std::chrono::milliseconds max_wait{std::chrono::hours(1)};
  // How long a client may take to send its line, or to take the reply.
  std::chrono::milliseconds io_timeout{std::chrono::seconds(10)};
  Metrics* metrics = nullptr;  // nodeha_local_requests_total{result}; may be null
};

class LocalSocket {
 public:
  // Hands a request to a plugin (on the I/O thread: post, never block). False when it cannot be
  // delivered (the instance is stopping): the client gets `unavailable` at once.
  using Deliver = std::function<bool(Message)>;

  // Binds options.path with mode 0600 and starts the I/O thread. A stale socket file (nobody
  // listening) is replaced; refused when another process answers on it or the path is not a
  // socket. The directory must exist.
  static Result<std::unique_ptr<LocalSocket>> open(LocalSocketOptions options);
  // Answers waiting clients with `unavailable`, flushes replies (briefly), closes everything
  // and removes the socket file if it is still ours.
  ~LocalSocket();
  LocalSocket(const LocalSocket&) = delete;
  LocalSocket& operator=(const LocalSocket&) = delete;

  // Serves `subject` ("<prefix>.local.X", no wildcards) as "local.X" on behalf of `owner`.
  // Refused when the subject is not under "<prefix>.local." or another route serves it.
  Result<uint64_t> serve(const void* owner, const std::string& subject, Deliver fn);
  // No new requests through this route; requests already delivered may still be answered.
  void unserve(uint64_t route);
  // Every request delivered to `owner` and not yet answered gets `unavailable` with `why`
  // (its instance stopped and will never answer).
  void abandon(const void* owner, const std::string& why);

  // Whether `reply` is one of this transport's tokens (not a NATS subject).
  static bool is_token(std::string_view reply);
  // Sends `body` to the client waiting on `token`. A client that left, timed out, or a token
  // never issued is no error, as for a NATS reply nobody waits for.
  void respond(const std::string& token, std::string_view body);
  // Answers the client waiting on `token` with a transport error (see the codes above).
  void fail(const std::string& token, const char* code, const std::string& message);

  const std::string& path() const { return options_.path; }

 private:
  struct Conn;
  struct Route {
    const void* owner;
    std::string subject;  // the plugin's: "<prefix>.local.X"
    Deliver deliver;
  };
  struct Pending {
    uint64_t conn;
    const void* owner;
  };

  explicit LocalSocket(LocalSocketOptions options);
  void run();
  nodeha_metric* count_series(const char* result);
  void count(const char* result);
  // All with mu_ held.
  void accept_all();
  void handle_line(uint64_t id, Conn& c, std::vector<std::pair<Deliver, Message>>* deliveries);
  void reply(Conn& c, std::string body, const char* result);
  void expire(std::chrono::steady_clock::time_point now);
  bool flush(Conn& c);
  void wake();

  LocalSocketOptions options_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::string nonce_;
  std::mutex mu_;  // guards everything below
  std::map<uint64_t, Route> routes_;
  std::map<std::string, uint64_t> by_subject_;  // "local.X" -> route
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::map<std::string, Pending> pending_;  // token -> waiting connection
  uint64_t next_id_ = 1;
  bool delivering_ = false;  // the I/O thread is calling Deliver functions outside the lock
  std::condition_variable delivered_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace nodeha::host
