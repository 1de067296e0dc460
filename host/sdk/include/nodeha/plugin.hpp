// Header-only C++ wrapper over the plugin ABI (plugin.h): a plugin is a small C++ class.
//
//   class Echo : public nodeha::Plugin {
//    public:
//     using Plugin::Plugin;
//     nodeha::Status start() override { ... host().subscribe(...) ... }
//   };
//   NODEHA_PLUGIN(Echo, "echo", "1.0.0", "answers requests", nodeha::kAnyRole, kKeys)
//
// Everything here is compiled into the plugin; only plain C crosses to the host. Exceptions
// thrown by plugin code are caught at the boundary, logged, and turned into errors.
#pragma once

#include <nodeha/plugin.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nodeha {

inline constexpr uint32_t kAgentRole = NODEHA_ROLE_BIT(NODEHA_ROLE_AGENT);
inline constexpr uint32_t kControllerRole = NODEHA_ROLE_BIT(NODEHA_ROLE_CONTROLLER);
inline constexpr uint32_t kAnyRole = kAgentRole | kControllerRole;
// Descriptor flags (NODEHA_PLUGIN_WITH_FLAGS).
inline constexpr uint32_t kServesFollowers = NODEHA_PLUGIN_FOLLOWER;

inline const char* status_name(nodeha_status s) {
  switch (s) {
    case NODEHA_OK: return "ok";
    case NODEHA_ERR_INVALID: return "invalid";
    case NODEHA_ERR_NOT_FOUND: return "not_found";
    case NODEHA_ERR_CONFLICT: return "conflict";
    case NODEHA_ERR_TIMEOUT: return "timeout";
    case NODEHA_ERR_NO_RESPONDERS: return "no_responders";
    case NODEHA_ERR_UNAVAILABLE: return "unavailable";
    case NODEHA_ERR_INTERNAL: return "internal";
  }
  return "unknown";
}

// An expected failure, as a value: a code and a message for a person.
class Status {
 public:
  Status() = default;
  Status(nodeha_status code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }
  bool is_ok() const { return code_ == NODEHA_OK; }
  explicit operator bool() const { return is_ok(); }
  nodeha_status code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  nodeha_status code_ = NODEHA_OK;
  std::string message_;
};

template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Status status) : status_(std::move(status)) {}  // NOLINT
  bool is_ok() const { return status_.is_ok(); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const { return status_; }
  const T& value() const { return value_; }
  T& value() { return value_; }
  const T* operator->() const { return &value_; }
  const T& operator*() const { return value_; }

 private:
  Status status_;
  T value_{};
};

struct Message {
  std::string subject;
  std::string reply;  // empty when no reply is expected
  std::string data;
};

struct KvEntry {
  std::string bucket;
  std::string key;
  std::string value;
  uint64_t revision = 0;
  bool deleted = false;
  int64_t created_unix_ns = 0;
};

using Millis = std::chrono::milliseconds;

// One labelled metric series. Cheap to copy; owned by the host.
class Metric {
 public:
  Metric() = default;
  Metric(const nodeha_host_api* api, nodeha_metric* m) : api_(api), m_(m) {}
  void inc(double v = 1) const { if (m_) api_->metric_add(m_, v); }
  void add(double v) const { if (m_) api_->metric_add(m_, v); }
  void set(double v) const { if (m_) api_->metric_set(m_, v); }
  void observe(double v) const { if (m_) api_->metric_observe(m_, v); }
  explicit operator bool() const { return m_ != nullptr; }
  nodeha_metric* raw() const { return m_; }

 private:
  const nodeha_host_api* api_ = nullptr;
  nodeha_metric* m_ = nullptr;
};

using Labels = std::vector<std::pair<std::string, std::string>>;

namespace detail {
inline std::string to_string(nodeha_str s) { return s.data ? std::string(s.data, s.size) : std::string(); }

template <class F>
void* box(F f) { return new std::function<void()>(std::move(f)); }

inline void run_task(void* ctx);
inline void release_task(void* ctx) { delete static_cast<std::function<void()>*>(ctx); }

using MsgFn = std::function<void(const Message&)>;
using KvFn = std::function<void(const KvEntry&)>;
inline void release_msg(void* ctx) { delete static_cast<MsgFn*>(ctx); }
inline void release_kv(void* ctx) { delete static_cast<KvFn*>(ctx); }

inline KvEntry to_entry(const nodeha_kv_entry* e) {
  return KvEntry{to_string(e->bucket), to_string(e->key), to_string(e->value), e->revision,
                 e->op == NODEHA_KV_DELETE, e->created_unix_ns};
}
inline void append_bytes(void* ctx, const char* data, size_t size) {
  static_cast<std::string*>(ctx)->append(data, size);
}
}  // namespace detail

// What the host gives a plugin instance. Thread-safe; see plugin.h for which thread calls what.
// A store (KV) that did not answer: nothing is known of the key, the call may be tried again (no
// JetStream quorum, NATS away, a controller that does not lead).
inline bool store_unreachable(nodeha_status s) {
  return s == NODEHA_ERR_TIMEOUT || s == NODEHA_ERR_UNAVAILABLE || s == NODEHA_ERR_NO_RESPONDERS;
}

class Host {
 public:
  Host(const nodeha_host_api* api, nodeha_host* h) : api_(api), h_(h) {
    auto text = detail::to_string(api_->config_json(h_));
    config_ = nlohmann::json::parse(text, nullptr, false);
    if (config_.is_discarded()) config_ = nlohmann::json::object();
  }

  std::string node_id() const { return detail::to_string(api_->node_id(h_)); }
  nodeha_role role() const { return api_->role(h_); }
  bool is_agent() const { return role() == NODEHA_ROLE_AGENT; }
  std::string instance_name() const { return detail::to_string(api_->instance_name(h_)); }
  std::string prefix() const { return detail::to_string(api_->subject_prefix(h_)); }
  std::string state_dir() const { return detail::to_string(api_->state_dir(h_)); }
  // "<prefix>.<suffix>"
  std::string subject(std::string_view suffix) const { return prefix() + "." + std::string(suffix); }
  // The validated config table: every declared key present; durations in milliseconds.
  const nlohmann::json& config() const { return config_; }
  Millis duration(const char* key) const { return Millis(config_.at(key).get<int64_t>()); }

  void log(nodeha_log_level level, std::string_view text) const {
    api_->log(h_, level, text.data(), text.size());
  }
  void debug(std::string_view t) const { log(NODEHA_LOG_DEBUG, t); }
  void info(std::string_view t) const { log(NODEHA_LOG_INFO, t); }
  void warn(std::string_view t) const { log(NODEHA_LOG_WARN, t); }
  void error(std::string_view t) const { log(NODEHA_LOG_ERROR, t); }

  Status publish(const std::string& subject, std::string_view data) const {
    return wrap(api_->publish(h_, subject.c_str(), data.data(), data.size()), "publish " + subject);
  }
  // Returns the subscription id (0 on failure, logged).
  Result<uint64_t> subscribe(const std::string& subject, detail::MsgFn fn,
                             const std::string& queue = {}, uint32_t flags = 0) const {
    uint64_t id = 0;
    auto* box = new detail::MsgFn(std::move(fn));
    auto s = api_->subscribe(h_, subject.c_str(), queue.empty() ? nullptr : queue.c_str(), flags,
                             &Host::on_msg, box, &detail::release_msg, &id);
    if (s != NODEHA_OK) return wrap(s, "subscribe " + subject);
    return id;
  }
  Status unsubscribe(uint64_t id) const { return wrap(api_->unsubscribe(h_, id), "unsubscribe"); }
  // Blocking: call from a worker (spawn), not from the event thread for a subject this plugin
  // serves.
  Result<std::string> request(const std::string& subject, std::string_view data, Millis timeout) const {
    std::string out;
    auto s = api_->request(h_, subject.c_str(), data.data(), data.size(), timeout.count(),
                           &detail::append_bytes, &out);
    if (s != NODEHA_OK) return wrap(s, "request " + subject);
    return out;
  }
  // Non-blocking: `fn` gets the reply (or the failure) on the event thread. Needs a 1.1 host.
  Status request_async(const std::string& subject, std::string_view data, Millis timeout,
                       std::function<void(Result<std::string>)> fn) const {
    if (api_->struct_size < offsetof(nodeha_host_api, request_async) + sizeof(api_->request_async))
      return Status(NODEHA_ERR_INTERNAL, "request_async needs a host with plugin interface 1.1 or later");
    using Fn = std::function<void(Result<std::string>)>;
    auto* box = new Fn(std::move(fn));
    auto s = api_->request_async(
        h_, subject.c_str(), data.data(), data.size(), timeout.count(),
        [](void* ctx, nodeha_status st, const char* d, size_t n) {
          auto& f = *static_cast<Fn*>(ctx);
          try {
            if (st == NODEHA_OK) f(std::string(d ? d : "", n));
            else f(Status(st, std::string("request: ") + status_name(st)));
          } catch (...) {
            std::fprintf(stderr, "nodeha plugin: reply handler threw\n");
          }
        },
        box, [](void* ctx) { delete static_cast<Fn*>(ctx); });
    return wrap(s, "request " + subject);
  }
  // The host's NATS connection (1.3): OK when connected and, with a probe timeout, when the
  // server answered a round trip in time; `connects` counts connections made since the host
  // started. A probe blocks: call it from a worker (spawn).
  Status bus_status(Millis probe_timeout = Millis(0), uint64_t* connects = nullptr) const {
    if (api_->struct_size < offsetof(nodeha_host_api, bus_status) + sizeof(api_->bus_status))
      return Status(NODEHA_ERR_INTERNAL, "bus_status needs a host with plugin interface 1.3 or later");
    return wrap(api_->bus_status(h_, probe_timeout.count(), connects), "bus status");
  }
  // This controller's lease epoch while it leads (1.4); empty when it does not lead, on an agent,
  // or on an older host.
  std::optional<uint64_t> epoch() const {
    if (api_->struct_size < offsetof(nodeha_host_api, leadership) + sizeof(api_->leadership)) return std::nullopt;
    uint64_t e = 0;
    if (api_->leadership(h_, &e) != NODEHA_OK) return std::nullopt;
    return e;
  }
  // Whether this is a following controller's instance (1.5, NODEHA_PLUGIN_FOLLOWER): it may
  // only read and answer; the leader's instance does the work. False on an older host.
  bool following() const {
    if (api_->struct_size < offsetof(nodeha_host_api, mode) + sizeof(api_->mode)) return false;
    return api_->mode(h_) == NODEHA_MODE_FOLLOWER;
  }
  Status respond(const std::string& reply, std::string_view data) const {
    if (reply.empty()) return Status::ok();
    return wrap(api_->respond(h_, reply.c_str(), data.data(), data.size()), "respond");
  }

  Result<KvEntry> kv_get(const std::string& bucket, const std::string& key) const {
    KvEntry entry;
    auto s = api_->kv_get(h_, bucket.c_str(), key.c_str(), &Host::store_entry, &entry);
    if (s != NODEHA_OK) return wrap_kv(s, "kv get " + bucket + "/" + key);
    return entry;
  }
  Result<uint64_t> kv_create(const std::string& bucket, const std::string& key, std::string_view v) const {
    uint64_t rev = 0;
    auto s = api_->kv_create(h_, bucket.c_str(), key.c_str(), v.data(), v.size(), &rev);
    if (s != NODEHA_OK) return wrap_kv(s, "kv create " + bucket + "/" + key);
    return rev;
  }
  Result<uint64_t> kv_update(const std::string& bucket, const std::string& key, std::string_view v,
                             uint64_t expected_revision) const {
    uint64_t rev = 0;
    auto s = api_->kv_update(h_, bucket.c_str(), key.c_str(), v.data(), v.size(), expected_revision, &rev);
    if (s != NODEHA_OK) return wrap_kv(s, "kv update " + bucket + "/" + key);
    return rev;
  }
  Result<uint64_t> kv_put(const std::string& bucket, const std::string& key, std::string_view v) const {
    uint64_t rev = 0;
    auto s = api_->kv_put(h_, bucket.c_str(), key.c_str(), v.data(), v.size(), &rev);
    if (s != NODEHA_OK) return wrap_kv(s, "kv put " + bucket + "/" + key);
    return rev;
  }
  Status kv_delete(const std::string& bucket, const std::string& key) const {
    return wrap_kv(api_->kv_delete(h_, bucket.c_str(), key.c_str()), "kv delete " + bucket + "/" + key);
  }
  Result<std::vector<KvEntry>> kv_list(const std::string& bucket) const {
    std::vector<KvEntry> out;
    auto s = api_->kv_list(h_, bucket.c_str(), &Host::push_entry, &out);
    if (s != NODEHA_OK) return wrap_kv(s, "kv list " + bucket);
    return out;
  }
  Result<uint64_t> kv_watch(const std::string& bucket, const std::string& keys, detail::KvFn fn) const {
    uint64_t id = 0;
    auto* box = new detail::KvFn(std::move(fn));
    auto s = api_->kv_watch(h_, bucket.c_str(), keys.c_str(), &Host::on_kv, box, &detail::release_kv, &id);
    if (s != NODEHA_OK) return wrap(s, "kv watch " + bucket);
    return id;
  }
  Status kv_unwatch(uint64_t id) const { return wrap(api_->kv_unwatch(h_, id), "kv unwatch"); }

  Metric counter(const std::string& name, const std::string& help, const Labels& labels = {}) const {
    return metric(NODEHA_METRIC_COUNTER, name, help, labels, {});
  }
  Metric gauge(const std::string& name, const std::string& help, const Labels& labels = {}) const {
    return metric(NODEHA_METRIC_GAUGE, name, help, labels, {});
  }
  Metric histogram(const std::string& name, const std::string& help, const std::vector<double>& buckets,
                   const Labels& labels = {}) const {
    return metric(NODEHA_METRIC_HISTOGRAM, name, help, labels, buckets);
  }
  void remove(const Metric& m) const { if (m) api_->metric_remove(h_, m.raw()); }

  Status post(std::function<void()> fn) const {
    void* ctx = detail::box(std::move(fn));
    return wrap(api_->post(h_, &detail::run_task, ctx, &detail::release_task), "post");
  }
  Status spawn(std::function<void()> fn) const {
    void* ctx = detail::box(std::move(fn));
    return wrap(api_->spawn(h_, &detail::run_task, ctx, &detail::release_task), "spawn");
  }
  // Fires on the event thread after `first`, then every `period` (zero: once). Returns its id.
  Result<uint64_t> timer(Millis first, Millis period, std::function<void()> fn) const {
    uint64_t id = 0;
    void* ctx = detail::box(std::move(fn));
    auto s = api_->timer_start(h_, first.count(), period.count(), &detail::run_task, ctx,
                               &detail::release_task, &id);
    if (s != NODEHA_OK) return wrap(s, "timer");
    return id;
  }
  Status cancel_timer(uint64_t id) const { return wrap(api_->timer_cancel(h_, id), "cancel timer"); }

  // A new libvirt connection reference (virConnectPtr as void*); release with virConnectClose.
  Result<void*> libvirt_connect() const {
    std::string err;
    void* c = api_->libvirt_connect(h_, &detail::append_bytes, &err);
    if (!c) return Status(NODEHA_ERR_UNAVAILABLE, err.empty() ? "libvirt unavailable" : err);
    return c;
  }
  // libvirt's domain lifecycle events on this agent (1.7), on the event thread: first whether they
  // flow now, then every one (plugin.h `libvirt_watch`). Returns the watch id; an error on a
  // controller or an older host: then poll.
  using LibvirtEventFn = std::function<void(nodeha_libvirt_event, std::string_view uuid)>;
  Result<uint64_t> libvirt_watch(LibvirtEventFn fn) const {
    if (api_->struct_size < offsetof(nodeha_host_api, libvirt_watch) + sizeof(api_->libvirt_watch))
      return Status(NODEHA_ERR_INTERNAL, "libvirt_watch needs a host with plugin interface 1.7 or later");
    uint64_t id = 0;
    auto s = api_->libvirt_watch(
        h_,
        [](void* ctx, nodeha_libvirt_event e, nodeha_str uuid) {
          try {
            (*static_cast<LibvirtEventFn*>(ctx))(e, std::string_view(uuid.data ? uuid.data : "", uuid.size));
          } catch (...) {
            std::fprintf(stderr, "nodeha plugin: libvirt event handler threw\n");
          }
        },
        new LibvirtEventFn(std::move(fn)), [](void* ctx) { delete static_cast<LibvirtEventFn*>(ctx); }, &id);
    if (s != NODEHA_OK) return wrap(s, "libvirt watch");
    return id;
  }
  Status libvirt_unwatch(uint64_t id) const {
    if (api_->struct_size < offsetof(nodeha_host_api, libvirt_unwatch) + sizeof(api_->libvirt_unwatch))
      return Status(NODEHA_ERR_NOT_FOUND, "libvirt unwatch: no such watch");
    return wrap(api_->libvirt_unwatch(h_, id), "libvirt unwatch");
  }

  const nodeha_host_api* api() const { return api_; }
  nodeha_host* raw() const { return h_; }

 private:
  Status wrap(nodeha_status s, const std::string& what) const {
    if (s == NODEHA_OK) return Status::ok();
    return Status(s, what + ": " + status_name(s));
  }
  // Only the code crosses the boundary: a store that did not answer is said plainly. A controller
  // that does not lead has its writes refused by its own host; else, on a cluster, most often
  // there is no JetStream quorum.
  Status wrap_kv(nodeha_status s, const std::string& what) const {
    if (!store_unreachable(s)) return wrap(s, what);
    bool has_leadership = api_->struct_size >= offsetof(nodeha_host_api, leadership) + sizeof(api_->leadership);
    if (s == NODEHA_ERR_UNAVAILABLE && has_leadership && api_->leadership(h_, nullptr) == NODEHA_ERR_UNAVAILABLE)
      return Status(s, what + ": " + status_name(s) + " (this controller does not lead: its host refuses its writes)");
    return Status(s, what + ": " + status_name(s) + " (JetStream did not answer: is a majority of the NATS servers up?)");
  }
  Metric metric(nodeha_metric_kind kind, const std::string& name, const std::string& help,
                const Labels& labels, const std::vector<double>& buckets) const {
    std::vector<nodeha_label> raw;
    raw.reserve(labels.size());
    for (const auto& [k, v] : labels) raw.push_back({k.c_str(), v.c_str()});
    return Metric(api_, api_->metric(h_, kind, name.c_str(), help.c_str(), raw.data(), raw.size(),
                                     buckets.data(), buckets.size()));
  }
  static void on_msg(void* ctx, const nodeha_msg* m) {
    Message msg{detail::to_string(m->subject), detail::to_string(m->reply), detail::to_string(m->data)};
    try {
      (*static_cast<detail::MsgFn*>(ctx))(msg);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "nodeha plugin: handler for %s threw: %s\n", msg.subject.c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "nodeha plugin: handler for %s threw\n", msg.subject.c_str());
    }
  }
  static void on_kv(void* ctx, const nodeha_kv_entry* e) {
    try {
      (*static_cast<detail::KvFn*>(ctx))(detail::to_entry(e));
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "nodeha plugin: kv watch handler threw: %s\n", ex.what());
    } catch (...) {
      std::fprintf(stderr, "nodeha plugin: kv watch handler threw\n");
    }
  }
  static void store_entry(void* ctx, const nodeha_kv_entry* e) { *static_cast<KvEntry*>(ctx) = detail::to_entry(e); }
  static void push_entry(void* ctx, const nodeha_kv_entry* e) {
    static_cast<std::vector<KvEntry>*>(ctx)->push_back(detail::to_entry(e));
  }

  const nodeha_host_api* api_;
  nodeha_host* h_;
  nlohmann::json config_;
};

namespace detail {
inline void run_task(void* ctx) {
  try {
    (*static_cast<std::function<void()>*>(ctx))();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nodeha plugin: task threw: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "nodeha plugin: task threw\n");
  }
}
}  // namespace detail

// Base class of a plugin written in C++. The constructor may read config; start subscribes.
class Plugin {
 public:
  explicit Plugin(Host host) : host_(std::move(host)) {}
  virtual ~Plugin() = default;
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  // On the event thread. Return an error to refuse to start.
  virtual Status start() = 0;
  // On the event thread. Stop own activity; the host drops subscriptions and timers afterwards.
  virtual void stop() {}

  const Host& host() const { return host_; }

 private:
  Host host_;
};

// Thrown from a plugin constructor to refuse a config with a message for a person.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void set_error(nodeha_error* err, const std::string& msg) {
  if (!err) return;
  std::snprintf(err->message, sizeof err->message, "%s", msg.c_str());
}

template <class P>
struct Trampolines {
  static void* create(const nodeha_host_api* api, nodeha_host* h, nodeha_error* err) {
    try {
      return new P(Host(api, h));
    } catch (const std::exception& e) {
      set_error(err, e.what());
    } catch (...) {
      set_error(err, "unknown exception in constructor");
    }
    return nullptr;
  }
  static int start(void* self, nodeha_error* err) {
    try {
      Status s = static_cast<P*>(self)->start();
      if (s.is_ok()) return 0;
      set_error(err, s.message());
    } catch (const std::exception& e) {
      set_error(err, e.what());
    } catch (...) {
      set_error(err, "unknown exception in start");
    }
    return 1;
  }
  static void stop(void* self) {
    try {
      static_cast<P*>(self)->stop();
    } catch (...) {
    }
  }
  static void destroy(void* self) { delete static_cast<P*>(self); }
};
}  // namespace detail

namespace detail {
template <size_t N>
constexpr const nodeha_config_key* keys_data(const nodeha_config_key (&k)[N]) { return k; }
template <size_t N>
constexpr size_t keys_size(const nodeha_config_key (&)[N]) { return N; }
constexpr const nodeha_config_key* keys_data(std::nullptr_t) { return nullptr; }
constexpr size_t keys_size(std::nullptr_t) { return 0; }
}  // namespace detail

// Builds a config key declaration.
inline nodeha_config_key key(const char* name, nodeha_config_type type, const char* default_toml,
                             const char* unit, const char* description) {
  return nodeha_config_key{sizeof(nodeha_config_key), name, type, default_toml, unit, description};
}

}  // namespace nodeha

// Defines the plugin's descriptor and its exported entry symbol. KEYS is a static array of
// nodeha_config_key (or use NODEHA_NO_KEYS).
#define NODEHA_PLUGIN(CLASS, NAME, VERSION, DESCRIPTION, ROLES, KEYS) \
  NODEHA_PLUGIN_WITH_FLAGS(CLASS, NAME, VERSION, DESCRIPTION, ROLES, KEYS, 0u)

// The same with descriptor flags (1.5), e.g. nodeha::kServesFollowers.
#define NODEHA_PLUGIN_WITH_FLAGS(CLASS, NAME, VERSION, DESCRIPTION, ROLES, KEYS, FLAGS)              \
  extern "C" NODEHA_EXPORT const nodeha_plugin* nodeha_plugin_entry(void) {                        \
    static const nodeha_plugin descriptor = {                                                      \
        sizeof(nodeha_plugin), NODEHA_PLUGIN_API_MAJOR, NODEHA_PLUGIN_API_MINOR, NAME, VERSION,    \
        DESCRIPTION, ROLES, ::nodeha::detail::keys_data(KEYS), ::nodeha::detail::keys_size(KEYS),  \
        &::nodeha::detail::Trampolines<CLASS>::create, &::nodeha::detail::Trampolines<CLASS>::start, \
        &::nodeha::detail::Trampolines<CLASS>::stop, &::nodeha::detail::Trampolines<CLASS>::destroy, \
        FLAGS};                                                                                    \
    return &descriptor;                                                                            \
  }

#define NODEHA_NO_KEYS nullptr
