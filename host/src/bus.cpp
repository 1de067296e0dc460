#include "bus_impl.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <unistd.h>

namespace nodeha::host {
namespace {

std::string last_error(natsStatus s) {
  const char* text = nats_GetLastError(nullptr);
  return text && *text ? text : natsStatus_GetText(s);
}

nodeha_status map_status(natsStatus s) {
  switch (s) {
    case NATS_OK: return NODEHA_OK;
    case NATS_NOT_FOUND: return NODEHA_ERR_NOT_FOUND;
    case NATS_TIMEOUT: return NODEHA_ERR_TIMEOUT;
    case NATS_NO_RESPONDERS: return NODEHA_ERR_NO_RESPONDERS;
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
      return NODEHA_ERR_UNAVAILABLE;
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
    case NATS_MAX_PAYLOAD:
      return NODEHA_ERR_INVALID;
    default: return NODEHA_ERR_INTERNAL;
  }
}

// A bounded label (the metric's) for the words a server closed a connection with.
std::string closed_reason(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  if (text.find("control line") != std::string::npos) return "control_line";
  if (text.find("payload") != std::string::npos) return "payload";
  if (text.find("authoriz") != std::string::npos || text.find("authenticat") != std::string::npos) return "auth";
  if (text.find("maximum connections") != std::string::npos) return "max_connections";
  return "other";
}

// A subscription is at the server when subscribe() returns, unless the server takes longer.
constexpr int64_t kSubscribeFlushCapMs = 2000;
// How long close() waits for cnats' last callbacks into the Bus.
constexpr auto kCallbacksDrain = std::chrono::seconds(2);

void on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  MsgPtr owned(msg);
  Message m;
  m.subject = natsMsg_GetSubject(msg);
  if (const char* r = natsMsg_GetReply(msg)) m.reply = r;
  if (const char* d = natsMsg_GetData(msg)) m.data.assign(d, natsMsg_GetDataLength(msg));
  (**static_cast<std::shared_ptr<MessageHandler>*>(closure))(std::move(m));
}

void release_handler(void* closure) { delete static_cast<std::shared_ptr<MessageHandler>*>(closure); }

}  // namespace

Status fail(natsStatus s, const std::string& what) {
  std::string text = last_error(s);
  nodeha_status code = map_status(s);
  // JetStream reports a failed expected-revision check as "wrong last sequence".
  if (code == NODEHA_ERR_INTERNAL && text.find("wrong last sequence") != std::string::npos) code = NODEHA_ERR_CONFLICT;
  if (code == NODEHA_ERR_INTERNAL && text.find("key exists") != std::string::npos) code = NODEHA_ERR_CONFLICT;
  return Status(code, fmt::format("{}: {}", what, text));
}

Status not_connected(const std::string& what) {
  return Status(NODEHA_ERR_UNAVAILABLE, what + ": not connected to NATS (reconnecting)");
}

Status Bus::refuse(const std::string& what, const std::string& why) const {
  return Status(NODEHA_ERR_INVALID, fmt::format("{} refused, nothing sent: {}", what, why));
}

nats_limits::Limits Bus::Impl::limits(natsConnection* c) const {
  nats_limits::Limits l;
  l.max_control_line = static_cast<size_t>(settings.max_control_line);
  // Before the first connection the server's own default stands.
  if (int64_t mp = c ? natsConnection_GetMaxPayload(c) : 0; mp > 0) l.max_payload = static_cast<size_t>(mp);
  return l;
}

void Bus::Impl::refresh_state() {
  if (closing) return;  // our own close is no outage
  bool up;
  {
    std::lock_guard lock(state_mu);
    ConnectionRef c = connection();
    up = c && natsConnection_Status(c.get()) == NATS_CONN_STATUS_CONNECTED;
    if (up == self->connected_) return;
    self->connected_ = up;
    if (up) ++self->connects_;
    if (on_state) on_state(up);  // under state_mu: the host sees the changes in order
  }
  state_cv.notify_all();
  if (up) restart_watches();
}

void Bus::Impl::restart_watches() {
  // A server that restarted, or a new connection, has none of the watches' consumers.
  std::lock_guard lock(mu);
  for (auto& [id, w] : watches) {
    w->restart = true;
    std::lock_guard wl(w->mu);
    if (w->current) kvWatcher_Stop(w->current);
  }
}

void Bus::Impl::on_state_change(natsConnection*, void* closure) { static_cast<Impl*>(closure)->refresh_state(); }

void Bus::Impl::on_closed_cb(natsConnection* nc, void* closure) {
  auto* impl = static_cast<Impl*>(closure);
  const char* text = nullptr;
  natsStatus err = natsConnection_GetLastError(nc, &text);
  std::string why = text && *text ? text : natsStatus_GetText(err);
  impl->refresh_state();
  std::lock_guard lock(impl->mu);
  // A connection not (or no longer) current is the reconnect thread's to judge.
  if (!impl->closing && impl->conn.get() == nc) {
    impl->closed_pending = true;
    impl->closed_text = why;
  }
  ++impl->closed_seen;
  impl->cv.notify_all();  // the last touch: close() may free *impl once it sees closed_seen
}

namespace {
void on_inbox(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  MsgPtr owned(msg);
  auto* impl = static_cast<Bus::Impl*>(closure);
  std::string subject = natsMsg_GetSubject(msg);
  auto dot = subject.rfind('.');
  uint64_t token = dot == std::string::npos ? 0 : std::strtoull(subject.c_str() + dot + 1, nullptr, 10);
  Bus::ReplyHandler fn;
  {
    std::lock_guard lock(impl->mu);
    auto it = impl->pending.find(token);
    if (it == impl->pending.end()) return;  // timed out already
    fn = std::move(it->second);
    impl->pending.erase(it);
  }
  if (natsMsg_IsNoResponders(msg)) {
    fn(NODEHA_ERR_NO_RESPONDERS, {});
    return;
  }
  const char* d = natsMsg_GetData(msg);
  fn(NODEHA_OK, std::string(d ? d : "", natsMsg_GetDataLength(msg)));
}

void inbox_done(void* closure) {
  auto* impl = static_cast<Bus::Impl*>(closure);
  std::lock_guard lock(impl->mu);
  --impl->inbox_live;
  impl->cv.notify_all();
}
}  // namespace

natsStatus Bus::Impl::make_sub(natsConnection* c, Sub& sub) {
  if (sub.batch) {
    natsSubscription* raw = nullptr;
    natsStatus s = sub.queue.empty() ? natsConnection_SubscribeSync(&raw, c, sub.subject.c_str())
                                     : natsConnection_QueueSubscribeSync(&raw, c, sub.subject.c_str(), sub.queue.c_str());
    if (s == NATS_OK) sub.current.reset(raw);
    return s;
  }
  auto* closure = new std::shared_ptr<MessageHandler>(sub.fn);
  natsSubscription* raw = nullptr;
  natsStatus s = sub.queue.empty()
                     ? natsConnection_Subscribe(&raw, c, sub.subject.c_str(), &on_message, closure)
                     : natsConnection_QueueSubscribe(&raw, c, sub.subject.c_str(), sub.queue.c_str(), &on_message, closure);
  if (s != NATS_OK) {
    delete closure;
    return s;
  }
  // Freed after the last message callback returned. This fails only when the connection closed
  // in between; the closure then stays (a few bytes) rather than risk a callback still running.
  natsSubscription_SetOnCompleteCB(raw, &release_handler, closure);
  sub.current.reset(raw);
  return NATS_OK;
}

natsStatus Bus::Impl::make_inbox_sub(natsConnection* c) {
  natsSubscription* raw = nullptr;
  natsStatus s = natsConnection_Subscribe(&raw, c, (inbox + ".*").c_str(), &on_inbox, this);
  if (s != NATS_OK) return s;
  if (natsSubscription_SetOnCompleteCB(raw, &inbox_done, this) == NATS_OK) ++inbox_live;
  inbox_sub.reset(raw);
  return NATS_OK;
}

void Bus::Impl::adopt(natsConnection* raw) {
  // Destroyed after mu is released: the old connection's handles, each holding it.
  ConnectionRef old;
  JsRef old_js;
  std::map<std::string, KvRef> old_buckets;
  std::vector<SubscriptionPtr> old_subs;
  std::lock_guard lock(mu);
  ++made;
  old = std::exchange(conn, ConnectionRef(raw, natsConnection_Destroy));
  old_js = std::move(js);
  old_buckets.swap(buckets);
  for (auto& [id, sub] : subs) {
    if (sub.current) old_subs.push_back(std::move(sub.current));
    if (auto s = make_sub(raw, sub); s != NATS_OK)
      spdlog::warn("NATS: cannot subscribe {} on the new connection: {}", sub.subject, last_error(s));
  }
  if (inbox_sub) {
    old_subs.push_back(std::move(inbox_sub));
    if (auto s = make_inbox_sub(raw); s != NATS_OK)
      spdlog::warn("NATS: cannot subscribe the reply inbox on the new connection: {}", last_error(s));
  }
}

void Bus::Impl::note_if_closed(natsConnection* raw) {
  if (!natsConnection_IsClosed(raw) || closing || conn.get() != raw || closed_pending) return;
  const char* text = nullptr;
  natsStatus err = natsConnection_GetLastError(raw, &text);
  closed_text = text && *text ? text : natsStatus_GetText(err);
  closed_pending = true;
  cv.notify_all();
}

void Bus::Impl::reconnect_loop() {
  const auto wait = std::chrono::milliseconds(settings.reconnect_wait_ms);
  std::unique_lock lock(mu);
  while (!closing) {
    cv.wait(lock, [&] { return closing || closed_pending; });
    if (closing) return;
    closed_pending = false;
    std::string why = std::exchange(closed_text, {});
    // Their replies would come to a subscription the closed connection took with it.
    std::map<uint64_t, ReplyHandler> lost;
    lost.swap(pending);
    lock.unlock();
    spdlog::warn("NATS closed the connection for good ({}); making a new one in {} ms", why, wait.count());
    if (on_closed) on_closed(closed_reason(why), why);
    for (auto& [token, fn] : lost) fn(NODEHA_ERR_UNAVAILABLE, {});
    lock.lock();
    // Back-off first: a server that closes every new connection at once is not hammered.
    while (!cv.wait_for(lock, wait, [&] { return closing.load(); })) {
      lock.unlock();
      natsConnection* raw = nullptr;
      // With retry on failed connect this returns at once when no server answers, and cnats
      // goes on trying (every reconnect_wait) on its own threads.
      natsStatus s = natsConnection_Connect(&raw, opts.get());
      if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        spdlog::warn("NATS: cannot make a new connection: {}; trying again in {} ms", last_error(s), wait.count());
        lock.lock();
        continue;
      }
      adopt(raw);
      refresh_state();
      lock.lock();
      note_if_closed(raw);
      break;
    }
  }
}

Bus::Bus(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->self = this; }

Result<std::unique_ptr<Bus>> Bus::create(const NatsSettings& settings, const std::string& client_name,
                                         std::function<void(bool)> on_state, ClosedHandler on_closed) {
  auto impl = std::make_unique<Impl>();
  impl->settings = settings;
  impl->on_state = std::move(on_state);
  impl->on_closed = std::move(on_closed);
  natsOptions* raw = nullptr;
  if (auto s = natsOptions_Create(&raw); s != NATS_OK) return fail(s, "nats options");
  impl->opts.reset(raw);
  natsOptions* o = raw;
  std::vector<const char*> servers;
  for (const auto& s : settings.servers) servers.push_back(s.c_str());
  auto check = [](natsStatus s, const std::string& what) -> Status {
    return s == NATS_OK ? Status::ok() : fail(s, what);
  };
  // Several servers (a cluster): cnats shuffles them (hosts spread over the servers) and, when
  // the connection drops, tries every other one at once; reconnect_wait (plus a jitter of 100 ms,
  // 1 s with TLS) only paces a round in which none answered. A server that dies silently (its
  // machine gone) is noticed by the pings: after 2-3 ping_interval.
  Status st = check(natsOptions_SetServers(o, servers.data(), static_cast<int>(servers.size())), "[nats] servers");
  if (st) st = check(natsOptions_SetName(o, client_name.c_str()), "name");
  if (st) st = check(natsOptions_SetMaxReconnect(o, -1), "max reconnect");
  if (st) st = check(natsOptions_SetReconnectWait(o, settings.reconnect_wait_ms), "reconnect wait");
  if (st) st = check(natsOptions_SetTimeout(o, settings.connect_timeout_ms), "connect timeout");
  if (st) st = check(natsOptions_SetPingInterval(o, settings.ping_interval_ms), "ping interval");
  if (st) st = check(natsOptions_SetMaxPingsOut(o, 2), "max pings out");
  if (st) st = check(natsOptions_SetReconnectBufSize(o, static_cast<int>(settings.reconnect_buffer_bytes)), "reconnect buffer");
  // One shared delivery thread instead of one per subscription: fewer threads, fewer wake-ups.
  if (st) st = check(natsOptions_UseGlobalMessageDelivery(o, true), "global delivery");
  for (const auto& [key, file] : {std::pair<const char*, const std::string*>{"credentials", &settings.credentials},
                                  {"tls_ca", &settings.tls_ca}, {"tls_cert", &settings.tls_cert}, {"tls_key", &settings.tls_key}})
    if (st && !file->empty() && access(file->c_str(), R_OK) != 0)
      st = Status(NODEHA_ERR_INVALID, fmt::format("[nats] {} {}: {}", key, *file, std::strerror(errno)));
  // Credentials (nkey or JWT), this identity's inbox prefix, TLS: auth/credential.h.
  if (st) {
    auto login = auth::BusLogin::apply(o, {settings.credentials, settings.tls_ca, settings.tls_cert, settings.tls_key});
    if (login) impl->login = std::move(login.value());
    else st = Status(login.status().code(), "[nats] " + login.status().message());
  }
  Impl* ip = impl.get();
  if (st) st = check(natsOptions_SetRetryOnFailedConnect(o, true, &Impl::on_state_change, ip), "retry");
  if (st) st = check(natsOptions_SetDisconnectedCB(o, &Impl::on_state_change, ip), "disconnected cb");
  if (st) st = check(natsOptions_SetReconnectedCB(o, &Impl::on_state_change, ip), "reconnected cb");
  if (st) st = check(natsOptions_SetClosedCB(o, &Impl::on_closed_cb, ip), "closed cb");
  if (!st) return st;

  std::unique_ptr<Bus> bus(new Bus(std::move(impl)));
  natsConnection* conn = nullptr;
  natsStatus s = natsConnection_Connect(&conn, o);
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) return fail(s, "connect");
  ip->adopt(conn);
  {
    std::lock_guard lock(ip->mu);
    ip->note_if_closed(conn);
  }
  ip->reconnector = std::thread([ip] { ip->reconnect_loop(); });
  ip->refresh_state();
  return bus;
}

Bus::~Bus() { close(std::chrono::milliseconds(1000)); }

bool Bus::wait_connected(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->state_mu);
  return impl_->state_cv.wait_for(lock, timeout, [&] { return connected_.load(); });
}

Status Bus::probe(std::chrono::milliseconds timeout) {
  ConnectionRef c = impl_->connection();
  if (!connected_ || !c) return not_connected("probe");
  natsStatus s = natsConnection_FlushTimeout(c.get(), timeout.count());
  return s == NATS_OK ? Status::ok() : fail(s, "probe");
}

Status Bus::publish(const std::string& subject, std::string_view data) {
  ConnectionRef c = impl_->connection();
  if (auto why = nats_limits::check_publish(subject, {}, data.size(), impl_->limits(c.get())); !why.empty())
    return refuse("publish", why);
  if (!c) return not_connected("publish " + subject);
  natsStatus s = natsConnection_Publish(c.get(), subject.c_str(), data.data(), static_cast<int>(data.size()));
  return s == NATS_OK ? Status::ok() : fail(s, "publish " + subject);
}

Result<uint64_t> Bus::subscribe(const std::string& subject, const std::string& queue, MessageHandler fn) {
  return add_subscription(subject, queue, std::make_shared<MessageHandler>(std::move(fn)), nullptr);
}

Result<uint64_t> Bus::subscribe_batched(const std::string& subject, const std::string& queue, BatchHandler fn) {
  return add_subscription(subject, queue, nullptr, std::make_shared<BatchHandler>(std::move(fn)));
}

Result<uint64_t> Bus::add_subscription(const std::string& subject, const std::string& queue,
                                       std::shared_ptr<MessageHandler> fn, std::shared_ptr<BatchHandler> batch) {
  if (auto why = nats_limits::check_subscribe(subject, queue, impl_->limits(nullptr)); !why.empty())
    return refuse("subscribe", why);
  ConnectionRef c;
  uint64_t id;
  {
    std::lock_guard lock(impl_->mu);
    c = impl_->conn;
    if (!c) return not_connected("subscribe " + subject);
    bool batched = batch != nullptr;
    Impl::Sub sub{subject, queue, std::move(fn), nullptr, std::move(batch)};
    natsStatus s = impl_->make_sub(c.get(), sub);
    // On a connection closed for good it is made on the next one, like every other.
    if (s != NATS_OK && s != NATS_CONNECTION_CLOSED) return fail(s, "subscribe " + subject);
    id = impl_->next_id++;
    impl_->subs.emplace(id, std::move(sub));
    if (batched && !impl_->batcher.joinable()) impl_->batcher = std::thread([ip = impl_.get()] { ip->batch_loop(); });
  }
  // The subscription is at the server before anyone hears that it exists. A timeout changes
  // nothing: it stands, and gets there later.
  if (connected_)
    natsConnection_FlushTimeout(c.get(), std::min<int64_t>(impl_->settings.connect_timeout_ms, kSubscribeFlushCapMs));
  return id;
}

// Every kBatchEvery: each batched subscription's waiting messages, taken under `mu` (so that no
// subscription is destroyed meanwhile: unsubscribe and adopt take it out under `mu`), then handed
// to their handlers outside it. A queue is taken whole up to kMaxBatch, so one flooded subject
// cannot hold the others' messages for long.
void Bus::Impl::batch_loop() {
  constexpr size_t kMaxBatch = 65536;
  std::unique_lock lock(mu);
  while (!closing) {
    cv.wait_for(lock, kBatchEvery, [&] { return closing.load(); });
    if (closing) return;
    std::vector<std::pair<std::shared_ptr<BatchHandler>, std::vector<Message>>> out;
    for (auto& [id, sub] : subs) {
      if (!sub.batch || !sub.current) continue;
      std::vector<Message> batch;
      for (size_t n = 0; n < kMaxBatch; ++n) {
        natsMsg* raw = nullptr;
        natsStatus s = natsSubscription_NextMsg(&raw, sub.current.get(), 0);
        if (s == NATS_SLOW_CONSUMER) {  // said once after cnats dropped some; the queue goes on
          int64_t lost = 0;
          natsSubscription_GetDropped(sub.current.get(), &lost);
          spdlog::warn("NATS: {} message(s) on {} dropped so far: the host did not take them fast enough", lost, sub.subject);
          continue;
        }
        if (s != NATS_OK) break;  // NATS_TIMEOUT: empty; or closed: made again on the next connection
        MsgPtr owned(raw);
        Message m;
        m.subject = natsMsg_GetSubject(raw);
        if (const char* r = natsMsg_GetReply(raw)) m.reply = r;
        if (const char* d = natsMsg_GetData(raw)) m.data.assign(d, natsMsg_GetDataLength(raw));
        batch.push_back(std::move(m));
      }
      if (!batch.empty()) out.emplace_back(sub.batch, std::move(batch));
    }
    if (out.empty()) continue;
    lock.unlock();
    for (auto& [fn, batch] : out) (*fn)(std::move(batch));
    lock.lock();
  }
}

void Bus::unsubscribe(uint64_t id) {
  SubscriptionPtr sub;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->subs.find(id);
    if (it == impl_->subs.end()) return;
    sub = std::move(it->second.current);
    impl_->subs.erase(it);
  }
  if (sub) natsSubscription_Unsubscribe(sub.get());
}

Result<std::string> Bus::request(const std::string& subject, std::string_view data, std::chrono::milliseconds timeout) {
  ConnectionRef c = impl_->connection();
  if (auto why = nats_limits::check_publish(subject, {}, data.size(), impl_->limits(c.get())); !why.empty())
    return refuse("request", why);
  if (!connected_ || !c) return not_connected("request " + subject);
  natsMsg* raw = nullptr;
  natsStatus s = natsConnection_Request(&raw, c.get(), subject.c_str(), data.data(), static_cast<int>(data.size()),
                                        timeout.count());
  if (s != NATS_OK) return fail(s, "request " + subject);
  MsgPtr reply(raw);
  const char* d = natsMsg_GetData(raw);
  return std::string(d ? d : "", natsMsg_GetDataLength(raw));
}

Result<uint64_t> Bus::request_async(const std::string& subject, std::string_view data, ReplyHandler fn) {
  ConnectionRef c = impl_->connection();
  if (auto why = nats_limits::check_publish(subject, {}, data.size(), impl_->limits(c.get())); !why.empty())
    return refuse("request", why);
  if (!connected_) return not_connected("request " + subject);
  uint64_t token;
  std::string reply;
  {
    std::lock_guard lock(impl_->mu);
    c = impl_->conn;  // the one the inbox is on
    if (!c) return not_connected("request " + subject);
    if (!impl_->inbox_sub) {
      if (impl_->inbox.empty()) {
        natsInbox* inbox = nullptr;
        if (auto s = natsInbox_Create(&inbox); s != NATS_OK) return fail(s, "inbox");
        // Under this identity's own prefix when it has one: the only inbox its permissions let it read.
        const std::string own = impl_->login ? impl_->login->inbox_prefix() : "";
        impl_->inbox = own.empty() ? std::string(inbox) : own + std::string(inbox).substr(std::strlen("_INBOX"));
        natsInbox_Destroy(inbox);
      }
      if (auto s = impl_->make_inbox_sub(c.get()); s != NATS_OK) return fail(s, "subscribe inbox");
    }
    token = impl_->next_id++;
    impl_->pending[token] = std::move(fn);
    reply = impl_->inbox + "." + std::to_string(token);
  }
  natsStatus s = natsConnection_PublishRequest(c.get(), subject.c_str(), reply.c_str(), data.data(),
                                               static_cast<int>(data.size()));
  if (s != NATS_OK && forget(token)) return fail(s, "request " + subject);
  // Else the reconnect thread answered it already (the connection closed meanwhile).
  return token;
}

bool Bus::forget(uint64_t token) {
  std::lock_guard lock(impl_->mu);
  return impl_->pending.erase(token) > 0;
}

void Bus::close(std::chrono::milliseconds timeout) {
  if (!impl_ || impl_->closing.exchange(true)) return;
  {
    std::lock_guard lock(impl_->mu);
    impl_->cv.notify_all();
  }
  if (impl_->reconnector.joinable()) impl_->reconnector.join();
  if (impl_->batcher.joinable()) impl_->batcher.join();
  std::vector<uint64_t> ids;
  {
    std::lock_guard lock(impl_->mu);
    for (auto& [id, w] : impl_->watches) ids.push_back(id);
  }
  for (auto id : ids) kv_unwatch(id);
  ids.clear();
  {
    std::lock_guard lock(impl_->mu);
    for (auto& [id, s] : impl_->subs) ids.push_back(id);
  }
  for (auto id : ids) unsubscribe(id);
  ConnectionRef c = impl_->connection();
  if (c && connected_) natsConnection_FlushTimeout(c.get(), timeout.count());
  if (c) natsConnection_Close(c.get());
  c.reset();
  {
    // Closed: their consumers' deletions fail at once.
    std::vector<Impl::Reaper> reapers;
    {
      std::lock_guard lock(impl_->reap_mu);
      reapers.swap(impl_->reapers);
    }
    for (auto& r : reapers) r.thread.join();
  }
  {
    // Destroyed outside mu, as cnats may call back into the Bus meanwhile.
    std::map<std::string, KvRef> buckets;
    std::map<uint64_t, ReplyHandler> pending;
    JsRef js;
    SubscriptionPtr inbox_sub;
    ConnectionRef conn;
    std::lock_guard lock(impl_->mu);
    buckets.swap(impl_->buckets);
    pending.swap(impl_->pending);
    js = std::move(impl_->js);
    inbox_sub = std::move(impl_->inbox_sub);
    conn = std::move(impl_->conn);
  }
  std::unique_lock lock(impl_->mu);
  // cnats calls back on its own threads after Close returned; *impl_ must outlive those calls.
  impl_->cv.wait_for(lock, kCallbacksDrain, [&] { return impl_->closed_seen >= impl_->made && impl_->inbox_live == 0; });
  connected_ = false;
}

}  // namespace nodeha::host
