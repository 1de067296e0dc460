#include "host.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#ifndef NODEHA_VERSION
#define NODEHA_VERSION "0.0.0"
#endif

namespace nodeha::host {

namespace fs = std::filesystem;

namespace {
const char* role_name(nodeha_role r) { return r == NODEHA_ROLE_CONTROLLER ? "controller" : "agent"; }
}  // namespace

Result<std::vector<PlannedPlugin>> plan_plugins(const ConfigDocument& doc) {
  const HostConfig& h = doc.host();
  std::string config_dir = fs::absolute(fs::path(h.file)).parent_path().string();
  std::vector<PlannedPlugin> out;
  std::map<std::string, std::string> seen;  // name -> where
  for (size_t i = 0; i < h.plugins.size(); ++i) {
    const PluginSpec& spec = h.plugins[i];
    std::string label = spec.name.empty() ? spec.library : spec.name;
    auto lib = load_library(spec.library, h.plugin_path, config_dir);
    if (!lib) return Status(NODEHA_ERR_INVALID, fmt::format("{}: plugin '{}': {}", spec.where, label, lib.status().message()));
    const nodeha_plugin& d = lib.value()->descriptor();
    std::string name = spec.name.empty() ? d.name : spec.name;
    if (auto it = seen.find(name); it != seen.end())
      return Status(NODEHA_ERR_INVALID,
                    fmt::format("{}: plugin '{}': two plugins with one name (the other is at {}); give one a "
                                "distinct `name = \"...\"`",
                                spec.where, name, it->second));
    seen[name] = spec.where;
    if ((d.roles & NODEHA_ROLE_BIT(h.role)) == 0)
      return Status(NODEHA_ERR_INVALID, fmt::format("{}: plugin '{}' ({}) does not serve the {} role", spec.where, name,
                                                    lib.value()->path(), role_name(h.role)));
    auto cfg = doc.validate_plugin(i, to_decls(d.config_keys, d.config_key_count));
    if (!cfg) return Status(NODEHA_ERR_INVALID, fmt::format("plugin '{}': {}", name, cfg.status().message()));
    out.push_back({name, lib.value(), cfg.value(), spec.where});
  }
  return out;
}

Host::Host(std::string config_file, std::vector<std::string> overrides)
    : file_(std::move(config_file)), overrides_(std::move(overrides)) {}

Host::~Host() { stop(); }

void Host::set_up(const std::string& plugin, bool up) {
  auto* m = metrics_->series(NODEHA_METRIC_GAUGE, "nodeha_plugin_up", "1 when the plugin instance runs",
                             {{"plugin", plugin}}, {}, nullptr);
  if (m) Metrics::set(m, up ? 1 : 0);
}

void Host::set_running(const PluginInstance& inst, bool up) {
  if (inst.mode() == NODEHA_MODE_ACTIVE) return set_up(inst.name(), up);
  auto* m = metrics_->series(NODEHA_METRIC_GAUGE, "nodeha_plugin_following",
                             "1 while the plugin's follower instance runs on this following controller (it answers "
                             "read-only commands)",
                             {{"plugin", inst.name()}}, {}, nullptr);
  if (m) Metrics::set(m, up ? 1 : 0);
}

std::optional<nodeha_mode> Host::wanted_mode(const PluginInstance& inst) const {
  if (plugins_run_) return NODEHA_MODE_ACTIVE;
  if (inst.library()->serves_followers()) return NODEHA_MODE_FOLLOWER;
  return std::nullopt;
}

Status Host::start_planned(const PlannedPlugin& p, std::unique_ptr<PluginInstance>* out) {
  auto inst = std::make_unique<PluginInstance>(services_, p.name, p.library, p.config_json, p.where);
  auto mode = wanted_mode(*inst);
  if (!mode) {  // a following controller that does not run it: checked now, started when it leads
    if (auto s = inst->create(); !s) return s;
    *out = std::move(inst);
    return Status::ok();
  }
  if (auto s = start_instance(*inst, *mode); !s) return s;
  *out = std::move(inst);
  return Status::ok();
}

Status Host::start_instance(PluginInstance& inst, nodeha_mode mode) {
  Status s = inst.start(mode);
  set_running(inst, static_cast<bool>(s));
  if (!s) return s;
  const nodeha_plugin& d = inst.library()->descriptor();
  spdlog::info("plugin {} {} ({} {}, {})", inst.name(),
               mode == NODEHA_MODE_ACTIVE ? "started" : "answers read-only commands as a follower", d.name,
               d.version ? d.version : "?", inst.library()->path());
  return s;
}

void Host::stop_instance(PluginInstance& inst) {
  inst.stop();
  if (metrics_) set_running(inst, false);
}

int Host::start() {
  auto doc = ConfigDocument::load(file_, overrides_);
  if (!doc) {
    spdlog::error("refused: {}", doc.status().message());
    return kExitRefused;
  }
  doc_ = std::move(doc.value());
  const HostConfig& h = doc_.host();
  spdlog::set_level(spdlog::level::from_str(h.log_level));
  auto planned = plan_plugins(doc_);
  if (!planned) {
    spdlog::error("refused: {}", planned.status().message());
    return kExitRefused;
  }
  std::error_code ec;
  fs::create_directories(h.state_dir, ec);
  if (ec) {
    spdlog::error("refused: {}: [host] state_dir {}: {}", file_, h.state_dir, ec.message());
    return kExitRefused;
  }
  auto metrics = Metrics::create(h.metrics_listen);
  if (!metrics) {
    spdlog::error("refused: {}: {}", file_, metrics.status().message());
    return kExitRefused;
  }
  metrics_ = std::move(metrics.value());
  fs::remove(fs::path(h.state_dir) / "metrics.address", ec);  // a previous run's; this one's comes once up
  spdlog::info("metrics on http://{}/metrics", metrics_->address());
  if (auto* info = metrics_->series(NODEHA_METRIC_GAUGE, "nodeha_build_info", "nodeha version and role",
                                    {{"version", NODEHA_VERSION}, {"role", role_name(h.role)}, {"node", h.node_id}}, {}, nullptr))
    Metrics::set(info, 1);
  bus_connected_ = metrics_->series(NODEHA_METRIC_GAUGE, "nodeha_bus_connected", "1 while connected to NATS", {}, {}, nullptr);
  nodeha_metric* reconnects = metrics_->series(NODEHA_METRIC_COUNTER, "nodeha_bus_reconnects_total",
                                               "connections to NATS made again after one was lost or closed", {}, {}, nullptr);
  std::map<std::string, nodeha_metric*> closed;
  for (const char* reason : {"control_line", "payload", "auth", "max_connections", "other"})
    closed[reason] = metrics_->series(NODEHA_METRIC_COUNTER, "nodeha_bus_closed_total",
                                      "connections to NATS closed for good by the server or the library, by reason",
                                      {{"reason", reason}}, {}, nullptr);
  for (const char* result : {"ok", "refused", "failed"})
    metrics_->series(NODEHA_METRIC_COUNTER, "nodeha_config_reloads_total", "configuration reloads by result",
                     {{"result", result}}, {}, nullptr);

  // Agents only: the node-local path acts on this node's VMs, which only agent plugins drive.
  // On a controller NODEHA_SUB_LOCAL changes nothing and no socket answers.
  if (h.role == NODEHA_ROLE_AGENT) {
    fs::create_directories(fs::path(h.local_socket).parent_path(), ec);
    auto local = LocalSocket::open({.path = h.local_socket, .prefix = h.nats.prefix, .metrics = metrics_.get()});
    if (!local) {
      spdlog::error("refused: {}: [host] local_socket {}", file_, local.status().message());
      return kExitRefused;
    }
    local_ = std::move(local.value());
  }

  // The Bus calls on_state one change at a time, in order: a plain counter will do.
  auto on_state = [this, reconnects, ups = uint64_t{0}](bool up) mutable {
    if (bus_connected_) Metrics::set(bus_connected_, up ? 1 : 0);
    if (up && ++ups > 1 && reconnects) Metrics::add(reconnects, 1);
    if (up) spdlog::info("connected to NATS");
    else spdlog::warn("disconnected from NATS; reconnecting");
  };
  auto on_closed = [closed](const std::string& reason, const std::string&) {
    if (auto it = closed.find(reason); it != closed.end() && it->second) Metrics::add(it->second, 1);
  };
  auto bus = Bus::create(h.nats, fmt::format("nodeha-{}-{}", role_name(h.role), h.node_id), std::move(on_state),
                         std::move(on_closed));
  if (!bus) {
    spdlog::error("refused: {}: {}", file_, bus.status().message());
    return kExitRefused;
  }
  bus_ = std::move(bus.value());
  if (!bus_->wait_connected(std::chrono::milliseconds(h.nats.connect_timeout_ms)))
    spdlog::warn("NATS not reachable yet ({}); starting anyway and retrying in the background", h.nats.servers.front());
  if (h.role == NODEHA_ROLE_AGENT) libvirt_ = std::make_unique<LibvirtProvider>(h.libvirt_uri);
  workers_ = std::make_unique<WorkerPool>(static_cast<size_t>(h.workers));
  services_ = Services{h.node_id, h.role, h.nats.prefix, h.state_dir, bus_.get(), metrics_.get(), workers_.get(), libvirt_.get(),
                       local_.get()};
  if (h.role == NODEHA_ROLE_CONTROLLER) keep_event_stream();

  // Every plugin reads and checks its config before any starts: a refusal is a config error.
  for (const auto& p : planned.value()) {
    auto inst = std::make_unique<PluginInstance>(services_, p.name, p.library, p.config_json, p.where);
    if (auto s = inst->create(); !s) {
      spdlog::error("refused: {}", s.message());
      plugins_.clear();
      stop();
      return kExitRefused;
    }
    plugins_.push_back(std::move(inst));
  }
  if (h.role == NODEHA_ROLE_CONTROLLER) {
    plugins_run_ = false;
    leadership_ = std::make_unique<Leadership>(*bus_, h.node_id, h.lease_ms, *metrics_,
                                               [this](bool leads, uint64_t epoch, const std::string& why) {
                                                 {
                                                   std::lock_guard lock(role_mu_);
                                                   want_lead_ = leads;
                                                   want_epoch_ = epoch;
                                                   role_dirty_ = true;
                                                 }
                                                 spdlog::info("leadership: this controller {}: {} (epoch {})",
                                                              leads ? "leads" : "follows", why, epoch);
                                                 role_cv_.notify_all();
                                               });
    services_.may_act = [l = leadership_.get()] { return l->acting(); };
    services_.epoch = [l = leadership_.get()] { return l->epoch(); };
    for (const auto& inst : plugins_) set_up(inst->name(), false);  // until it leads
    leadership_->start();  // one round now: a lone controller leads before it says it is up
    // A leader's plugin that fails to start (a bucket whose stream still elects its leader on a
    // NATS cluster just formed) is tried again every second, as after a takeover: exiting would
    // leave the cluster without its leader until someone restarts it.
    bool retry = !apply_role();
    role_thread_ = std::thread([this, retry] { role_loop(retry); });
  } else {
    for (size_t i = 0; i < plugins_.size(); ++i) {
      if (auto s = start_instance(*plugins_[i], NODEHA_MODE_ACTIVE); !s) {
        spdlog::error("{}", s.message());
        plugins_.resize(i);  // it and the ones after it never started: destroyed without stop
        stop();
        return kExitFailed;
      }
    }
  }
  // Written last: whoever finds the file finds the plugins started and their subscriptions at
  // the server (when connected), the local socket open.
  std::ofstream(fs::path(h.state_dir) / "metrics.address") << metrics_->address() << "\n";
  spdlog::info("nodeha-host {} up: node {}, role {}, {} plugin(s){}", NODEHA_VERSION, h.node_id, role_name(h.role),
               plugins_.size(), leadership_ ? (plugins_run_ ? ", leading" : ", following") : "");
  return 0;
}

Status Host::apply_role() {
  bool lead;
  uint64_t epoch;
  {
    std::lock_guard lock(role_mu_);
    role_dirty_ = false;
    lead = want_lead_;
    epoch = want_epoch_;
  }
  std::lock_guard lock(plugins_mu_);
  plugins_run_ = lead;
  auto settled = [&](const PluginInstance& i) {
    auto want = wanted_mode(i);
    return want ? i.running() && i.mode() == *want : !i.running();
  };
  if (std::all_of(plugins_.begin(), plugins_.end(), [&](const auto& p) { return settled(*p); })) return Status::ok();
  // First what runs in the other mode goes, in reverse order: a leader's instances stop when its
  // time is up already (acting() said no before this was asked), so this only ends their work; a
  // follower's stop before the leader's start, so that no moment has both.
  size_t stopped = 0;
  for (auto it = plugins_.rbegin(); it != plugins_.rend(); ++it)
    if ((*it)->running() && !settled(**it)) {
      stop_instance(**it);
      ++stopped;
    }
  // Each leader's instance resumes from the buckets as after a restart: unfinished tasks, the
  // nodes' full windows. A follower's reads them afresh. They start side by side: a start that
  // reads a bucket whose stream still elects its leader (a NATS server died with the old leader)
  // waits for the JetStream timeout, and one after the other those waits would add up.
  size_t wanted = 0;
  std::vector<std::future<Status>> starting;
  for (auto& inst : plugins_) {
    auto want = wanted_mode(*inst);
    if (!want) continue;
    ++wanted;
    if (inst->running()) continue;  // started before; this round retries the others
    starting.push_back(std::async(std::launch::async, [this, i = inst.get(), m = *want] { return start_instance(*i, m); }));
  }
  Status result = Status::ok();
  for (auto& started : starting)
    if (auto s = started.get(); !s) {
      spdlog::error("{}", s.message());
      result = s;
    }
  size_t up = std::count_if(plugins_.begin(), plugins_.end(), [](const auto& p) { return p->running(); });
  std::string what = lead      ? fmt::format("leading (epoch {})", epoch)
                     : stopped ? fmt::format("following, the leader's {} plugin instance(s) stopped", stopped)
                               : std::string("following");
  if (result) spdlog::info("{}: {} plugin(s) {}", what, up, lead ? "started" : "answer read-only commands as followers");
  else spdlog::warn("{}: {} of {} plugin(s) running; the others are tried again in 1 s", what, up, wanted);
  return result;
}

void Host::role_loop(bool retry) {
  for (;;) {
    {
      std::unique_lock lock(role_mu_);
      // A plugin that failed to start when this controller took the lead (its bus was not back
      // yet, say) is tried again every second: a leader without its monitor would be no leader.
      auto ready = [&] { return role_stop_ || role_dirty_; };
      if (retry) role_cv_.wait_for(lock, std::chrono::seconds(1), ready);
      else role_cv_.wait(lock, ready);
      if (role_stop_) return;
    }
    retry = !apply_role();  // it takes role_dirty_
  }
}

Status Host::reload() {
  auto count = [&](const char* result) {
    if (auto* m = metrics_->series(NODEHA_METRIC_COUNTER, "nodeha_config_reloads_total", "", {{"result", result}}, {}, nullptr))
      Metrics::add(m, 1);
  };
  auto doc = ConfigDocument::load(file_, overrides_);
  Result<std::vector<PlannedPlugin>> planned = doc ? plan_plugins(doc.value()) : Result<std::vector<PlannedPlugin>>(doc.status());
  if (!planned) {
    count("refused");
    spdlog::error("reload refused, the running configuration stays: {}", planned.status().message());
    return planned.status();
  }
  const HostConfig& now = doc_.host();
  const HostConfig& next = doc.value().host();
  auto host_sections = [](const HostConfig& c) {
    return std::tie(c.node_id, c.role, c.state_dir, c.local_socket, c.log_level, c.workers, c.lease_ms, c.nats.servers,
                    c.nats.credentials, c.nats.tls_ca, c.nats.tls_cert, c.nats.tls_key, c.nats.prefix, c.nats.kv_replicas,
                    c.nats.kv_history, c.nats.reconnect_wait_ms, c.nats.connect_timeout_ms, c.nats.ping_interval_ms, c.nats.reconnect_buffer_bytes,
                    c.nats.max_control_line,
                    c.metrics_listen, c.libvirt_uri);
  };
  if (host_sections(next) != host_sections(now))
    spdlog::warn("reload: changes to [host], [nats], [metrics] or [libvirt] take effect at the next restart "
                 "(plugin_path applies now)");

  std::lock_guard plugins_lock(plugins_mu_);
  std::map<std::string, std::unique_ptr<PluginInstance>> running;
  std::vector<std::string> old_order;
  for (auto& p : plugins_) {
    old_order.push_back(p->name());
    running[p->name()] = std::move(p);
  }
  plugins_.clear();
  auto unchanged = [](const PluginInstance& i, const PlannedPlugin& p) {
    return i.library()->path() == p.library->path() && i.library()->identity() == p.library->identity() &&
           i.config_json() == p.config_json;
  };
  std::set<std::string> keep;
  for (const auto& p : planned.value())
    if (auto it = running.find(p.name); it != running.end() && unchanged(*it->second, p)) keep.insert(p.name);
  // Stop what goes or changes, in reverse order of the old config.
  std::map<std::string, std::unique_ptr<PluginInstance>> stopped;
  for (auto it = old_order.rbegin(); it != old_order.rend(); ++it) {
    if (keep.count(*it)) continue;
    spdlog::info("reload: stopping plugin {}", *it);
    stop_instance(*running[*it]);
    stopped[*it] = std::move(running[*it]);
    running.erase(*it);
  }
  Status result = Status::ok();
  for (const auto& p : planned.value()) {
    if (keep.count(p.name)) {
      plugins_.push_back(std::move(running[p.name]));
      continue;
    }
    std::unique_ptr<PluginInstance> inst;
    if (auto s = start_planned(p, &inst); s) {
      plugins_.push_back(std::move(inst));
      continue;
    } else {
      spdlog::error("reload: {}", s.message());
      result = s;
    }
    // The new version failed: bring the old one back, if there was one.
    if (auto old = stopped.find(p.name); old != stopped.end()) {
      PlannedPlugin previous{p.name, old->second->library(), old->second->config_json(), old->second->where()};
      if (start_planned(previous, &inst)) {
        spdlog::warn("reload: plugin {} kept its previous version", p.name);
        plugins_.push_back(std::move(inst));
      }
    }
  }
  stopped.clear();  // destroys the old instances; their libraries unload when the last user goes
  count(result ? "ok" : "failed");
  if (result) {
    doc_ = std::move(doc.value());
    spdlog::info("reload done: {} plugin(s) running, {} restarted", plugins_.size(), planned.value().size() - keep.size());
  }
  return result;
}

// Events on <prefix>.evt.> are kept in a stream as the audit history; controllers create it as
// soon as NATS answers.
void Host::keep_event_stream() {
  std::string prefix = doc_.host().nats.prefix;
  std::string name = prefix;
  for (auto& c : name) c = (c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  name += "_EVENTS";
  workers_->submit(this, [this, name, prefix] {
    constexpr int64_t kThirtyDays = 30LL * 24 * 3600;
    for (;;) {
      auto s = bus_->ensure_stream(name, prefix + ".evt.>", kThirtyDays);
      if (s) return;
      std::unique_lock lock(stop_mu_);
      if (stop_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; })) return;
    }
  });
}

size_t Host::running_plugins_locked() const {
  return std::count_if(plugins_.begin(), plugins_.end(),
                       [](const auto& p) { return p->running() && p->mode() == NODEHA_MODE_ACTIVE; });
}

size_t Host::running_plugins() {
  std::lock_guard lock(plugins_mu_);
  return running_plugins_locked();
}

Status Host::event_threads_answer(std::chrono::milliseconds bound) {
  // Shared with the probes: one that runs after the deadline finds it still alive.
  struct Answers {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<bool> done;
  };
  // A reload or a change of leadership holds the plugins while it starts or stops them: that is
  // the host at work, on its own thread, and the plugins' threads come and go meanwhile.
  std::unique_lock plugins_lock(plugins_mu_, std::try_to_lock);
  if (!plugins_lock.owns_lock()) return Status::ok();
  std::vector<std::string> names;  // the running ones, a follower's instances too
  auto answers = std::make_shared<Answers>();
  for (const auto& p : plugins_) {
    if (!p->running()) continue;
    size_t i = names.size();
    names.push_back(p->name());
    answers->done.push_back(false);
    bool posted = p->post([answers, i] {
      std::lock_guard lock(answers->mu);
      answers->done[i] = true;
      answers->cv.notify_all();
    });
    if (!posted) answers->done[i] = true;  // stopped meanwhile: nothing of it left to hang
  }
  plugins_lock.unlock();
  std::unique_lock lock(answers->mu);
  auto all = [&] { return std::all_of(answers->done.begin(), answers->done.end(), [](bool d) { return d; }); };
  if (answers->cv.wait_for(lock, bound, all)) return Status::ok();
  std::vector<std::string> silent;
  for (size_t i = 0; i < names.size(); ++i)
    if (!answers->done[i]) silent.push_back(names[i]);
  return Status(NODEHA_ERR_TIMEOUT, fmt::format("the event thread of plugin(s) {} did not answer within {} ms",
                                                fmt::join(silent, ", "), bound.count()));
}

void Host::stop() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (workers_) workers_->wait_owner(this);
  {
    std::lock_guard lock(role_mu_);
    role_stop_ = true;
  }
  role_cv_.notify_all();
  if (role_thread_.joinable()) role_thread_.join();
  {
    std::lock_guard lock(plugins_mu_);
    for (auto it = plugins_.rbegin(); it != plugins_.rend(); ++it) {
      spdlog::info("stopping plugin {}", (*it)->name());
      stop_instance(**it);
    }
    plugins_.clear();
  }
  // After the plugins: they may act until they stopped. Then the next controller need not wait.
  if (leadership_) leadership_->stop();
  leadership_.reset();
  local_.reset();  // after the plugins: their unanswered local requests were told already
  if (bus_) bus_->close(std::chrono::milliseconds(2000));
  bus_.reset();
  if (workers_) workers_->stop();
}

}  // namespace nodeha::host
