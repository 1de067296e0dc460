// Inside the Bus (bus.cpp: the connection and core NATS; bus_kv.cpp: JetStream KV and streams).
//
// Connections: `conn` is the current natsConnection, shared: a call copies the pointer under
// `mu` and works on its copy, so a connection replaced meanwhile is destroyed only after its
// last user let go (and a call on it fails with UNAVAILABLE, never touches freed memory). The
// JetStream and KV handles hold the connection they were made on, and are dropped from the
// cache when it is replaced. `mu` is never held across a round trip to the server.
//
// Threads: cnats' callback thread runs the connection callbacks (state, closed); its delivery
// thread runs message callbacks; the reconnect thread makes a closed connection again; the
// batcher drains batched (synchronous) subscriptions; each KV watch has its own thread. Lock
// order: state_mu, then mu, then a Watch's mu.
#pragma once

#include "bus.h"
#include "credential.h"
#include "nats_handles.h"
#include "nats_limits.h"

#include <nats/nats.h>

#include <condition_variable>

namespace nodeha::host {

using nats::EntryPtr;
using nats::MsgPtr;
using nats::OptionsPtr;
using nats::SubscriptionPtr;
using nats::WatcherPtr;
using ConnectionRef = std::shared_ptr<natsConnection>;
using JsRef = std::shared_ptr<jsCtx>;
using KvRef = std::shared_ptr<kvStore>;

Status fail(natsStatus s, const std::string& what);
Status not_connected(const std::string& what);

struct Bus::Watch {
  uint64_t id;
  std::string bucket, keys;
  EntryHandler fn;
  std::atomic<bool> stop{false};
  std::atomic<bool> restart{false};
  std::mutex mu;
  kvWatcher* current = nullptr;  // guarded by mu; for kvWatcher_Stop from other threads
  std::thread thread;
  // Held while `fn` runs; `dead` (set by kv_unwatch) means never again.
  std::mutex fn_mu;
  bool dead = false;
};

struct Bus::Impl {
  // A subscription as the Bus keeps it: what to make again on a new connection.
  struct Sub {
    std::string subject, queue;
    std::shared_ptr<MessageHandler> fn;
    SubscriptionPtr current;  // on `conn`; null while it has none
    std::shared_ptr<BatchHandler> batch;  // set: a synchronous subscription the batcher drains
  };

  NatsSettings settings;
  std::function<void(bool)> on_state;
  ClosedHandler on_closed;
  Bus* self = nullptr;
  std::unique_ptr<auth::BusLogin> login;  // before opts and conn: signs every (re)connect
  OptionsPtr opts;

  mutable std::mutex mu;  // guards everything down to `inbox_live`
  ConnectionRef conn;
  JsRef js;
  std::map<std::string, KvRef> buckets;
  std::map<uint64_t, Sub> subs;
  std::map<uint64_t, std::unique_ptr<Watch>> watches;
  // Watches being ended off the caller's time (kv_unwatch), joined by close().
  std::mutex reap_mu;
  struct Reaper {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Reaper> reapers;
  std::string inbox;                 // <_INBOX.nuid>: replies to async requests arrive below it
  SubscriptionPtr inbox_sub;
  std::map<uint64_t, ReplyHandler> pending;
  uint64_t next_id = 1;
  // The reconnect thread's work: a connection closed for good, and why.
  bool closed_pending = false;
  std::string closed_text;
  // Connections made and their closed callbacks received, inbox subscriptions not yet complete:
  // close() waits until no cnats callback can come with this Impl as closure.
  uint64_t made = 0, closed_seen = 0, inbox_live = 0;
  std::condition_variable cv;  // with mu: closed_pending, closing, closed_seen, inbox_live
  std::thread reconnector;
  std::thread batcher;  // started with the first batched subscription

  mutable std::mutex state_mu;
  mutable std::condition_variable state_cv;
  std::atomic<bool> closing{false};

  ConnectionRef connection() const {
    std::lock_guard lock(mu);
    return conn;
  }
  nats_limits::Limits limits(natsConnection* c) const;
  // Sets connected() from the current connection's status (callbacks may come out of order).
  void refresh_state();
  void restart_watches();
  // Subscribes `sub` on `c` (mu held).
  natsStatus make_sub(natsConnection* c, Sub& sub);
  natsStatus make_inbox_sub(natsConnection* c);
  void adopt(natsConnection* raw);
  // A connection that closed before it became current had its closed callback ignored: this
  // hands it to the reconnect thread (mu held).
  void note_if_closed(natsConnection* raw);
  void reconnect_loop();
  void batch_loop();

  Result<JsRef> jetstream();
  Result<KvRef> bucket(const std::string& name);
  void run_watch(Watch* w);

  static void on_state_change(natsConnection* nc, void* closure);
  static void on_closed_cb(natsConnection* nc, void* closure);
};

}  // namespace nodeha::host
