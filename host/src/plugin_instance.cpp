#include "plugin_instance.h"

#include "libvirt_provider.h"
#include "local_socket.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>

namespace nodeha::host {
namespace {

nodeha_str view(const std::string& s) { return nodeha_str{s.data(), s.size()}; }

nodeha_kv_entry to_c(const KvEntry& e) {
  return nodeha_kv_entry{sizeof(nodeha_kv_entry), view(e.bucket), view(e.key), view(e.value), e.revision,
                         e.deleted ? NODEHA_KV_DELETE : NODEHA_KV_PUT, e.created_unix_ns};
}

bool valid(const char* s) { return s && *s; }

// Whether a requester's reply subject may be answered: a literal subject outside the project's
// own and outside the server's APIs. Anyone can name any reply subject, so without this a request
// whose reply subject is `<prefix>.cmd.node.drain` or `<prefix>.agent.*.vm.stop` would make this
// host publish there, and one to `$KV.nodes.<node>` or `$JS.API.STREAM.DELETE.KV_nodes` would
// write a record or delete a bucket with this host's rights. Inboxes never start with '$'.
bool reply_subject(std::string_view reply, const std::string& prefix) {
  if (!reply.empty() && reply.front() == '$') return false;
  if (reply.size() > prefix.size() && reply.substr(0, prefix.size()) == prefix && reply[prefix.size()] == '.')
    return false;
  for (size_t start = 0; start <= reply.size();) {
    size_t end = std::min(reply.find('.', start), reply.size());
    std::string_view token = reply.substr(start, end - start);
    if (token == "*" || token == ">") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace

struct PluginInstance::Access {
  static PluginInstance& of(nodeha_host* h) { return *h->instance; }

  static nodeha_str node_id(nodeha_host* h) { return view(of(h).services_.node_id); }
  static nodeha_role role(nodeha_host* h) { return of(h).services_.role; }
  static nodeha_str instance_name(nodeha_host* h) { return view(of(h).name_); }
  static nodeha_str prefix(nodeha_host* h) { return view(of(h).services_.prefix); }
  static nodeha_str state_dir(nodeha_host* h) { return view(of(h).state_dir_); }
  static nodeha_str config_json(nodeha_host* h) { return view(of(h).config_json_); }

  static void log(nodeha_host* h, nodeha_log_level level, const char* text, size_t size) {
    auto lvl = level == NODEHA_LOG_DEBUG  ? spdlog::level::debug
               : level == NODEHA_LOG_WARN ? spdlog::level::warn
               : level == NODEHA_LOG_ERROR ? spdlog::level::err
                                            : spdlog::level::info;
    spdlog::log(lvl, "[{}] {}", of(h).name_, std::string_view(text, size));
  }

  // A controller that does not lead (or whose lease time is up) does nothing others can see:
  // replies only, so that a requester hears why. A follower instance never acts, also in the
  // moment between its controller taking the lead and the host stopping it.
  static bool fenced(nodeha_host* h) {
    if (of(h).mode_ == NODEHA_MODE_FOLLOWER) return true;
    const auto& may_act = of(h).services_.may_act;
    return may_act && !may_act();
  }

  static nodeha_mode mode(nodeha_host* h) { return of(h).mode_; }

  static nodeha_status publish(nodeha_host* h, const char* subject, const char* data, size_t size) {
    if (!valid(subject)) return NODEHA_ERR_INVALID;
    if (fenced(h)) return NODEHA_ERR_UNAVAILABLE;
    return of(h).services_.bus->publish(subject, std::string_view(data, size)).code();
  }

  static nodeha_status subscribe(nodeha_host* h, const char* subject, const char* queue, uint32_t flags,
                                 nodeha_msg_fn fn, void* ctx, nodeha_release_fn release, uint64_t* out_id) {
    auto& self = of(h);
    if (!valid(subject) || !fn || self.stopping_) {
      if (release) release(ctx);
      return self.stopping_ ? NODEHA_ERR_UNAVAILABLE : NODEHA_ERR_INVALID;
    }
    uint64_t id = self.add_registration({Registration::kSubscription, 0, release, ctx});
    EventLoop* loop = self.loop_.get();
    // Both transports deliver alike: on the event thread, only while the subscription lives;
    // `dropped` runs when a queued message finds it gone.
    auto deliver = [&self, loop, id, fn, ctx](Message m, std::function<void()> dropped) {
      return loop->post([&self, id, fn, ctx, m = std::move(m), dropped = std::move(dropped)] {
        if (!self.live(id)) {  // unsubscribed while queued
          if (dropped) dropped();
          return;
        }
        nodeha_msg msg{sizeof(nodeha_msg), view(m.subject), view(m.reply), view(m.data)};
        fn(ctx, &msg);
      });
    };
    // Kept across reconnects (by cnats, or made again by the Bus on a new connection), and made
    // while still disconnected too. Bus ids start at 1.
    bool local_only = flags & NODEHA_SUB_LOCAL_ONLY;
    // A batch is one task on the event thread: its messages in a row, as long as it lives.
    auto deliver_batch = [&self, loop, id, fn, ctx](std::vector<Message> batch) {
      loop->post([&self, id, fn, ctx, batch = std::move(batch)] {
        for (const auto& m : batch) {
          if (!self.live(id)) return;
          nodeha_msg msg{sizeof(nodeha_msg), view(m.subject), view(m.reply), view(m.data)};
          fn(ctx, &msg);
        }
      });
    };
    auto sub = local_only                   ? Result<uint64_t>(uint64_t{0})
               : (flags & NODEHA_SUB_BATCH) ? self.services_.bus->subscribe_batched(subject, queue ? queue : "", deliver_batch)
                                            : self.services_.bus->subscribe(subject, queue ? queue : "",
                                                                            [deliver](Message m) { deliver(std::move(m), nullptr); });
    Result<uint64_t> route = uint64_t{0};
    // Where there is no local socket (controllers) NODEHA_SUB_LOCAL changes nothing: NATS only.
    if (sub && (flags & (NODEHA_SUB_LOCAL | NODEHA_SUB_LOCAL_ONLY)) && self.services_.local) {
      LocalSocket* local = self.services_.local;
      route = local->serve(&self, subject, [deliver, local](Message m) {
        std::string token = m.reply;
        return deliver(std::move(m), [local, token] {
          local->fail(token, kLocalUnavailable, "the plugin unsubscribed before it took the request");
        });
      });
      if (!route && sub.value()) self.services_.bus->unsubscribe(sub.value());
    }
    Status st = !sub ? sub.status() : route.status();
    if (!st) {
      Registration r;
      self.take_registration(id, Registration::kSubscription, &r);
      spdlog::warn("[{}] {}", self.name_, st.message());
      if (release) release(ctx);
      return st.code();
    }
    {
      std::lock_guard lock(self.mu_);
      self.registrations_[id].bus_id = sub.value();
      self.registrations_[id].local_route = route.value();
    }
    if (out_id) *out_id = id;
    return NODEHA_OK;
  }

  // unsubscribe, kv_unwatch, libvirt_unwatch
  static nodeha_status drop(nodeha_host* h, uint64_t id, Registration::Kind kind) {
    auto& self = of(h);
    Registration r;
    if (!self.take_registration(id, kind, &r)) return NODEHA_ERR_NOT_FOUND;
    self.leave(r);
    self.release_later(r.release, r.ctx);
    return NODEHA_OK;
  }
  static nodeha_status unsubscribe(nodeha_host* h, uint64_t id) { return drop(h, id, Registration::kSubscription); }

  static nodeha_status request(nodeha_host* h, const char* subject, const char* data, size_t size, int64_t timeout_ms,
                               nodeha_bytes_fn sink, void* sink_ctx) {
    if (!valid(subject) || timeout_ms <= 0) return NODEHA_ERR_INVALID;
    if (fenced(h)) return NODEHA_ERR_UNAVAILABLE;
    auto r = of(h).services_.bus->request(subject, std::string_view(data, size), std::chrono::milliseconds(timeout_ms));
    if (!r) return r.status().code();
    if (sink) sink(sink_ctx, r.value().data(), r.value().size());
    return NODEHA_OK;
  }

  static nodeha_status request_async(nodeha_host* h, const char* subject, const char* data, size_t size,
                                     int64_t timeout_ms, nodeha_reply_fn fn, void* ctx, nodeha_release_fn release) {
    auto& self = of(h);
    if (!valid(subject) || !fn || timeout_ms <= 0 || self.stopping_ || fenced(h)) {
      if (release) release(ctx);
      return self.stopping_ || fenced(h) ? NODEHA_ERR_UNAVAILABLE : NODEHA_ERR_INVALID;
    }
    // Whichever comes first, the reply or the timeout, answers; the other does nothing.
    auto done = std::make_shared<std::atomic<bool>>(false);
    auto finish = [done, fn, ctx, release](nodeha_status st, const std::string& body) {
      if (done->exchange(true)) return;
      fn(ctx, st, body.data(), body.size());
      if (release) release(ctx);
    };
    EventLoop* loop = self.loop_.get();
    Bus* bus = self.services_.bus;
    auto token = bus->request_async(subject, std::string_view(data, size), [loop, finish, done, release, ctx](nodeha_status st, std::string body) {
      if (!loop->post([finish, st, body = std::move(body)] { finish(st, body); }) && !done->exchange(true) && release)
        release(ctx);  // the instance stopped meanwhile
    });
    if (!token) {
      if (release) release(ctx);
      return token.status().code();
    }
    uint64_t t = token.value();
    loop->add_timer(
        std::chrono::milliseconds(timeout_ms), std::chrono::milliseconds(0),
        [finish, bus, t] {
          if (bus->forget(t)) finish(NODEHA_ERR_TIMEOUT, {});
        },
        [done, release, ctx] {
          if (!done->exchange(true) && release) release(ctx);  // the instance stopped first
        });
    return NODEHA_OK;
  }

  static nodeha_status leadership(nodeha_host* h, uint64_t* out_epoch) {
    const auto& services = of(h).services_;
    if (!services.may_act || !services.epoch) return NODEHA_ERR_NOT_FOUND;
    if (fenced(h)) return NODEHA_ERR_UNAVAILABLE;
    if (out_epoch) *out_epoch = services.epoch();
    return NODEHA_OK;
  }

  static nodeha_status bus_status(nodeha_host* h, int64_t probe_timeout_ms, uint64_t* out_connects) {
    Bus* bus = of(h).services_.bus;
    if (out_connects) *out_connects = bus->connects();
    if (probe_timeout_ms < 0) return NODEHA_ERR_INVALID;
    if (!bus->connected()) return NODEHA_ERR_UNAVAILABLE;
    if (probe_timeout_ms == 0) return NODEHA_OK;
    return bus->probe(std::chrono::milliseconds(probe_timeout_ms)).code();
  }

  static nodeha_status respond(nodeha_host* h, const char* reply, const char* data, size_t size) {
    if (!valid(reply)) return NODEHA_ERR_INVALID;
    auto& services = of(h).services_;
    // A local token never goes to NATS, also when a NATS client named one as its reply subject.
    if (LocalSocket::is_token(reply)) {
      if (services.local) services.local->respond(reply, std::string_view(data, size));
      return NODEHA_OK;
    }
    if (!reply_subject(reply, services.prefix)) return NODEHA_ERR_INVALID;
    return services.bus->publish(reply, std::string_view(data, size)).code();
  }

  static nodeha_status kv_get(nodeha_host* h, const char* bucket, const char* key, nodeha_kv_fn fn, void* ctx) {
    if (!valid(bucket) || !valid(key)) return NODEHA_ERR_INVALID;
    auto r = of(h).services_.bus->kv_get(bucket, key);
    if (!r) return r.status().code();
    auto e = to_c(r.value());
    if (fn) fn(ctx, &e);
    return NODEHA_OK;
  }
  static nodeha_status kv_create(nodeha_host* h, const char* bucket, const char* key, const char* data, size_t size,
                                 uint64_t* rev) {
    if (!valid(bucket) || !valid(key)) return NODEHA_ERR_INVALID;
    if (fenced(h)) return NODEHA_ERR_UNAVAILABLE;
    auto r = of(h).services_.bus->kv_create(bucket, key, std::string_view(data, size));
    if (r && rev) *rev = r.value();
    return r.status().code();
  }
  static nodeha_status kv_update(nodeha_host* h, const char* bucket, const char* key, const char* data, size_t size,
                                 uint64_t expected, uint64_t* rev) {
    if (!valid(bucket) || !valid(key)) return NODEHA_ERR_INVALID;
    if (fenced(h)) return NODEHA_ERR_UNAVAILABLE;
    auto r = of(h).services_.bus->kv_update(bucket, key, std::string_view(data, size), expected);
    if (r && rev) *rev = r.value();
    return r.status().code();
  }
  static nodeha_status kv_put(nodeha_host* h, const char* bucket, const char* key, const char* data, size_t size,
                              uint64_t* rev) {
    if (!valid(bucket) || !valid(key)) return NODEHA_ERR_INVALID;
    if (fenced(h)) return NODEHA_ERR_UNAVAILABLE;
    auto r = of(h).services_.bus->kv_put(bucket, key, std::string_view(data, size));
    if (r && rev) *rev = r.value();
    return r.status().code();
  }
  static nodeha_status kv_delete(nodeha_host* h, const char* bucket, const char* key) {
    if (!valid(bucket) || !valid(key)) return NODEHA_ERR_INVALID;
    if (fenced(h)) return NODEHA_ERR_UNAVAILABLE;
    return of(h).services_.bus->kv_delete(bucket, key).code();
  }
  static nodeha_status kv_list(nodeha_host* h, const char* bucket, nodeha_kv_fn fn, void* ctx) {
    if (!valid(bucket) || !fn) return NODEHA_ERR_INVALID;
    auto r = of(h).services_.bus->kv_list(bucket);
    if (!r) return r.status().code();
    for (const auto& e : r.value()) {
      auto c = to_c(e);
      fn(ctx, &c);
    }
    return NODEHA_OK;
  }
  static nodeha_status kv_watch(nodeha_host* h, const char* bucket, const char* keys, nodeha_kv_fn fn, void* ctx,
                                nodeha_release_fn release, uint64_t* out_id) {
    auto& self = of(h);
    if (!valid(bucket) || !valid(keys) || !fn || self.stopping_) {
      if (release) release(ctx);
      return self.stopping_ ? NODEHA_ERR_UNAVAILABLE : NODEHA_ERR_INVALID;
    }
    uint64_t id = self.add_registration({Registration::kWatch, 0, release, ctx});
    EventLoop* loop = self.loop_.get();
    auto w = self.services_.bus->kv_watch(bucket, keys, [&self, loop, id, fn, ctx](KvEntry e) {
      loop->post([&self, id, fn, ctx, e = std::move(e)] {
        if (!self.live(id)) return;
        auto c = to_c(e);
        fn(ctx, &c);
      });
    });
    if (!w) {
      Registration r;
      self.take_registration(id, Registration::kWatch, &r);
      if (release) release(ctx);
      return w.status().code();
    }
    {
      std::lock_guard lock(self.mu_);
      self.registrations_[id].bus_id = w.value();
    }
    if (out_id) *out_id = id;
    return NODEHA_OK;
  }
  static nodeha_status kv_unwatch(nodeha_host* h, uint64_t id) { return drop(h, id, Registration::kWatch); }

  static nodeha_metric* metric(nodeha_host* h, nodeha_metric_kind kind, const char* name, const char* help,
                               const nodeha_label* labels, size_t label_count, const double* buckets,
                               size_t bucket_count) {
    if (!valid(name)) return nullptr;
    std::vector<std::pair<std::string, std::string>> l;
    for (size_t i = 0; i < label_count; ++i) l.emplace_back(labels[i].name ? labels[i].name : "", labels[i].value ? labels[i].value : "");
    std::vector<double> b(buckets, buckets + bucket_count);
    std::string error;
    auto& self = of(h);
    auto* m = self.services_.metrics->series(kind, name, help ? help : name, l, b, &error);
    if (!m) {
      spdlog::warn("[{}] {}", self.name_, error);
      return nullptr;
    }
    std::lock_guard lock(self.mu_);
    if (self.metrics_.insert(m).second) self.services_.metrics->hold(m);
    return m;
  }
  static void metric_add(nodeha_metric* m, double v) { if (m) Metrics::add(m, v); }
  static void metric_set(nodeha_metric* m, double v) { if (m) Metrics::set(m, v); }
  static void metric_observe(nodeha_metric* m, double v) { if (m) Metrics::observe(m, v); }
  static void metric_remove(nodeha_host* h, nodeha_metric* m) {
    auto& self = of(h);
    {
      std::lock_guard lock(self.mu_);
      if (!self.metrics_.erase(m)) return;
    }
    self.services_.metrics->remove(m);
  }

  static nodeha_status post(nodeha_host* h, nodeha_task_fn fn, void* ctx, nodeha_release_fn release) {
    if (!fn) return NODEHA_ERR_INVALID;
    if (!of(h).stopping_ && of(h).loop_->post([fn, ctx, release] {
          fn(ctx);
          if (release) release(ctx);
        }))
      return NODEHA_OK;
    if (release) release(ctx);
    return NODEHA_ERR_UNAVAILABLE;
  }
  static nodeha_status spawn(nodeha_host* h, nodeha_task_fn fn, void* ctx, nodeha_release_fn release) {
    if (!fn) return NODEHA_ERR_INVALID;
    auto& self = of(h);
    if (!self.stopping_ && self.services_.workers->submit(&self, [fn, ctx, release] {
          fn(ctx);
          if (release) release(ctx);
        }))
      return NODEHA_OK;
    if (release) release(ctx);
    return NODEHA_ERR_UNAVAILABLE;
  }
  static nodeha_status timer_start(nodeha_host* h, int64_t first_ms, int64_t period_ms, nodeha_task_fn fn, void* ctx,
                                   nodeha_release_fn release, uint64_t* out_id) {
    auto& self = of(h);
    if (!fn || first_ms < 0 || period_ms < 0 || self.stopping_) {
      if (release) release(ctx);
      return self.stopping_ ? NODEHA_ERR_UNAVAILABLE : NODEHA_ERR_INVALID;
    }
    uint64_t id = self.loop_->add_timer(
        std::chrono::milliseconds(first_ms), std::chrono::milliseconds(period_ms), [fn, ctx] { fn(ctx); },
        [release, ctx] {
          if (release) release(ctx);
        });
    if (id == 0) {
      if (release) release(ctx);
      return NODEHA_ERR_UNAVAILABLE;
    }
    if (out_id) *out_id = id;
    return NODEHA_OK;
  }
  static nodeha_status timer_cancel(nodeha_host* h, uint64_t id) {
    return of(h).loop_->cancel_timer(id) ? NODEHA_OK : NODEHA_ERR_NOT_FOUND;
  }

  static void* libvirt_connect(nodeha_host* h, nodeha_bytes_fn error, void* error_ctx) {
    auto& self = of(h);
    auto fail = [&](const std::string& why) -> void* {
      if (error) error(error_ctx, why.data(), why.size());
      return nullptr;
    };
    if (!self.services_.libvirt) return fail("libvirt is only available to plugins on agents");
    auto c = self.services_.libvirt->connect();
    if (!c) return fail(c.status().message());
    return c.value();
  }
  static nodeha_status libvirt_watch(nodeha_host* h, nodeha_libvirt_event_fn fn, void* ctx, nodeha_release_fn release,
                                     uint64_t* out_id) {
    auto& self = of(h);
    if (!fn || !self.services_.libvirt || self.stopping_) {
      if (release) release(ctx);
      return self.stopping_ ? NODEHA_ERR_UNAVAILABLE : !fn ? NODEHA_ERR_INVALID : NODEHA_ERR_NOT_FOUND;
    }
    uint64_t id = self.add_registration({Registration::kLibvirtWatch, 0, release, ctx});
    EventLoop* loop = self.loop_.get();
    uint64_t watch = self.services_.libvirt->watch([&self, loop, id, fn, ctx](nodeha_libvirt_event e, std::string_view uuid) {
      loop->post([&self, id, fn, ctx, e, uuid = std::string(uuid)] {
        if (self.live(id)) fn(ctx, e, nodeha_str{uuid.data(), uuid.size()});
      });
    });
    {
      std::lock_guard lock(self.mu_);
      self.registrations_[id].bus_id = watch;
    }
    if (out_id) *out_id = id;
    return NODEHA_OK;
  }
  static nodeha_status libvirt_unwatch(nodeha_host* h, uint64_t id) { return drop(h, id, Registration::kLibvirtWatch); }
};

const nodeha_host_api* PluginInstance::api() {
  static const nodeha_host_api table = {
      sizeof(nodeha_host_api), &Access::node_id,    &Access::role,        &Access::instance_name,
      &Access::prefix,         &Access::state_dir,  &Access::config_json, &Access::log,
      &Access::publish,        &Access::subscribe,  &Access::unsubscribe, &Access::request,
      &Access::respond,        &Access::kv_get,     &Access::kv_create,   &Access::kv_update,
      &Access::kv_put,         &Access::kv_delete,  &Access::kv_list,     &Access::kv_watch,
      &Access::kv_unwatch,     &Access::metric,     &Access::metric_add,  &Access::metric_set,
      &Access::metric_observe, &Access::metric_remove, &Access::post,     &Access::spawn,
      &Access::timer_start,    &Access::timer_cancel, &Access::libvirt_connect,
      &Access::request_async,  &Access::bus_status,  &Access::leadership,    &Access::mode,
      &Access::libvirt_watch,  &Access::libvirt_unwatch,
  };
  return &table;
}

PluginInstance::PluginInstance(Services& services, std::string name, std::shared_ptr<Library> library,
                               std::string config_json, std::string where)
    : services_(services),
      name_(std::move(name)),
      library_(std::move(library)),
      config_json_(std::move(config_json)),
      where_(std::move(where)),
      ctx_(std::make_unique<nodeha_host>(nodeha_host{this})) {
  state_dir_ = (std::filesystem::path(services_.state_dir) / "plugins" / name_).string();
}

PluginInstance::~PluginInstance() { stop(); }

uint64_t PluginInstance::add_registration(Registration r) {
  std::lock_guard lock(mu_);
  uint64_t id = next_id_++;
  registrations_[id] = r;
  return id;
}

bool PluginInstance::take_registration(uint64_t id, Registration::Kind kind, Registration* out) {
  std::lock_guard lock(mu_);
  auto it = registrations_.find(id);
  if (it == registrations_.end() || it->second.kind != kind) return false;
  *out = it->second;
  registrations_.erase(it);
  return true;
}

bool PluginInstance::live(uint64_t id) {
  std::lock_guard lock(mu_);
  return registrations_.count(id) != 0;
}

// Leaving twice is harmless.
void PluginInstance::leave(const Registration& r) {
  if (r.kind == Registration::kLibvirtWatch) {
    if (r.bus_id) services_.libvirt->unwatch(r.bus_id);
    return;
  }
  if (r.kind == Registration::kWatch) {
    services_.bus->kv_unwatch(r.bus_id);
    return;
  }
  if (r.bus_id) services_.bus->unsubscribe(r.bus_id);
  if (r.local_route && services_.local) services_.local->unserve(r.local_route);
}

void PluginInstance::release_later(nodeha_release_fn release, void* ctx) {
  if (!release) return;
  // After messages already queued for it (they are dropped: it is no longer live).
  if (!loop_ || !loop_->post([release, ctx] { release(ctx); })) release(ctx);
}

Status PluginInstance::create() {
  const nodeha_plugin& d = library_->descriptor();
  std::error_code ec;
  std::filesystem::create_directories(state_dir_, ec);
  loop_ = std::make_unique<EventLoop>("p:" + name_);
  stopping_ = false;  // made again after a stop (a controller that leads again)
  nodeha_error err{sizeof(nodeha_error), {}};
  self_ = d.create(api(), ctx_.get(), &err);
  if (!self_) {
    loop_->stop();
    return Status(NODEHA_ERR_INVALID, fmt::format("{}: plugin '{}': {}", where_, name_,
                                                  err.message[0] ? err.message : "refused its configuration"));
  }
  return Status::ok();
}

Status PluginInstance::start(nodeha_mode mode) {
  const nodeha_plugin& d = library_->descriptor();
  if (self_ && !running_ && mode != mode_) teardown(false);  // created (to check its config) for the other mode
  mode_ = mode;
  if (!self_)
    if (auto s = create(); !s) return s;
  nodeha_error err{sizeof(nodeha_error), {}};
  int rc = 0;
  loop_->run_sync([&] { rc = d.start(self_, &err); });
  if (rc != 0) {
    std::string why = err.message[0] ? err.message : "no reason given";
    teardown(false);  // what it registered before failing goes; stop is not called
    return Status(NODEHA_ERR_INTERNAL, fmt::format("plugin {} ({}): failed to start: {}", name_, where_, why));
  }
  running_ = true;
  return Status::ok();
}

void PluginInstance::stop() {
  if (!self_) return;
  teardown(running_);
}

void PluginInstance::teardown(bool call_stop) {
  const nodeha_plugin& d = library_->descriptor();
  // 1. No new messages: leave the bus and the local socket first, so that requests sent from
  //    now on fail fast (no responders, unknown subject) instead of waiting for an answer that
  //    will never come. What is already queued on the event thread still runs, before stop.
  std::vector<Registration> on_bus;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, r] : registrations_) on_bus.push_back(r);
  }
  for (const auto& r : on_bus) leave(r);
  // 2. From the end of stop on, nothing new is accepted. Set on the event thread, so that
  //    nothing the plugin runs there afterwards can slip work in; its timers go now.
  loop_->run_sync([&] {
    if (call_stop) d.stop(self_);
    stopping_ = true;
  });
  running_ = false;
  loop_->cancel_all_timers();
  // 3. Its registrations go; releases queue on the loop behind anything already queued.
  std::map<uint64_t, Registration> regs;
  {
    std::lock_guard lock(mu_);
    regs.swap(registrations_);
  }
  for (auto& [id, r] : regs) {
    leave(r);  // again, for anything it registered during stop
    release_later(r.release, r.ctx);
  }
  services_.workers->wait_owner(this);
  loop_->stop();  // cancels timers (running their releases) and drains the queue
  // Nothing of it can answer any more: local clients still waiting hear so now.
  if (services_.local) services_.local->abandon(this, fmt::format("plugin {} stopped before it answered", name_));
  if (self_) d.destroy(self_);
  self_ = nullptr;
  std::set<nodeha_metric*> series;
  {
    std::lock_guard lock(mu_);
    series.swap(metrics_);
  }
  for (auto* m : series) services_.metrics->remove(m);
}

}  // namespace nodeha::host
