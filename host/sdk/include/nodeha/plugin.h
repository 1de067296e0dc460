/*
 * nodeha plugin ABI: the only thing that crosses the boundary between nodeha-host and a plugin.
 *
 * Plain C so that a plugin built by another compiler still loads. Rules:
 *  - every struct starts with `struct_size`; a newer side reads only the fields the older side has;
 *  - a minor version grows only by appending fields; a different major is refused at load;
 *  - no exception, C++ type or allocator crosses: strings are (pointer, length) views that are
 *    valid only for the duration of the call; data the host returns is handed to a sink callback
 *    that copies it;
 *  - one exported entry symbol, `nodeha_plugin_entry`, returning a static descriptor whose first
 *    fields are its size and the interface version it was built against.
 *
 * Thread contract (see docs/plugins.md):
 *  - create and destroy are called on the host's control thread; start and stop on the
 *    instance's event thread, so they never race its callbacks;
 *  - every callback of one plugin instance (messages, timers, KV watches, posted work) runs on that
 *    instance's own event thread, one at a time, never on a NATS library thread;
 *  - work handed to `spawn` runs on the host's shared worker pool, concurrently with the event
 *    thread; use it for anything that blocks (libvirt, synchronous requests);
 *  - every function in nodeha_host_api may be called from any thread, including from workers.
 */
#ifndef NODEHA_PLUGIN_H
#define NODEHA_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NODEHA_PLUGIN_API_MAJOR 1
#define NODEHA_PLUGIN_API_MINOR 7
#define NODEHA_PLUGIN_ENTRY_SYMBOL "nodeha_plugin_entry"

#if defined(__GNUC__)
#define NODEHA_EXPORT __attribute__((visibility("default")))
#else
#define NODEHA_EXPORT
#endif

/* A borrowed string: not NUL-terminated unless said so; valid for the duration of the call. */
typedef struct nodeha_str {
  const char* data;
  size_t size;
} nodeha_str;

typedef enum nodeha_status {
  NODEHA_OK = 0,
  NODEHA_ERR_INVALID = 1,     /* bad argument: empty subject or key, ... */
  NODEHA_ERR_NOT_FOUND = 2,   /* key absent or deleted */
  NODEHA_ERR_CONFLICT = 3,    /* create of an existing key, update with a stale revision */
  NODEHA_ERR_TIMEOUT = 4,     /* request or operation timed out */
  NODEHA_ERR_NO_RESPONDERS = 5,
  NODEHA_ERR_UNAVAILABLE = 6, /* not connected to NATS (or libvirt), or the instance is stopping;
                                 retry later. Publishes are buffered while reconnecting instead. */
  NODEHA_ERR_INTERNAL = 7
} nodeha_status;

typedef enum nodeha_role { NODEHA_ROLE_AGENT = 1, NODEHA_ROLE_CONTROLLER = 2 } nodeha_role;

/* (1.5) What an instance was started for; fixed for its life. */
typedef enum nodeha_mode {
  NODEHA_MODE_ACTIVE = 1,  /* an agent's, or a leading controller's: it does the plugin's work */
  NODEHA_MODE_FOLLOWER = 2 /* a following controller's (NODEHA_PLUGIN_FOLLOWER): it reads and answers */
} nodeha_mode;

typedef enum nodeha_log_level {
  NODEHA_LOG_DEBUG = 1,
  NODEHA_LOG_INFO = 2,
  NODEHA_LOG_WARN = 3,
  NODEHA_LOG_ERROR = 4
} nodeha_log_level;

typedef enum nodeha_metric_kind {
  NODEHA_METRIC_COUNTER = 1,
  NODEHA_METRIC_GAUGE = 2,
  NODEHA_METRIC_HISTOGRAM = 3
} nodeha_metric_kind;

/* Types a plugin may declare for its config keys; the host validates before the plugin sees them. */
typedef enum nodeha_config_type {
  NODEHA_CONFIG_STRING = 1,
  NODEHA_CONFIG_INTEGER = 2,
  NODEHA_CONFIG_FLOAT = 3,    /* integers are accepted too */
  NODEHA_CONFIG_BOOLEAN = 4,
  NODEHA_CONFIG_DURATION = 5, /* a string like "500ms", "15s", "2m", "1h"; handed over in ms */
  NODEHA_CONFIG_STRING_ARRAY = 6,
  NODEHA_CONFIG_TABLE_ARRAY = 7, /* array of tables, handed over as JSON; the plugin checks it */
  NODEHA_CONFIG_TABLE = 8        /* a table, handed over as JSON; the plugin checks it */
} nodeha_config_type;

/* One declared config key. `default_toml` is a TOML value literal ("\"15s\"", "3", "true",
 * "[]"), or NULL when the key is required. */
typedef struct nodeha_config_key {
  size_t struct_size;
  const char* name;
  nodeha_config_type type;
  const char* default_toml;
  const char* unit;        /* for people: "seconds", "MiB", ... may be NULL */
  const char* description; /* one line */
} nodeha_config_key;

/* A message delivered to a subscription handler. `reply` is empty when no reply is expected.
 * Reply with nodeha_host_api.respond(reply, ...): the reply token is transport-neutral (a NATS
 * inbox or the local socket's), may be copied and answered later from any thread. */
typedef struct nodeha_msg {
  size_t struct_size;
  nodeha_str subject;
  nodeha_str reply;
  nodeha_str data;
} nodeha_msg;

typedef enum nodeha_kv_op { NODEHA_KV_PUT = 1, NODEHA_KV_DELETE = 2 } nodeha_kv_op;

typedef struct nodeha_kv_entry {
  size_t struct_size;
  nodeha_str bucket;
  nodeha_str key;
  nodeha_str value; /* empty for deletes */
  uint64_t revision;
  nodeha_kv_op op;
  int64_t created_unix_ns;
} nodeha_kv_entry;

typedef struct nodeha_label {
  const char* name;
  const char* value;
} nodeha_label;

typedef struct nodeha_host nodeha_host;     /* the host's context for one plugin instance */
typedef struct nodeha_metric nodeha_metric; /* one labelled series, owned by the host */

typedef void (*nodeha_msg_fn)(void* ctx, const nodeha_msg* msg);
typedef void (*nodeha_kv_fn)(void* ctx, const nodeha_kv_entry* entry);
typedef void (*nodeha_bytes_fn)(void* ctx, const char* data, size_t size);
typedef void (*nodeha_task_fn)(void* ctx);
/* (1.7) What an agent's libvirt connection tells a libvirt watch. */
typedef enum nodeha_libvirt_event {
  /* a domain was defined, undefined, started, stopped, suspended, resumed or crashed (libvirt's
   * lifecycle event); `uuid` names it */
  NODEHA_LIBVIRT_DOMAIN_CHANGED = 1,
  /* no events come now: not connected yet, the connection was lost, or its driver has none.
   * Poll until NODEHA_LIBVIRT_EVENTS_FLOW */
  NODEHA_LIBVIRT_EVENTS_LOST = 2,
  /* events come, on a connection opened since: what changed before it is not told */
  NODEHA_LIBVIRT_EVENTS_FLOW = 3
} nodeha_libvirt_event;
typedef void (*nodeha_libvirt_event_fn)(void* ctx, nodeha_libvirt_event event, nodeha_str uuid);
/* The outcome of an asynchronous request: NODEHA_OK with the reply body, or NODEHA_ERR_TIMEOUT,
 * NODEHA_ERR_NO_RESPONDERS, NODEHA_ERR_UNAVAILABLE with no data. */
typedef void (*nodeha_reply_fn)(void* ctx, nodeha_status status, const char* data, size_t size);
/* Called exactly once, when the host will never again call the function it was registered with:
 * after unsubscribe, unwatch, cancel, once a one-shot timer, posted or spawned task has run, when
 * the instance stops, and also when the registering call itself failed. May be NULL. Runs on the
 * event thread (on the worker for spawned tasks; on the calling or control thread when the call
 * failed or the instance stopped). */
typedef void (*nodeha_release_fn)(void* ctx);

/* Subscription flags. */
#define NODEHA_SUB_LOCAL 0x1u /* also serve this subject on the node-local socket (`nodeha local`) */
/* (1.2) serve it on the node-local socket only, never over NATS: for actions only the node's own
 * administrator may ask for (`nodeha local drain`), which every agent would otherwise answer.
 * Where there is no socket (controllers) such a subscription receives nothing. */
#define NODEHA_SUB_LOCAL_ONLY 0x2u
/* (1.6) many small messages (heartbeats at 10,000 nodes): the host takes them from the NATS
 * library in batches, every 20 ms, and runs the callback for each of a batch in a row on the event
 * thread, with no thread woken per message. A message waits up to 20 ms. NATS only (no local
 * socket); an older host ignores the flag and delivers one by one. */
#define NODEHA_SUB_BATCH 0x4u

/* Services the host gives one plugin instance. Every function is thread-safe. */
typedef struct nodeha_host_api {
  size_t struct_size;

  /* identity and configuration */
  nodeha_str (*node_id)(nodeha_host* h);
  nodeha_role (*role)(nodeha_host* h);
  nodeha_str (*instance_name)(nodeha_host* h);
  nodeha_str (*subject_prefix)(nodeha_host* h); /* "nodeha" unless configured */
  nodeha_str (*state_dir)(nodeha_host* h);      /* a directory this plugin may write under */
  /* The instance's validated config table as a JSON object: every declared key present, defaults
   * filled, durations as integer milliseconds. */
  nodeha_str (*config_json)(nodeha_host* h);

  void (*log)(nodeha_host* h, nodeha_log_level level, const char* text, size_t size);

  /* bus: core NATS; subjects are NUL-terminated */
  nodeha_status (*publish)(nodeha_host* h, const char* subject, const char* data, size_t size);
  nodeha_status (*subscribe)(nodeha_host* h, const char* subject, const char* queue_group,
                             uint32_t flags, nodeha_msg_fn fn, void* ctx,
                             nodeha_release_fn release, uint64_t* out_id);
  nodeha_status (*unsubscribe)(nodeha_host* h, uint64_t id);
  /* Blocks up to timeout_ms; the reply body goes to `sink`. Do not call it on the event thread
   * for a subject this same plugin serves: call it from a worker (spawn). */
  nodeha_status (*request)(nodeha_host* h, const char* subject, const char* data, size_t size,
                           int64_t timeout_ms, nodeha_bytes_fn sink, void* sink_ctx);
  nodeha_status (*respond)(nodeha_host* h, const char* reply, const char* data, size_t size);

  /* JetStream key-value; buckets are created on first use with the host's settings
   * ([nats] kv_replicas, kv_history); bucket names are not prefixed */
  nodeha_status (*kv_get)(nodeha_host* h, const char* bucket, const char* key, nodeha_kv_fn fn,
                          void* ctx);
  nodeha_status (*kv_create)(nodeha_host* h, const char* bucket, const char* key,
                             const char* data, size_t size, uint64_t* out_revision);
  nodeha_status (*kv_update)(nodeha_host* h, const char* bucket, const char* key,
                             const char* data, size_t size, uint64_t expected_revision,
                             uint64_t* out_revision);
  nodeha_status (*kv_put)(nodeha_host* h, const char* bucket, const char* key, const char* data,
                          size_t size, uint64_t* out_revision);
  nodeha_status (*kv_delete)(nodeha_host* h, const char* bucket, const char* key);
  /* Every current entry (deletes left out), one call of `fn` each, on the calling thread. */
  nodeha_status (*kv_list)(nodeha_host* h, const char* bucket, nodeha_kv_fn fn, void* ctx);
  /* `keys` is a key or a pattern (">" for all). Current values are delivered first, then every
   * change, on the event thread. */
  nodeha_status (*kv_watch)(nodeha_host* h, const char* bucket, const char* keys,
                            nodeha_kv_fn fn, void* ctx, nodeha_release_fn release,
                            uint64_t* out_id);
  nodeha_status (*kv_unwatch)(nodeha_host* h, uint64_t id);

  /* metrics: returns the series for these label values (the family is created on first use;
   * the same name with another kind or label names fails with NULL). */
  nodeha_metric* (*metric)(nodeha_host* h, nodeha_metric_kind kind, const char* name,
                           const char* help, const nodeha_label* labels, size_t label_count,
                           const double* buckets, size_t bucket_count);
  void (*metric_add)(nodeha_metric* m, double value);     /* counters and gauges */
  void (*metric_set)(nodeha_metric* m, double value);     /* gauges */
  void (*metric_observe)(nodeha_metric* m, double value); /* histograms */
  void (*metric_remove)(nodeha_host* h, nodeha_metric* m); /* the series disappears */

  /* execution */
  /* to the event thread */
  nodeha_status (*post)(nodeha_host* h, nodeha_task_fn fn, void* ctx, nodeha_release_fn release);
  /* to a worker; the instance's stop waits for its workers to return */
  nodeha_status (*spawn)(nodeha_host* h, nodeha_task_fn fn, void* ctx, nodeha_release_fn release);
  /* Fires on the event thread after first_ms, then every period_ms (0: once). */
  nodeha_status (*timer_start)(nodeha_host* h, int64_t first_ms, int64_t period_ms,
                               nodeha_task_fn fn, void* ctx, nodeha_release_fn release,
                               uint64_t* out_id);
  nodeha_status (*timer_cancel)(nodeha_host* h, uint64_t id);

  /* libvirt (agents): a new reference (virConnectPtr) the caller releases with
   * virConnectClose; opened lazily, reopened when libvirtd restarts; NULL with the reason in
   * `error` when it cannot be opened. */
  void* (*libvirt_connect)(nodeha_host* h, nodeha_bytes_fn error, void* error_ctx);

  /* --- 1.1 --- check struct_size before use */
  /* Sends a request and returns at once; `fn` runs once on the event thread with the reply or
   * the failure (after at most timeout_ms), then `release`. Safe on the event thread, for any
   * subject. Returns non-OK (and releases) when the request could not be sent. */
  nodeha_status (*request_async)(nodeha_host* h, const char* subject, const char* data, size_t size,
                                 int64_t timeout_ms, nodeha_reply_fn fn, void* ctx,
                                 nodeha_release_fn release);

  /* --- 1.3 --- check struct_size before use */
  /* The host's NATS connection, so that a plugin can tell its own trouble from others' silence.
   * NODEHA_OK when connected and, if probe_timeout_ms > 0, the server answered a round trip
   * (a flush) within it; NODEHA_ERR_UNAVAILABLE when disconnected, NODEHA_ERR_TIMEOUT when the
   * round trip went unanswered. `out_connects` (may be NULL) gets how many times the host has
   * connected since it started: a change means the connection was lost and made again in
   * between. Blocks up to probe_timeout_ms: probe from a worker (spawn), not the event thread. */
  nodeha_status (*bus_status)(nodeha_host* h, int64_t probe_timeout_ms, uint64_t* out_connects);

  /* --- 1.4 --- check struct_size before use */
  /* Controllers: NODEHA_OK while this controller leads and its lease time is not up, with the
   * lease's epoch (it grows with every new leader: a fencing token for records written under
   * it); NODEHA_ERR_UNAVAILABLE when it does not lead (its publishes, requests and KV writes are
   * refused then). Agents: NODEHA_ERR_NOT_FOUND. */
  nodeha_status (*leadership)(nodeha_host* h, uint64_t* out_epoch);

  /* --- 1.5 --- check struct_size before use */
  /* NODEHA_MODE_FOLLOWER for an instance a following controller runs (only plugins whose
   * descriptor has NODEHA_PLUGIN_FOLLOWER get one): it may subscribe, respond, read and watch
   * KV, but its publishes, requests and KV writes are always refused UNAVAILABLE, and the host
   * stops it before this controller leads (then the leader's instance starts, a new object).
   * NODEHA_MODE_ACTIVE otherwise. Known from create on. */
  nodeha_mode (*mode)(nodeha_host* h);

  /* --- 1.7 --- check struct_size before use */
  /* Agents: libvirt's domain lifecycle events, on the event thread. `fn` runs first with
   * NODEHA_LIBVIRT_EVENTS_FLOW or _LOST (whether events come now), then with every event. The
   * host registers for events on each connection libvirt_connect opens (it does not connect by
   * itself): after a LOST, a libvirt_connect that reopens the connection brings FLOW back.
   * NODEHA_ERR_NOT_FOUND on controllers. */
  nodeha_status (*libvirt_watch)(nodeha_host* h, nodeha_libvirt_event_fn fn, void* ctx, nodeha_release_fn release,
                                 uint64_t* out_id);
  nodeha_status (*libvirt_unwatch)(nodeha_host* h, uint64_t id);
} nodeha_host_api;

/* What a plugin hands back when something fails: its message, copied by the host. */
typedef struct nodeha_error {
  size_t struct_size;
  char message[512];
} nodeha_error;

/* The plugin's descriptor. Static; returned by the entry symbol. */
typedef struct nodeha_plugin {
  size_t struct_size;
  uint32_t api_major;
  uint32_t api_minor;
  const char* name;        /* the plugin type, e.g. "heartbeat"; default instance name */
  const char* version;     /* the plugin's own version */
  const char* description; /* one line */
  uint32_t roles;          /* bit set of (1 << nodeha_role) it can serve */
  const nodeha_config_key* config_keys;
  size_t config_key_count;

  /* Builds an instance; may read config and register nothing yet. NULL with `error` filled on
   * failure. */
  void* (*create)(const nodeha_host_api* api, nodeha_host* host, nodeha_error* error);
  /* Subscribes, starts timers. Non-zero with `error` filled on failure; the host then calls
   * destroy without stop. */
  int (*start)(void* self, nodeha_error* error);
  /* Stops its own activity; the host then drops its subscriptions, watches and timers, waits
   * for its workers and drains its event thread. */
  void (*stop)(void* self);
  void (*destroy)(void* self);

  /* --- 1.5 --- read by the host only when struct_size covers it */
  uint32_t flags; /* NODEHA_PLUGIN_* */
} nodeha_plugin;

/* (1.5) Descriptor flag: a following controller runs this plugin too, as a follower instance
 * (nodeha_host_api.mode), to answer read-only commands from what it reads. Without it (and in
 * plugins older than 1.5) a following controller does not run the plugin at all. */
#define NODEHA_PLUGIN_FOLLOWER 0x1u

typedef const nodeha_plugin* (*nodeha_plugin_entry_fn)(void);

#define NODEHA_ROLE_BIT(role) (1u << (unsigned)(role))

#ifdef __cplusplus
}
#endif

#endif /* NODEHA_PLUGIN_H */
