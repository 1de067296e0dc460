// The host's one connection to NATS: core publish/subscribe/request and JetStream KV.
// Reconnects forever: cnats reconnects a dropped connection itself; a connection it closes for
// good (a server -ERR, an authorization failure) is made again by the Bus's own thread, after
// reconnect_wait, with every subscription, KV watch and the async-request inbox made again.
// Every call may come from any thread, also while a new connection replaces the old one.
// A name or payload nats-server would reject (nats_limits.h) is refused with INVALID, unsent.
// Every C handle lives in an RAII owner.
#pragma once

#include "config.h"

#include <nodeha/plugin.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace nodeha::host {

// Called on a NATS library thread: copy and hand off, never block.
using MessageHandler = std::function<void(Message)>;
using BatchHandler = std::function<void(std::vector<Message>)>;
// Called on the watch's own thread: copy and hand off, never block.
using EntryHandler = std::function<void(KvEntry)>;

class Bus {
 public:
  // Starts connecting in the background; never fails for an unreachable server (the host must
  // come up when NATS is down), only for bad options (unreadable credentials or TLS files).
  // `on_state` is called on each change of connected(), in order; `on_closed` when a connection
  // closed for good, with a bounded reason label (control_line, payload, auth, max_connections,
  // other) and the server's words; both on library or Bus threads: never block, never call the
  // Bus.
  using ClosedHandler = std::function<void(const std::string& reason, const std::string& text)>;
  static Result<std::unique_ptr<Bus>> create(const NatsSettings& settings, const std::string& client_name,
                                             std::function<void(bool connected)> on_state,
                                             ClosedHandler on_closed = nullptr);
  ~Bus();
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  bool connected() const { return connected_; }
  // How many times the Bus became connected since create (0 until the first): first connects,
  // cnats' reconnects and connections the Bus made again all count.
  uint64_t connects() const { return connects_; }
  // One round trip to the server (a flush), up to `timeout`: OK, TIMEOUT or UNAVAILABLE.
  Status probe(std::chrono::milliseconds timeout);
  // Waits up to `timeout` for a connection; true when connected.
  bool wait_connected(std::chrono::milliseconds timeout) const;

  Status publish(const std::string& subject, std::string_view data);
  // When connected, returns once the server has the subscription (a bounded flush), so that
  // whoever learns of it after this call finds it served. Made again after every reconnect; the
  // id stays valid until unsubscribe.
  Result<uint64_t> subscribe(const std::string& subject, const std::string& queue, MessageHandler fn);
  // The same for a subject with many small messages (heartbeats): the messages wait in cnats'
  // queue and one thread of the Bus takes every batched subscription's messages every
  // kBatchEvery, handing each subscription's in order to `fn` at once. No thread is woken per
  // message; a message waits up to kBatchEvery. Messages cnats dropped (more than its pending
  // limit waiting) are logged.
  Result<uint64_t> subscribe_batched(const std::string& subject, const std::string& queue, BatchHandler fn);
  static constexpr std::chrono::milliseconds kBatchEvery{20};
  void unsubscribe(uint64_t id);
  Result<std::string> request(const std::string& subject, std::string_view data, std::chrono::milliseconds timeout);
  // Sends a request whose reply (or no-responders notice) goes to `fn` on a NATS library thread;
  // returns a token for forget(). The caller owns the timeout. When the connection closes for
  // good, pending requests get UNAVAILABLE at once (from the Bus's reconnect thread); across a
  // cnats reconnect they stay pending and may still be answered.
  using ReplyHandler = std::function<void(nodeha_status, std::string)>;
  Result<uint64_t> request_async(const std::string& subject, std::string_view data, ReplyHandler fn);
  // Drops a pending request; true when it was still pending (no reply came).
  bool forget(uint64_t token);

  Result<KvEntry> kv_get(const std::string& bucket, const std::string& key);
  Result<uint64_t> kv_create(const std::string& bucket, const std::string& key, std::string_view value);
  Result<uint64_t> kv_update(const std::string& bucket, const std::string& key, std::string_view value, uint64_t expected);
  Result<uint64_t> kv_put(const std::string& bucket, const std::string& key, std::string_view value);
  Status kv_delete(const std::string& bucket, const std::string& key);
  Result<std::vector<KvEntry>> kv_list(const std::string& bucket);
  // Delivers current values, then changes; survives reconnects (restarted from the last
  // revision it delivered).
  Result<uint64_t> kv_watch(const std::string& bucket, const std::string& keys, EntryHandler fn);
  void kv_unwatch(uint64_t id);

  // Creates the JetStream stream `name` over `subjects` unless it exists (audit history).
  Status ensure_stream(const std::string& name, const std::string& subjects, int64_t max_age_s);

  // Flushes pending publishes (up to `timeout`) and closes.
  void close(std::chrono::milliseconds timeout);

  // Opaque outside bus.cpp and bus_kv.cpp (bus_impl.h).
  struct Impl;
  struct Watch;

 private:
  explicit Bus(std::unique_ptr<Impl> impl);
  Status refuse(const std::string& what, const std::string& why) const;
  // subscribe and subscribe_batched: one of `fn` and `batch` is set.
  Result<uint64_t> add_subscription(const std::string& subject, const std::string& queue, std::shared_ptr<MessageHandler> fn,
                                    std::shared_ptr<BatchHandler> batch);
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> connects_{0};
};

}  // namespace nodeha::host
