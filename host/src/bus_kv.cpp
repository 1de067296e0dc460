// The Bus's JetStream side: KV buckets, watches and streams (see bus_impl.h for the threads).
#include "bus_impl.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace nodeha::host {
namespace {

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

// A KV operation's failure. No responders: no server serves the bucket's stream, which on a
// cluster means its Raft group has no leader: UNAVAILABLE. A timeout may hide a write that was
// applied: it stays TIMEOUT. Both say the likely cause, no quorum.
Status kv_fail(natsStatus s, const std::string& what) {
  constexpr const char* kQuorum = "is a majority of the NATS servers up? (2 of 3 for kv_replicas 3)";
  if (s == NATS_NO_RESPONDERS)
    return Status(NODEHA_ERR_UNAVAILABLE, fmt::format("{}: no JetStream server answered: {}", what, kQuorum));
  Status st = fail(s, what);
  if (s != NATS_TIMEOUT) return st;
  return Status(st.code(), fmt::format("{} (JetStream did not confirm in time: {})", st.message(), kQuorum));
}

// A bucket (stream KV_<bucket>) or stream made with fewer replicas than [nats] kv_replicas is
// raised to it: JetStream copies the data to the new peers itself. One with more is left alone,
// with a warning: lowering replication is the operator's decision, and agents, whose kv_replicas
// is 1 unless set, would otherwise undo the controllers' 3. A failed raise is a warning too: the
// stream works as it is, with the replicas it has.
void follow_replicas(jsCtx* js, const std::string& stream, int64_t wanted) {
  jsStreamInfo* raw = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&raw, js, stream.c_str(), nullptr, &err);
  if (s != NATS_OK) {
    spdlog::warn("NATS: cannot read the replicas of stream {}: {}", stream, fail(s, "stream info").message());
    return;
  }
  nats::StreamInfoPtr info(raw);
  const int64_t has = std::max<int64_t>(info->Config->Replicas, 1);
  if (has == wanted) return;
  if (has > wanted) {
    spdlog::warn("NATS: stream {} has {} replicas, more than [nats] kv_replicas = {}: left as it is. To lower it, "
                 "`nats stream edit {} --replicas {}`",
                 stream, has, wanted, stream, wanted);
    return;
  }
  info->Config->Replicas = wanted;
  jsStreamInfo* updated = nullptr;
  s = js_UpdateStream(&updated, js, info->Config, nullptr, &err);
  nats::StreamInfoPtr owned(updated);
  if (s != NATS_OK) {
    spdlog::warn("NATS: cannot raise stream {} from {} to {} replicas ([nats] kv_replicas), it keeps {}: {}. "
                 "kv_replicas > 1 needs a JetStream cluster with at least that many servers up",
                 stream, has, wanted, has, fail(s, "stream update").message());
    return;
  }
  spdlog::info("NATS: raised stream {} from {} to {} replicas ([nats] kv_replicas)", stream, has, wanted);
}

}  // namespace

Result<JsRef> Bus::Impl::jetstream() {
  std::lock_guard lock(mu);
  if (js) return js;
  if (!conn) return not_connected("jetstream");
  jsCtx* raw = nullptr;
  if (auto s = natsConnection_JetStream(&raw, conn.get(), nullptr); s != NATS_OK) return fail(s, "jetstream");
  js = JsRef(raw, [c = conn](jsCtx* j) { jsCtx_Destroy(j); });
  return js;
}

Result<KvRef> Bus::Impl::bucket(const std::string& name) {
  {
    std::lock_guard lock(mu);
    if (auto it = buckets.find(name); it != buckets.end()) return it->second;
  }
  auto j = jetstream();
  if (!j) return j.status();
  // Round trips to the server: without mu.
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, j.value().get(), name.c_str());
  if (s == NATS_NOT_FOUND) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = name.c_str();
    cfg.History = static_cast<uint8_t>(settings.kv_history);
    cfg.Replicas = static_cast<int>(settings.kv_replicas);
    cfg.StorageType = js_FileStorage;
    s = js_CreateKeyValue(&kv, j.value().get(), &cfg);
    if (s != NATS_OK) s = js_KeyValue(&kv, j.value().get(), name.c_str());  // another host won the race
  } else if (s == NATS_OK) {
    follow_replicas(j.value().get(), "KV_" + name, settings.kv_replicas);
  }
  if (s != NATS_OK) return fail(s, "kv bucket " + name);
  KvRef ref(kv, [j = j.value()](kvStore* k) { kvStore_Destroy(k); });
  std::lock_guard lock(mu);
  if (js != j.value()) return ref;  // made on a connection replaced meanwhile: not cached
  return buckets.emplace(name, ref).first->second;
}

void Bus::Impl::run_watch(Watch* w) {
  uint64_t last = 0;  // highest revision delivered; a restarted watch skips what it saw
  auto pause = [&] {
    std::unique_lock lock(state_mu);
    state_cv.wait_for(lock, std::chrono::milliseconds(settings.reconnect_wait_ms), [&] { return w->stop.load(); });
  };
  while (!w->stop) {
    auto kv = bucket(w->bucket);
    if (!kv) {
      pause();
      continue;
    }
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    kvWatcher* raw = nullptr;
    if (kvStore_Watch(&raw, kv.value().get(), w->keys.c_str(), &o) != NATS_OK) {
      pause();
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
      natsStatus s = kvWatcher_Next(&e, raw, 1000);
      if (s == NATS_TIMEOUT) continue;
      if (s != NATS_OK) break;
      if (!e) continue;  // end of the initial values
      EntryPtr entry(e);
      if (kvEntry_Revision(e) <= last) continue;
      last = kvEntry_Revision(e);
      std::lock_guard deliver(w->fn_mu);
      if (w->dead) break;
      w->fn(to_entry(e));
    }
    std::lock_guard lock(w->mu);
    w->current = nullptr;
  }
}

namespace {
Status check_kv(const Bus::Impl& impl, const std::string& bucket, const std::string& key, bool pattern, size_t value) {
  auto why = nats_limits::check_kv(bucket, key, pattern, value, impl.limits(impl.connection().get()));
  if (why.empty()) return Status::ok();
  return Status(NODEHA_ERR_INVALID, fmt::format("kv {} refused, nothing sent: {}", bucket, why));
}

// The bucket's handle for an operation on `key`, checked first: a refused key sends nothing,
// not even a bucket lookup.
Result<KvRef> open_kv(Bus::Impl& impl, const std::string& bucket, const std::string& key, bool pattern, size_t value) {
  if (auto st = check_kv(impl, bucket, key, pattern, value); !st) return st;
  if (!impl.self->connected()) return not_connected("kv " + bucket);
  return impl.bucket(bucket);
}
}  // namespace

Result<KvEntry> Bus::kv_get(const std::string& bucket, const std::string& key) {
  auto kv = open_kv(*impl_, bucket, key, false, 0);
  if (!kv) return kv.status();
  kvEntry* raw = nullptr;
  natsStatus s = kvStore_Get(&raw, kv.value().get(), key.c_str());
  if (s != NATS_OK) return kv_fail(s, fmt::format("kv get {}/{}", bucket, key));
  EntryPtr e(raw);
  return to_entry(raw);
}

Result<uint64_t> Bus::kv_create(const std::string& bucket, const std::string& key, std::string_view value) {
  auto kv = open_kv(*impl_, bucket, key, false, value.size());
  if (!kv) return kv.status();
  uint64_t rev = 0;
  natsStatus s = kvStore_Create(&rev, kv.value().get(), key.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) return kv_fail(s, fmt::format("kv create {}/{}", bucket, key));
  return rev;
}

Result<uint64_t> Bus::kv_update(const std::string& bucket, const std::string& key, std::string_view value, uint64_t expected) {
  auto kv = open_kv(*impl_, bucket, key, false, value.size());
  if (!kv) return kv.status();
  uint64_t rev = 0;
  natsStatus s = kvStore_Update(&rev, kv.value().get(), key.c_str(), value.data(), static_cast<int>(value.size()), expected);
  if (s != NATS_OK) return kv_fail(s, fmt::format("kv update {}/{} (expected revision {})", bucket, key, expected));
  return rev;
}

Result<uint64_t> Bus::kv_put(const std::string& bucket, const std::string& key, std::string_view value) {
  auto kv = open_kv(*impl_, bucket, key, false, value.size());
  if (!kv) return kv.status();
  uint64_t rev = 0;
  natsStatus s = kvStore_Put(&rev, kv.value().get(), key.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) return kv_fail(s, fmt::format("kv put {}/{}", bucket, key));
  return rev;
}

Status Bus::kv_delete(const std::string& bucket, const std::string& key) {
  auto kv = open_kv(*impl_, bucket, key, false, 0);
  if (!kv) return kv.status();
  natsStatus s = kvStore_Delete(kv.value().get(), key.c_str());
  return s == NATS_OK ? Status::ok() : kv_fail(s, fmt::format("kv delete {}/{}", bucket, key));
}

Result<std::vector<KvEntry>> Bus::kv_list(const std::string& bucket) {
  auto kv = open_kv(*impl_, bucket, ">", true, 0);
  if (!kv) return kv.status();
  kvWatchOptions o;
  kvWatchOptions_Init(&o);
  o.IgnoreDeletes = true;
  kvWatcher* raw = nullptr;
  natsStatus s = kvStore_WatchAll(&raw, kv.value().get(), &o);
  if (s != NATS_OK) return kv_fail(s, "kv list " + bucket);
  WatcherPtr w(raw);
  std::vector<KvEntry> out;
  for (;;) {
    kvEntry* e = nullptr;
    s = kvWatcher_Next(&e, raw, impl_->settings.connect_timeout_ms);
    if (s != NATS_OK) return kv_fail(s, "kv list " + bucket);
    if (!e) break;  // initial values done
    EntryPtr entry(e);
    if (kvEntry_Operation(e) == kvOp_Put) out.push_back(to_entry(e));
  }
  return out;
}

Result<uint64_t> Bus::kv_watch(const std::string& bucket, const std::string& keys, EntryHandler fn) {
  if (auto st = check_kv(*impl_, bucket, keys, true, 0); !st) return st;
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
    std::lock_guard deliver(w->fn_mu);  // waits for a delivery under way, never for the network
    w->dead = true;
  }
  impl_->state_cv.notify_all();
  // Stopping the watcher asks the server to delete its consumer: a round trip that a silent link
  // holds for the whole JetStream timeout, once per watch. A controller stepping down while cut
  // off must not wait for that: a reaper does it, and close() joins the reapers.
  std::lock_guard lock(impl_->reap_mu);
  auto& reapers = impl_->reapers;
  for (auto it = reapers.begin(); it != reapers.end();) {  // those that finished
    if (!*it->done) {
      ++it;
      continue;
    }
    it->thread.join();
    it = reapers.erase(it);
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  reapers.push_back({std::thread([w = std::move(w), done] {
                       {
                         std::lock_guard lock(w->mu);
                         if (w->current) kvWatcher_Stop(w->current);
                       }
                       if (w->thread.joinable()) w->thread.join();
                       *done = true;
                     }),
                     done});
}

Status Bus::ensure_stream(const std::string& name, const std::string& subjects, int64_t max_age_s) {
  if (!connected_) return not_connected("stream " + name);
  auto js = impl_->jetstream();
  if (!js) return js.status();
  jsStreamInfo* info = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, js.value().get(), name.c_str(), nullptr, &err);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(info);
    follow_replicas(js.value().get(), name, impl_->settings.kv_replicas);
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
  s = js_AddStream(&info, js.value().get(), &cfg, nullptr, &err);
  if (s != NATS_OK) return fail(s, "create stream " + name);
  jsStreamInfo_Destroy(info);
  return Status::ok();
}

}  // namespace nodeha::host
