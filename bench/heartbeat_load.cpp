// Heartbeat fan-in and failure detection against a real controller process.
//
// Starts nats-server (or uses --nats), a controller `nodeha-host` with the heartbeat plugin
// (interval 1s, misses 3, ping_timeout 500ms), and simulates --nodes agents: each publishes one
// heartbeat a second (spread evenly over the second, from a few publisher threads) and answers
// ping-backs while it is alive. Its netcheck verdict is renewed every --check-every seconds (its
// time changes, so that heartbeat is no repeat of the last one), as netcheck's default 30 s does. After warm-up (every node registered and its record written) it
// measures the controller process's CPU and memory from /proc over a window, then silences
// --silence nodes at once (no heartbeats, no ping answers: a node cut off by the network) and
// times each one's `unreachable` event. Prints a Markdown table; exits non-zero only when it
// could not measure (setup failed, warm-up never completed, the controller died).
//
// Threads: publisher threads own their nodes' heartbeats; ping answers and events arrive on
// cnats threads and touch only atomics and a mutex-guarded log of events.
#include "bus.h"
#include "heartbeat_codec.h"
#include "list_pages.h"
#include "measure.h"
#include "process.h"
#include "wait.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <unordered_map>

namespace nodeha::bench {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using test::wait_until;

struct Options {
  size_t nodes = 1000;
  size_t silence = 100;
  std::string nats;  // empty: start our own
  std::string host_bin = NODEHA_BENCH_HOST_BIN;
  std::string plugin_dir = NODEHA_BENCH_PLUGIN_DIR;
  int measure_s = 60;    // one record_every period, so the periodic last-seen writes are in it
  int deadline_s = 15;   // how long to wait for the silenced nodes' events
  int publishers = 4;
  int vms = 3;
  int wire = heartbeat::kWireVersion;  // the highest heartbeat wire version the simulated agents speak
  int check_every = 30;                // s between two netcheck verdicts of a node (0: one, at start)
  int record_every = 60;               // the controller's record_every, in s (its default)
  bool follower = false;               // run a second controller, which follows, and measure it too
};

int64_t steady_ns() { return SteadyClock::now().time_since_epoch().count(); }
int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- the simulated agents --------------------------------------------------------------------

struct SimNode {
  std::string id, subject;
  heartbeat::Heartbeat hb;  // touched only by the node's publisher thread
  std::atomic<bool> silenced{false};
  std::atomic<bool> registered{false};
  std::atomic<int64_t> last_sent_ns{0}, silenced_ns{0}, first_ping_ns{0}, unreachable_ns{0};
  // As an agent does (plugins/heartbeat/agent.h): version 1 until granted, the list in the first
  // heartbeat of version 2 and when asked, back to version 1 on a ping-back.
  std::atomic<uint32_t> wire{1};
  std::atomic<bool> full{true};
};

class Simulator {
 public:
  Simulator(const Options& opt, const std::string& url) : opt_(opt), url_(url), nodes_(opt.nodes) {
    std::string prefix = "sim" + std::to_string(getpid()) + "-";  // no clash with nodes of earlier runs
    for (size_t i = 0; i < nodes_.size(); ++i) {
      SimNode& n = nodes_[i];
      n.id = prefix + std::to_string(i);
      n.subject = "nodeha.hb." + n.id;
      index_[n.id] = i;
      auto& hb = n.hb;
      hb.node = n.id;
      char boot[48];
      std::snprintf(boot, sizeof boot, "b00710d0-0000-4000-8000-%012x", static_cast<unsigned>(i));
      hb.boot_id = boot;
      hb.interval_ms = 1000;
      hb.capacity = {64, 256 * 1024, 900};
      hb.use = {static_cast<uint32_t>(2 * opt.vms), static_cast<uint64_t>(4096 * opt.vms), static_cast<uint64_t>(20 * opt.vms),
                static_cast<uint32_t>(opt.vms)};
      hb.addresses = {{"management", "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1)},
                      {"business", "192.168." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1)}};
      for (int v = 0; v < opt.vms; ++v) {
        char uuid[48];
        std::snprintf(uuid, sizeof uuid, "%08x-0000-4000-8000-%012u", static_cast<unsigned>(i), static_cast<unsigned>(v));
        hb.vms.push_back({uuid, n.id + "-vm" + std::to_string(v), "running"});
      }
      hb.checks = {{"netcheck", true, ""}};
      hb.vms_digest = heartbeat::vms_digest(hb.vms);
    }
  }

  ~Simulator() { stop(); }

  // Subscribes the ping answerer and the event watcher; false (with a message) on failure.
  bool connect() {
    control_ = make_bus("heartbeat_load-control");
    pings_ = make_bus("heartbeat_load-pings");
    if (!control_ || !pings_) return false;
    auto p = pings_->subscribe("nodeha.agent.*.ping", "", [this](Message m) { on_ping(m); });
    auto g = pings_->subscribe("nodeha.agent.*.hb.wire", "", [this](Message m) { on_grant(m); });
    if (!g) {
      std::cerr << "subscribe failed: " << g.status().message() << "\n";
      return false;
    }
    auto e = control_->subscribe("nodeha.evt.node.*", "", [this](Message m) { on_event(m); });
    if (!p || !e) {
      std::cerr << "subscribe failed: " << (p ? e.status().message() : p.status().message()) << "\n";
      return false;
    }
    return true;
  }

  void start_publishers() {
    epoch_ = SteadyClock::now() + 100ms;
    for (int t = 0; t < opt_.publishers; ++t) {
      auto bus = make_bus("heartbeat_load-pub" + std::to_string(t));
      if (!bus) continue;  // the achieved rate will show it
      threads_.emplace_back([this, t, b = std::shared_ptr<host::Bus>(std::move(bus))] { publish_loop(*b, t); });
    }
  }

  void stop() {
    stopping_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  // Silences `count` nodes spread evenly over the index range (so over the phases of the second).
  std::vector<size_t> silence(size_t count) {
    std::vector<size_t> chosen;
    int64_t now = steady_ns();
    for (size_t j = 0; j < count && j < nodes_.size(); ++j) {
      size_t i = j * nodes_.size() / count;
      nodes_[i].silenced_ns = now;
      nodes_[i].silenced = true;
      chosen.push_back(i);
    }
    return chosen;
  }

  host::Bus& control() { return *control_; }
  const std::vector<SimNode>& nodes() const { return nodes_; }
  size_t registered() const { return registered_; }
  size_t detected() const { return detected_; }
  uint64_t sent() const { return sent_; }
  uint64_t false_alarms() const { return false_alarms_; }
  uint64_t live_pings() const { return live_pings_; }
  uint64_t grants() const { return grants_; }
  int64_t max_lag_ms() const { return max_lag_us_ / 1000; }
  void reset_lag() { max_lag_us_ = 0; }

 private:
  std::unique_ptr<host::Bus> make_bus(const std::string& name) {
    host::NatsSettings s;
    s.servers = {url_};
    s.reconnect_wait_ms = 100;
    auto bus = host::Bus::create(s, name, nullptr);
    if (!bus || !bus.value()->wait_connected(5s)) {
      std::cerr << "cannot connect to " << url_ << (bus ? "" : ": " + bus.status().message()) << "\n";
      return nullptr;
    }
    return std::move(bus.value());
  }

  // Node i beats at epoch + k s + i/N s; each thread takes every publishers-th node.
  void publish_loop(host::Bus& bus, int t) {
    const auto n = nodes_.size();
    for (int64_t round = 0; !stopping_; ++round) {
      for (size_t i = static_cast<size_t>(t); i < n && !stopping_; i += static_cast<size_t>(opt_.publishers)) {
        auto due = epoch_ + std::chrono::seconds(round) + std::chrono::nanoseconds(1'000'000'000LL * static_cast<int64_t>(i) / static_cast<int64_t>(n));
        std::this_thread::sleep_until(due);  // pacing, not a wait for an outcome
        SimNode& node = nodes_[i];
        if (node.silenced) continue;
        int64_t lag_us = std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - due).count();
        for (int64_t seen = max_lag_us_; lag_us > seen && !max_lag_us_.compare_exchange_weak(seen, lag_us);) {}
        node.hb.seq++;
        node.hb.sent_at = unix_ms();
        if (round == 0 || (opt_.check_every > 0 && (round + static_cast<int64_t>(i)) % opt_.check_every == 0))
          node.hb.checks[0].at = node.hb.sent_at;  // a new verdict, at this node's own phase
        node.hb.version = node.wire;
        node.hb.has_vms = node.hb.version < 2 || node.full.exchange(false);
        if (bus.publish(node.subject, heartbeat::encode_heartbeat(node.hb))) {
          node.last_sent_ns = steady_ns();
          sent_.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
  }

  SimNode* lookup(const std::string& id) {
    auto it = index_.find(id);
    return it == index_.end() ? nullptr : &nodes_[it->second];
  }

  // On a cnats thread: answer for live nodes only; a silenced node's ping goes unanswered.
  void on_ping(const Message& m) {
    const std::string head = "nodeha.agent.", tail = ".ping";
    if (m.subject.size() <= head.size() + tail.size()) return;
    SimNode* n = lookup(m.subject.substr(head.size(), m.subject.size() - head.size() - tail.size()));
    if (!n) return;
    if (n->silenced) {
      int64_t none = 0;
      n->first_ping_ns.compare_exchange_strong(none, steady_ns());
      return;
    }
    live_pings_++;
    n->wire = 1;
    if (m.reply.empty()) return;
    json reply = {{"ok", true}, {"result", {{"node", n->id}, {"boot_id", n->hb.boot_id}, {"time", unix_ms()}}}};
    pings_->publish(m.reply, reply.dump());
  }

  // On a cnats thread: the controller's wire grant (or its request for the whole list).
  void on_grant(const Message& m) {
    const std::string head = "nodeha.agent.", tail = ".hb.wire";
    if (m.subject.size() <= head.size() + tail.size()) return;
    SimNode* n = lookup(m.subject.substr(head.size(), m.subject.size() - head.size() - tail.size()));
    auto g = heartbeat::decode_wire_grant(m.data);
    if (!n || !g) return;
    uint32_t wire = std::min<uint32_t>(g->wire, static_cast<uint32_t>(opt_.wire));
    if (n->wire.exchange(wire) != wire || g->full) n->full = true;
    grants_++;
  }

  // On a cnats thread: registrations, and unreachable events (expected only for silenced nodes).
  void on_event(const Message& m) {
    auto j = json::parse(m.data, nullptr, false);
    if (!j.is_object() || !j.contains("node") || !j["node"].is_string()) return;
    SimNode* n = lookup(j["node"].get<std::string>());
    if (!n) return;
    std::string event = j.value("event", "");
    if (event == "registered" && !n->registered.exchange(true)) registered_++;
    if (event != "monitor" || j.value("to", "") != "unreachable") return;
    int64_t none = 0;
    if (!n->silenced) false_alarms_++;
    else if (n->unreachable_ns.compare_exchange_strong(none, steady_ns())) detected_++;
  }

  const Options& opt_;
  std::string url_;
  std::vector<SimNode> nodes_;
  std::unordered_map<std::string, size_t> index_;  // read-only once built
  std::unique_ptr<host::Bus> control_, pings_;
  std::vector<std::thread> threads_;
  SteadyClock::time_point epoch_;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> registered_{0}, detected_{0};
  std::atomic<uint64_t> sent_{0}, false_alarms_{0}, live_pings_{0}, grants_{0};
  std::atomic<int64_t> max_lag_us_{0};
};

// ---- the controller process ------------------------------------------------------------------

class Controller {
 public:
  Controller(const Options& opt, const std::string& url, const std::string& id = "bench-ctl") {
    std::string config = "[host]\nrole = \"controller\"\nnode_id = \"" + id + "\"\nplugin_path = [\"" + opt.plugin_dir +
                         "\"]\n[nats]\nservers = [\"" + url + "\"]\nreconnect_wait = \"100ms\"\n"
                         "[metrics]\nlisten = \"127.0.0.1:0\"\n"
                         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\nping_timeout = \"500ms\"\n"
                         "record_every = \"" + std::to_string(opt.record_every) + "s\"\n";
    proc_ = std::make_unique<test::Process>(
        std::vector<std::string>{opt.host_bin, "--config", dir_.write("host.toml", config), "--set",
                                 "host.state_dir=\"" + dir_.file("state") + "\""},
        dir_.file("host.log"));
  }
  ~Controller() {
    if (proc_->running()) {
      proc_->signal(SIGTERM);
      if (!proc_->wait_exit(10s)) proc_->signal(SIGKILL);
    }
  }
  pid_t pid() const { return proc_->pid(); }
  bool running() { return proc_->running(); }
  std::string log_tail() const {
    std::string log = proc_->output();
    return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
  }
  // The controller's heartbeats_received_total from its /metrics (NaN when unreadable), and
  // when it was read: the middle of the scrape, which takes a while with 10,000 nodes' series.
  std::pair<double, SteadyClock::time_point> received() const {
    std::string address = test::read_file(dir_.file("state/metrics.address"));
    while (!address.empty() && address.back() == '\n') address.pop_back();
    auto before = SteadyClock::now();
    std::string text = test::http_get(address, "/metrics");
    auto at = before + (SteadyClock::now() - before) / 2;
    return {test::metric_value(text, "nodeha_heartbeats_received_total"), at};
  }

 private:
  test::TempDir dir_;
  std::unique_ptr<test::Process> proc_;
};

// Distinct keys in the `nodes` bucket (its stream's subjects); 0 before the bucket exists.
uint64_t stored_records(host::Bus& bus) {
  auto r = bus.request("$JS.API.STREAM.INFO.KV_nodes", "", 2s);
  if (!r) return 0;
  auto j = json::parse(r.value(), nullptr, false);
  if (!j.is_object() || !j.contains("state")) return 0;
  return j["state"].value("num_subjects", uint64_t{0});
}

// nats-server -js on a free loopback port, its store in a temp dir; we keep its pid for /proc.
struct OwnNats {
  test::TempDir dir;
  int port = test::free_port();
  test::Process proc{{"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port), "-js", "-sd", dir.path()},
                     dir.file("nats.log")};
  ~OwnNats() {
    proc.signal(SIGTERM);
    if (!proc.wait_exit(10s)) proc.signal(SIGKILL);
  }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port); }
};

void say(const std::string& s) { std::cerr << "[heartbeat_load] " << s << std::endl; }

// What the measuring window saw: the controller's CPU and memory, and the load it was under.
struct Window {
  double seconds = 0, cpu_pct = 0, busiest_slice_pct = 0, nats_pct = NAN, sim_pct = 0;
  double sent_per_s = 0, received_per_s = 0, rss_mib = NAN;
  double follower_pct = NAN, follower_rss_mib = NAN;  // with --follower
  int64_t worst_lag_ms = 0;
  uint64_t live_pings = 0;
};

Window measure(Simulator& sim, Controller& ctl, pid_t nats_pid, pid_t follower_pid, int seconds) {
  Window w;
  auto received0 = ctl.received();
  uint64_t sent0 = sim.sent();
  sim.reset_lag();
  auto t0 = SteadyClock::now();
  double cpu0 = cpu_seconds(ctl.pid()), nats0 = nats_pid ? cpu_seconds(nats_pid) : NAN, self0 = cpu_seconds(getpid());
  double follower0 = follower_pid ? cpu_seconds(follower_pid) : NAN;
  double prev = cpu0;
  auto prev_t = t0;
  for (auto next = t0 + 5s; next <= t0 + std::chrono::seconds(seconds); next += 5s) {
    std::this_thread::sleep_until(next);  // the window's length, not a wait for an outcome
    double c = cpu_seconds(ctl.pid());
    w.busiest_slice_pct = std::max(w.busiest_slice_pct, (c - prev) / std::chrono::duration<double>(next - prev_t).count() * 100);
    prev = c;
    prev_t = next;
  }
  w.seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  w.cpu_pct = (cpu_seconds(ctl.pid()) - cpu0) / w.seconds * 100;
  if (nats_pid) w.nats_pct = (cpu_seconds(nats_pid) - nats0) / w.seconds * 100;
  if (follower_pid) {
    w.follower_pct = (cpu_seconds(follower_pid) - follower0) / w.seconds * 100;
    w.follower_rss_mib = status_mib(follower_pid, "VmRSS");
  }
  w.sim_pct = (cpu_seconds(getpid()) - self0) / w.seconds * 100;
  w.sent_per_s = static_cast<double>(sim.sent() - sent0) / w.seconds;
  w.rss_mib = status_mib(ctl.pid(), "VmRSS");
  w.worst_lag_ms = sim.max_lag_ms();
  w.live_pings = sim.live_pings();
  auto received1 = ctl.received();
  w.received_per_s = (received1.first - received0.first) /
                     std::chrono::duration<double>(received1.second - received0.second).count();
  return w;
}

// Per silenced node, in ms: last heartbeat -> unreachable event, silencing -> event, last
// heartbeat -> the ping-back reaching it.
struct Detection {
  size_t silenced = 0;
  std::vector<double> from_beat, from_silence, ping_after;
};

Detection detect(Simulator& sim, Controller& ctl, const Options& opt) {
  Detection d;
  auto chosen = sim.silence(opt.silence);
  d.silenced = chosen.size();
  wait_until([&] { return sim.detected() == chosen.size() || !ctl.running(); }, std::chrono::seconds(opt.deadline_s));
  for (size_t i : chosen) {
    const SimNode& n = sim.nodes()[i];
    if (n.first_ping_ns) d.ping_after.push_back((n.first_ping_ns - n.last_sent_ns) / 1e6);
    if (!n.unreachable_ns) continue;
    d.from_beat.push_back((n.unreachable_ns - n.last_sent_ns) / 1e6);
    d.from_silence.push_back((n.unreachable_ns - n.silenced_ns) / 1e6);
  }
  return d;
}

// Every page of cmd.node.list, timed from the first request to the last reply: the whole records
// as `nodeha node list` asks them, or only the ages ({"ages": true}) as the web page polls them.
struct Listing {
  test::ListPages pages;
  double ms = 0;
  double controller_cpu_ms = 0;  // the controller's CPU meanwhile, heartbeats included
};

Listing list_nodes(host::Bus& bus, pid_t controller, const json& request) {
  auto start = SteadyClock::now();
  double cpu0 = cpu_seconds(controller);
  Listing l{test::list_pages(bus, "nodeha.cmd.node.list", request, "nodes", 10s)};
  l.controller_cpu_ms = (cpu_seconds(controller) - cpu0) * 1000;
  l.ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
  return l;
}

void report(const Options& opt, const Window& w, const Detection& d, double peak_mib, uint64_t false_alarms, double warm_s,
            const Listing& listing, const Listing& ages) {
  auto p = [](const std::vector<double>& v, double q) { return fixed(percentile(v, q)); };
  std::cout << "| nodes | controller CPU, % of one core | RSS MiB | peak RSS MiB | heartbeats/s sent | heartbeats/s "
               "received | detection p50 ms | p90 ms | p99 ms | max ms | detected / silenced | false alarms |\n"
               "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  std::cout << "| " << opt.nodes << " | " << fixed(w.cpu_pct, 1) << " | " << fixed(w.rss_mib, 0) << " | " << fixed(peak_mib, 0)
            << " | " << fixed(w.sent_per_s, 0) << " | " << fixed(w.received_per_s, 0) << " | " << p(d.from_beat, 50) << " | "
            << p(d.from_beat, 90) << " | " << p(d.from_beat, 99) << " | " << p(d.from_beat, 100) << " | "
            << d.from_beat.size() << " / " << d.silenced << " | " << false_alarms << " |\n\n";
  std::cout << "Detection is timed from each silenced node's last heartbeat sent to its `unreachable` event.\n"
            << "- from the moment of silencing (a failure at a random phase of the second): p50 "
            << p(d.from_silence, 50) << " ms, p99 " << p(d.from_silence, 99) << " ms, max " << p(d.from_silence, 100)
            << " ms\n"
            << "- ping-back reaching a silenced node after its last heartbeat: p50 " << p(d.ping_after, 50) << " ms, max "
            << p(d.ping_after, 100) << " ms (" << d.ping_after.size() << " pinged before the wait ended)\n"
            << "- window " << fixed(w.seconds, 1) << " s after a " << fixed(warm_s, 1)
            << " s warm-up; busiest 5 s slice of the controller: " << fixed(w.busiest_slice_pct, 1) << " % of one core\n"
            << "- nats-server CPU " << fixed(w.nats_pct, 1) << " %, simulator CPU " << fixed(w.sim_pct, 1)
            << " %, simulator's worst publish lag " << w.worst_lag_ms << " ms, pings to live nodes " << w.live_pings << "\n";
  for (const auto* l : {&listing, &ages}) {
    const auto& lp = l->pages;
    std::cout << (l == &listing ? "- `node list`, every page: " : "- the web page's poll (`ages`), every page: ")
              << lp.items.size() << " nodes in " << lp.pages << " pages, " << fixed(lp.bytes / 1048576.0, 1)
              << " MiB (the largest " << fixed(lp.largest / 1024.0, 0) << " KiB), " << fixed(l->ms, 0)
              << " ms, the controller's CPU meanwhile " << fixed(l->controller_cpu_ms, 0) << " ms"
              << (lp.ok ? "" : "; FAILED: " + lp.error) << "\n";
  }
  if (opt.follower)
    std::cout << "- the following controller: " << fixed(w.follower_pct, 1) << " % of one core, RSS " << fixed(w.follower_rss_mib, 0)
              << " MiB\n";
  // For bench/run-all: one line per figure, the node count in the key.
  std::string k = "heartbeat." + std::to_string(opt.nodes) + "_nodes.";
  auto figure = [&](const std::string& name, double v) { std::cout << "figure: " << k << name << " " << fixed(v, 2) << "\n"; };
  figure("cpu_pct", w.cpu_pct);
  figure("busiest_5s_cpu_pct", w.busiest_slice_pct);
  figure("rss_mib", w.rss_mib);
  figure("peak_rss_mib", peak_mib);
  figure("counted_pct", w.sent_per_s > 0 ? w.received_per_s / w.sent_per_s * 100 : 0);
  figure("false_alarms", static_cast<double>(false_alarms));
  if (opt.follower) {
    figure("follower_cpu_pct", w.follower_pct);
    figure("follower_rss_mib", w.follower_rss_mib);
  }
  figure("undetected", static_cast<double>(d.silenced - d.from_beat.size()));
  figure("detect_from_failure_p99_ms", percentile(d.from_silence, 99));
  figure("detect_from_failure_p50_ms", percentile(d.from_silence, 50));
  figure("detect_from_last_beat_p99_ms", percentile(d.from_beat, 99));
  if (listing.pages.ok) {
    figure("node_list_ms", listing.ms);
    figure("node_list_pages", listing.pages.pages);
    figure("node_list_controller_cpu_ms", listing.controller_cpu_ms);
  }
  if (ages.pages.ok) {
    figure("node_ages_ms", ages.ms);
    figure("node_ages_controller_cpu_ms", ages.controller_cpu_ms);
  }
}

int run(const Options& opt) {
  std::unique_ptr<OwnNats> own_nats;
  std::string url = opt.nats;
  if (url.empty()) {
    own_nats = std::make_unique<OwnNats>();
    url = own_nats->url();
  }
  say("nats " + url + ", " + std::to_string(opt.nodes) + " nodes, " + std::to_string(opt.silence) + " to silence");

  Simulator sim(opt, url);
  if (!sim.connect()) return 2;
  uint64_t records_before = stored_records(sim.control());
  Controller ctl(opt, url);
  bool ready = wait_until(
      [&] {
        if (!ctl.running()) return true;
        auto r = sim.control().request("nodeha.cmd.node.list", "{}", 1s);
        return r && json::parse(r.value(), nullptr, false).value("ok", false);
      },
      20s);
  if (!ready || !ctl.running()) {
    say("the controller did not come up:\n" + ctl.log_tail());
    return 2;
  }

  // The leader is up: a second controller started now follows it (hears every heartbeat, keeps
  // no monitor), through the warm-up and the window.
  std::unique_ptr<Controller> follower;
  if (opt.follower) follower = std::make_unique<Controller>(opt, url, "bench-ctl-2");

  // Warm-up: every node registered, and its first record written (the one-time KV burst).
  auto warm_start = SteadyClock::now();
  sim.start_publishers();
  auto warm_limit = std::chrono::seconds(30 + opt.nodes / 200);
  bool warm = wait_until([&] { return sim.registered() == opt.nodes || !ctl.running(); }, warm_limit) &&
              wait_until([&] { return stored_records(sim.control()) >= records_before + opt.nodes || !ctl.running(); },
                         warm_limit);
  if (!warm || !ctl.running()) {
    say("warm-up incomplete: " + std::to_string(sim.registered()) + " registered, " +
        std::to_string(stored_records(sim.control())) + " records\n" + ctl.log_tail());
    return 3;
  }
  double warm_s = std::chrono::duration<double>(SteadyClock::now() - warm_start).count();
  say("warm: all registered and stored after " + fixed(warm_s, 1) + " s; measuring for " +
      std::to_string(opt.measure_s) + " s");

  if (follower && !follower->running()) {
    say("the following controller stopped:\n" + follower->log_tail());
    return 3;
  }
  Window window = measure(sim, ctl, own_nats ? own_nats->proc.pid() : 0, follower ? follower->pid() : 0, opt.measure_s);
  say("silencing " + std::to_string(opt.silence) + " nodes");
  Detection detection = detect(sim, ctl, opt);
  double peak = status_mib(ctl.pid(), "VmHWM");  // the fan-in's, before the listing's pages are built
  Listing listing = list_nodes(sim.control(), ctl.pid(), json::object());
  Listing ages = list_nodes(sim.control(), ctl.pid(), json{{"ages", true}});
  bool alive = ctl.running();
  sim.stop();
  report(opt, window, detection, peak, sim.false_alarms(), warm_s, listing, ages);
  if (!alive) {
    say("the controller exited during the run:\n" + ctl.log_tail());
    return 4;
  }
  return 0;
}

}  // namespace
}  // namespace nodeha::bench

int main(int argc, char** argv) {
  nodeha::bench::Options opt;
  CLI::App app{"Heartbeat fan-in and failure detection of a real nodeha controller"};
  app.add_option("--nodes", opt.nodes, "simulated agents, one heartbeat a second each")->check(CLI::Range(1, 100000));
  app.add_option("--silence", opt.silence, "nodes silenced at once for the detection measurement");
  app.add_option("--nats", opt.nats, "URL of a running nats-server -js (default: start one on a free port)");
  app.add_option("--host-bin", opt.host_bin, "the nodeha-host executable");
  app.add_option("--plugin-dir", opt.plugin_dir, "where nodeha_heartbeat.so is");
  app.add_option("--measure", opt.measure_s, "seconds of CPU measurement")->check(CLI::Range(5, 600));
  app.add_option("--deadline", opt.deadline_s, "seconds to wait for the silenced nodes' events");
  app.add_option("--publishers", opt.publishers, "publisher threads (one NATS connection each)")->check(CLI::Range(1, 64));
  app.add_option("--vms", opt.vms, "VMs listed in each heartbeat")->check(CLI::Range(0, 100));
  app.add_option("--wire", opt.wire, "the highest heartbeat wire version the simulated agents speak (1: the whole list every time)")
      ->check(CLI::Range(1, static_cast<int>(nodeha::heartbeat::kWireVersion)));
  app.add_option("--record-every", opt.record_every, "the controller's record_every in seconds: how often a steady node's record is rewritten")
      ->check(CLI::Range(1, 86400));
  app.add_flag("--follower", opt.follower, "also run a second controller, which follows the first, and measure its CPU and RSS");
  app.add_option("--check-every", opt.check_every, "seconds between two netcheck verdicts of a node (0: one, at start)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  opt.silence = std::min(opt.silence, opt.nodes);
  return nodeha::bench::run(opt);
}
