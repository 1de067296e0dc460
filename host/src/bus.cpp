#include "bus.h"

#include "credential.h"

#include <nats/nats.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <cstring>
#include <unistd.h>

namespace nodeha::host {
namespace {

template <auto Fn>
struct Deleter {
  template <class T>
  void operator()(T* p) const { if (p) Fn(p); }
};
using OptionsPtr = std::unique_ptr<natsOptions, Deleter<natsOptions_Destroy>>;
using ConnectionPtr = std::unique_ptr<natsConnection, Deleter<natsConnection_Destroy>>;
using SubscriptionPtr = std::unique_ptr<natsSubscription, Deleter<natsSubscription_Destroy>>;
using MsgPtr = std::unique_ptr<natsMsg, Deleter<natsMsg_Destroy>>;
using JsPtr = std::unique_ptr<jsCtx, Deleter<jsCtx_Destroy>>;
using KvPtr = std::unique_ptr<kvStore, Deleter<kvStore_Destroy>>;
using EntryPtr = std::unique_ptr<kvEntry, Deleter<kvEntry_Destroy>>;
using WatcherPtr = std::unique_ptr<kvWatcher, Deleter<kvWatcher_Destroy>>;

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
      return NODEHA_ERR_INVALID;
    default: return NODEHA_ERR_INTERNAL;
  }
}

Status fail(natsStatus s, const std::string& what) {
  std::string text = last_error(s);
  nodeha_status code = map_status(s);
  // JetStream reports a failed expected-revision check as "wrong last sequence".
  if (code == NODEHA_ERR_INTERNAL && text.find("wrong last sequence") != std::string::npos) code = NODEHA_ERR_CONFLICT;
  if (code == NODEHA_ERR_INTERNAL && text.find("key exists") != std::string::npos) code = NODEHA_ERR_CONFLICT;
  return Status(code, fmt::format("{}: {}", what, text));
}

KvEntry to_entry(kvEntry* e) {
  KvEntry out;
  out.bucket = kvEntry_Bucket(e);
  out.key = kvEntry_Key(e);
  if (auto* v = static_cast<const char*>(kvEntry_Value(e))) out.value.assign(v, kvEntry_ValueLen(e));
  out.revision = kvEntry_Revision(e);
  out.deleted = kvEntry_Operation(e) != kvOp_Put;
  out.created_unix_ns = kvEntry_Created(e);
  return out;
}

}  // namespace

struct Bus::Watch {
  uint64_t id;
  std::string bucket, keys;
  EntryHandler fn;
  std::atomic<bool> stop{false};
  std::atomic<bool> restart{false};
  std::mutex mu;
  kvWatcher* current = nullptr;  // guarded by mu; for kvWatcher_Stop from other threads
  std::thread thread;
};

struct Bus::Impl {
  NatsSettings settings;
  std::function<void(bool)> on_state;
  Bus* self = nullptr;
  std::unique_ptr<auth::BusLogin> login;  // before conn: signs every (re)connect of it
  OptionsPtr opts;
  ConnectionPtr conn;
  std::mutex mu;  // guards everything below
  JsPtr js;
  std::map<std::string, KvPtr> buckets;
  std::map<uint64_t, SubscriptionPtr> subs;
  std::map<uint64_t, std::unique_ptr<Watch>> watches;
  std::string inbox;                 // <_INBOX.nuid>: replies to async requests arrive below it
  SubscriptionPtr inbox_sub;
  std::map<uint64_t, ReplyHandler> pending;
  uint64_t next_id = 1;
  mutable std::mutex state_mu;
  mutable std::condition_variable state_cv;

  std::atomic<bool> closing{false};

  void set_connected(bool up) {
    if (closing) return;  // our own close is no outage
    {
      std::lock_guard lock(state_mu);
      self->connected_ = up;
      if (up) ++self->connects_;
    }
    state_cv.notify_all();
    if (on_state) on_state(up);
    if (up) {
      // A server that restarted has lost the watches' consumers: start them again.
      std::lock_guard lock(mu);
      for (auto& [id, w] : watches) {
        w->restart = true;
        std::lock_guard wl(w->mu);
        if (w->current) kvWatcher_Stop(w->current);
      }
    }
  }
  static void on_connected(natsConnection*, void* c) { static_cast<Impl*>(c)->set_connected(true); }
  static void on_disconnected(natsConnection*, void* c) { static_cast<Impl*>(c)->set_connected(false); }

  Result<kvStore*> bucket(const std::string& name) {
    std::lock_guard lock(mu);
    if (auto it = buckets.find(name); it != buckets.end()) return it->second.get();
    if (!js) {
      jsCtx* raw = nullptr;
      if (auto s = natsConnection_JetStream(&raw, conn.get(), nullptr); s != NATS_OK) return fail(s, "jetstream");
      js.reset(raw);
    }
    kvStore* kv = nullptr;
    natsStatus s = js_KeyValue(&kv, js.get(), name.c_str());
    if (s == NATS_NOT_FOUND) {
      kvConfig cfg;
      kvConfig_Init(&cfg);
      cfg.Bucket = name.c_str();
      cfg.History = static_cast<uint8_t>(settings.kv_history);
      cfg.Replicas = static_cast<int>(settings.kv_replicas);
      cfg.StorageType = js_FileStorage;
      s = js_CreateKeyValue(&kv, js.get(), &cfg);
      if (s != NATS_OK) s = js_KeyValue(&kv, js.get(), name.c_str());  // another host won the race
    }
    if (s != NATS_OK) return fail(s, "kv bucket " + name);
    buckets[name].reset(kv);
    return kv;
  }

  void run_watch(Watch* w) {
    uint64_t last = 0;  // highest revision delivered; a restarted watch skips what it saw
    while (!w->stop) {
      auto kv = bucket(w->bucket);
      if (!kv) {
        std::unique_lock lock(state_mu);
        state_cv.wait_for(lock, std::chrono::milliseconds(settings.reconnect_wait_ms), [&] { return w->stop.load(); });
        continue;
      }
      kvWatchOptions o;
      kvWatchOptions_Init(&o);
      kvWatcher* raw = nullptr;
      natsStatus s = kvStore_Watch(&raw, kv.value(), w->keys.c_str(), &o);
      if (s != NATS_OK) {
        std::unique_lock lock(state_mu);
        state_cv.wait_for(lock, std::chrono::milliseconds(settings.reconnect_wait_ms), [&] { return w->stop.load(); });
        continue;
      }
      WatcherPtr watcher(raw);
      {
        std::lock_guard lock(w->mu);
        w->current = raw;
      }
      w->restart = false;
      while (!w->stop && !w->restart) {
        kvEntry* e = nullptr;
        s = kvWatcher_Next(&e, raw, 1000);
        if (s == NATS_TIMEOUT) continue;
        if (s != NATS_OK) break;
        if (!e) continue;  // end of the initial values
        EntryPtr entry(e);
        if (kvEntry_Revision(e) <= last) continue;
        last = kvEntry_Revision(e);
        w->fn(to_entry(e));
      }
      std::lock_guard lock(w->mu);
      w->current = nullptr;
    }
  }
};

Bus::Bus(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->self = this;
  inbox_access_.bus = this;
}

Result<std::unique_ptr<Bus>> Bus::create(const NatsSettings& settings, const std::string& client_name,
                                         std::function<void(bool)> on_state) {
  auto impl = std::make_unique<Impl>();
  impl->settings = settings;
  impl->on_state = std::move(on_state);
  natsOptions* raw = nullptr;
  if (auto s = natsOptions_Create(&raw); s != NATS_OK) return fail(s, "nats options");
  impl->opts.reset(raw);
  natsOptions* o = raw;
  std::vector<const char*> servers;
  for (const auto& s : settings.servers) servers.push_back(s.c_str());
  auto check = [](natsStatus s, const std::string& what) -> Status {
    return s == NATS_OK ? Status::ok() : fail(s, what);
  };
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
  if (st) st = check(natsOptions_SetRetryOnFailedConnect(o, true, &Impl::on_connected, ip), "retry");
  if (st) st = check(natsOptions_SetDisconnectedCB(o, &Impl::on_disconnected, ip), "disconnected cb");
  if (st) st = check(natsOptions_SetReconnectedCB(o, &Impl::on_connected, ip), "reconnected cb");
  if (!st) return st;

  std::unique_ptr<Bus> bus(new Bus(std::move(impl)));
  natsConnection* conn = nullptr;
  natsStatus s = natsConnection_Connect(&conn, o);
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) return fail(s, "connect");
  bus->impl_->conn.reset(conn);
  if (s == NATS_OK) bus->impl_->set_connected(true);
  return bus;
}

Bus::~Bus() { close(std::chrono::milliseconds(1000)); }

bool Bus::wait_connected(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->state_mu);
  return impl_->state_cv.wait_for(lock, timeout, [&] { return connected_.load(); });
}

namespace {
Status not_connected(const std::string& what) {
  return Status(NODEHA_ERR_UNAVAILABLE, what + ": not connected to NATS (reconnecting)");
}
}  // namespace

Status Bus::probe(std::chrono::milliseconds timeout) {
  if (!connected_) return not_connected("probe");
  natsStatus s = natsConnection_FlushTimeout(impl_->conn.get(), timeout.count());
  return s == NATS_OK ? Status::ok() : fail(s, "probe");
}

Status Bus::publish(const std::string& subject, std::string_view data) {
  natsStatus s = natsConnection_Publish(impl_->conn.get(), subject.c_str(), data.data(), static_cast<int>(data.size()));
  return s == NATS_OK ? Status::ok() : fail(s, "publish " + subject);
}

namespace {
void on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  MsgPtr owned(msg);
  Message m;
  m.subject = natsMsg_GetSubject(msg);
  if (const char* r = natsMsg_GetReply(msg)) m.reply = r;
  if (const char* d = natsMsg_GetData(msg)) m.data.assign(d, natsMsg_GetDataLength(msg));
  (*static_cast<MessageHandler*>(closure))(std::move(m));
}
}  // namespace

Result<uint64_t> Bus::subscribe(const std::string& subject, const std::string& queue, MessageHandler fn) {
  // Freed by the library's completion callback, after the last message callback returned.
  auto* handler = new MessageHandler(std::move(fn));
  natsSubscription* raw = nullptr;
  natsStatus s = queue.empty()
                     ? natsConnection_Subscribe(&raw, impl_->conn.get(), subject.c_str(), &on_message, handler)
                     : natsConnection_QueueSubscribe(&raw, impl_->conn.get(), subject.c_str(), queue.c_str(), &on_message, handler);
  if (s != NATS_OK) {
    delete handler;
    return fail(s, "subscribe " + subject);
  }
  SubscriptionPtr sub(raw);
  natsSubscription_SetOnCompleteCB(raw, [](void* c) { delete static_cast<MessageHandler*>(c); }, handler);
  std::lock_guard lock(impl_->mu);
  uint64_t id = impl_->next_id++;
  impl_->subs[id] = std::move(sub);
  return id;
}

void Bus::unsubscribe(uint64_t id) {
  SubscriptionPtr sub;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->subs.find(id);
    if (it == impl_->subs.end()) return;
    sub = std::move(it->second);
    impl_->subs.erase(it);
  }
  natsSubscription_Unsubscribe(sub.get());
}

Result<std::string> Bus::request(const std::string& subject, std::string_view data, std::chrono::milliseconds timeout) {
  if (!connected_) return not_connected("request " + subject);
  natsMsg* raw = nullptr;
  natsStatus s = natsConnection_Request(&raw, impl_->conn.get(), subject.c_str(), data.data(),
                                        static_cast<int>(data.size()), timeout.count());
  if (s != NATS_OK) return fail(s, "request " + subject);
  MsgPtr reply(raw);
  const char* d = natsMsg_GetData(raw);
  return std::string(d ? d : "", natsMsg_GetDataLength(raw));
}

namespace {
void on_inbox(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  MsgPtr owned(msg);
  auto* impl = static_cast<Bus::InboxAccess*>(closure);
  impl->deliver(msg);
}
}  // namespace

void Bus::InboxAccess::deliver(natsMsg* msg) {
  std::string subject = natsMsg_GetSubject(msg);
  auto dot = subject.rfind('.');
  uint64_t token = dot == std::string::npos ? 0 : std::strtoull(subject.c_str() + dot + 1, nullptr, 10);
  ReplyHandler fn;
  {
    std::lock_guard lock(bus->impl_->mu);
    auto it = bus->impl_->pending.find(token);
    if (it == bus->impl_->pending.end()) return;  // timed out already
    fn = std::move(it->second);
    bus->impl_->pending.erase(it);
  }
  if (natsMsg_IsNoResponders(msg)) {
    fn(NODEHA_ERR_NO_RESPONDERS, {});
    return;
  }
  const char* d = natsMsg_GetData(msg);
  fn(NODEHA_OK, std::string(d ? d : "", natsMsg_GetDataLength(msg)));
}

Result<uint64_t> Bus::request_async(const std::string& subject, std::string_view data, ReplyHandler fn) {
  if (!connected_) return not_connected("request " + subject);
  uint64_t token;
  std::string reply;
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->inbox_sub) {
      natsInbox* inbox = nullptr;
      if (auto s = natsInbox_Create(&inbox); s != NATS_OK) return fail(s, "inbox");
      // Under this identity's own prefix when it has one: the only inbox its permissions let it read.
      const std::string own = impl_->login ? impl_->login->inbox_prefix() : "";
      impl_->inbox = own.empty() ? std::string(inbox) : own + std::string(inbox).substr(std::strlen("_INBOX"));
      natsInbox_Destroy(inbox);
      natsSubscription* raw = nullptr;
      if (auto s = natsConnection_Subscribe(&raw, impl_->conn.get(), (impl_->inbox + ".*").c_str(), &on_inbox, &inbox_access_);
          s != NATS_OK)
        return fail(s, "subscribe inbox");
      impl_->inbox_sub.reset(raw);
    }
    token = impl_->next_id++;
    impl_->pending[token] = std::move(fn);
    reply = impl_->inbox + "." + std::to_string(token);
  }
  natsStatus s = natsConnection_PublishRequest(impl_->conn.get(), subject.c_str(), reply.c_str(), data.data(),
                                               static_cast<int>(data.size()));
  if (s != NATS_OK) {
    forget(token);
    return fail(s, "request " + subject);
  }
  return token;
}

bool Bus::forget(uint64_t token) {
  std::lock_guard lock(impl_->mu);
  return impl_->pending.erase(token) > 0;
}

Result<KvEntry> Bus::kv_get(const std::string& bucket, const std::string& key) {
  if (!connected_) return not_connected("kv " + bucket);
  auto kv = impl_->bucket(bucket);
  if (!kv) return kv.status();
  kvEntry* raw = nullptr;
  natsStatus s = kvStore_Get(&raw, kv.value(), key.c_str());
  if (s != NATS_OK) return fail(s, fmt::format("kv get {}/{}", bucket, key));
  EntryPtr e(raw);
  return to_entry(raw);
}

Result<uint64_t> Bus::kv_create(const std::string& bucket, const std::string& key, std::string_view value) {
  if (!connected_) return not_connected("kv " + bucket);
  auto kv = impl_->bucket(bucket);
  if (!kv) return kv.status();
  uint64_t rev = 0;
  natsStatus s = kvStore_Create(&rev, kv.value(), key.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) return fail(s, fmt::format("kv create {}/{}", bucket, key));
  return rev;
}

Result<uint64_t> Bus::kv_update(const std::string& bucket, const std::string& key, std::string_view value, uint64_t expected) {
  if (!connected_) return not_connected("kv " + bucket);
  auto kv = impl_->bucket(bucket);
  if (!kv) return kv.status();
  uint64_t rev = 0;
  natsStatus s = kvStore_Update(&rev, kv.value(), key.c_str(), value.data(), static_cast<int>(value.size()), expected);
  if (s != NATS_OK) return fail(s, fmt::format("kv update {}/{} (expected revision {})", bucket, key, expected));
  return rev;
}

Result<uint64_t> Bus::kv_put(const std::string& bucket, const std::string& key, std::string_view value) {
  if (!connected_) return not_connected("kv " + bucket);
  auto kv = impl_->bucket(bucket);
  if (!kv) return kv.status();
  uint64_t rev = 0;
  natsStatus s = kvStore_Put(&rev, kv.value(), key.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) return fail(s, fmt::format("kv put {}/{}", bucket, key));
  return rev;
}

Status Bus::kv_delete(const std::string& bucket, const std::string& key) {
  if (!connected_) return not_connected("kv " + bucket);
  auto kv = impl_->bucket(bucket);
  if (!kv) return kv.status();
  natsStatus s = kvStore_Delete(kv.value(), key.c_str());
  return s == NATS_OK ? Status::ok() : fail(s, fmt::format("kv delete {}/{}", bucket, key));
}

Result<std::vector<KvEntry>> Bus::kv_list(const std::string& bucket) {
  if (!connected_) return not_connected("kv " + bucket);
  auto kv = impl_->bucket(bucket);
  if (!kv) return kv.status();
  kvWatchOptions o;
  kvWatchOptions_Init(&o);
  o.IgnoreDeletes = true;
  kvWatcher* raw = nullptr;
  natsStatus s = kvStore_WatchAll(&raw, kv.value(), &o);
  if (s != NATS_OK) return fail(s, "kv list " + bucket);
  WatcherPtr w(raw);
  std::vector<KvEntry> out;
  for (;;) {
    kvEntry* e = nullptr;
    s = kvWatcher_Next(&e, raw, impl_->settings.connect_timeout_ms);
    if (s != NATS_OK) return fail(s, "kv list " + bucket);
    if (!e) break;  // initial values done
    EntryPtr entry(e);
    if (kvEntry_Operation(e) == kvOp_Put) out.push_back(to_entry(e));
  }
  return out;
}

Result<uint64_t> Bus::kv_watch(const std::string& bucket, const std::string& keys, EntryHandler fn) {
  auto w = std::make_unique<Watch>();
  w->bucket = bucket;
  w->keys = keys;
  w->fn = std::move(fn);
  Watch* wp = w.get();
  uint64_t id;
  {
    std::lock_guard lock(impl_->mu);
    id = impl_->next_id++;
    w->id = id;
    impl_->watches[id] = std::move(w);
  }
  wp->thread = std::thread([this, wp] { impl_->run_watch(wp); });
  return id;
}

void Bus::kv_unwatch(uint64_t id) {
  std::unique_ptr<Watch> w;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->watches.find(id);
    if (it == impl_->watches.end()) return;
    w = std::move(it->second);
    impl_->watches.erase(it);
  }
  w->stop = true;
  {
    std::lock_guard lock(w->mu);
    if (w->current) kvWatcher_Stop(w->current);
  }
  impl_->state_cv.notify_all();
  if (w->thread.joinable()) w->thread.join();
}

Status Bus::ensure_stream(const std::string& name, const std::string& subjects, int64_t max_age_s) {
  if (!connected_) return not_connected("stream " + name);
  std::lock_guard lock(impl_->mu);
  if (!impl_->js) {
    jsCtx* raw = nullptr;
    if (auto s = natsConnection_JetStream(&raw, impl_->conn.get(), nullptr); s != NATS_OK) return fail(s, "jetstream");
    impl_->js.reset(raw);
  }
  jsStreamInfo* info = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, impl_->js.get(), name.c_str(), nullptr, &err);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(info);
    return Status::ok();
  }
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name.c_str();
  const char* subj[] = {subjects.c_str()};
  cfg.Subjects = subj;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = static_cast<int64_t>(impl_->settings.kv_replicas);
  cfg.MaxAge = max_age_s * 1'000'000'000LL;
  s = js_AddStream(&info, impl_->js.get(), &cfg, nullptr, &err);
  if (s != NATS_OK) return fail(s, "create stream " + name);
  jsStreamInfo_Destroy(info);
  return Status::ok();
}

void Bus::close(std::chrono::milliseconds timeout) {
  if (!impl_ || !impl_->conn) return;
  impl_->closing = true;
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
  if (connected_) natsConnection_FlushTimeout(impl_->conn.get(), timeout.count());
  natsConnection_Close(impl_->conn.get());
  {
    std::lock_guard lock(impl_->mu);
    impl_->buckets.clear();
    impl_->js.reset();
    impl_->pending.clear();
  }
  impl_->inbox_sub.reset();
  impl_->conn.reset();
}

}  // namespace nodeha::host
