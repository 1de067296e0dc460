// Placement end to end: a client's `sched.place` request to a real controller and back.
//
// Starts nats-server -js (free loopback port, temp store) and a controller `nodeha-host` with
// only the scheduler plugin (`reserve_memory_mib = 0`, other keys at their defaults), writes
// --nodes node records into the `nodes` KV bucket (random capacities from a fixed seed: 32-128
// vCPUs, 128-1024 GiB memory, 1-4 TiB disk, nothing used), waits until the scheduler knows all
// of them (a probe placement with `target` = the last node written succeeds: the KV watch
// delivers in order), then sends --requests identical requests of --vms VMs each (1-16 vCPUs,
// 512 MiB-64 GiB, shared disk), one after another, after --warmup untimed ones.
//
// Per request it times the round trip (from handing the pre-encoded request to the client
// library to the reply parsed as JSON) and reads the controller's own
// nodeha_scheduler_duration_seconds histogram (sum and count, from its /metrics) before and
// after, so the controller's time for that request (decode, place, encode, respond) is the
// difference; the rest is NATS transfer, queueing and the client's parse. The request carries no
// `reserve`, so every request sees the same cluster and does the same work.
//
// NATS refuses messages over max_payload (1 MiB by default). The request size is printed; when
// it exceeds 1 MiB (e.g. 10,000 VMs: 36-character uuids) the server is started from a config file
// with `max_payload: 8MB`, and the report says so.
//
// Then, in this process, it times the plugin's steps on the same request and the same nodes
// (JSON parse, decode_request, place, the reply's text by append_placements), so the controller's
// time can be split into JSON and placement. Prints Markdown tables, then one line per figure for
// bench/run-all, e.g. with --nodes 10000 --vms 10000:
//   figure: scheduler.e2e_10k_vms_10k_nodes_p50_ms 41.2      (round trip; also _p99_ms)
//   figure: scheduler.e2e_10k_vms_10k_nodes_controller_p50_ms 30.1
//   figure: scheduler.place_10k_vms_10k_nodes_ms 4.2         (in-process place(), p50)
// Exits non-zero only when it could not measure.
#include "bus.h"
#include "host_process.h"
#include "measure.h"
#include "placement.h"
#include "process.h"
#include "wait.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>
#include <sstream>

namespace nodeha::bench {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using test::wait_until;

constexpr size_t kDefaultMaxPayload = 1024 * 1024;  // nats-server's default max_payload

struct Options {
  size_t nodes = 1000;
  size_t requests = 20;
  size_t vms = 10000;
  size_t warmup = 2;
  uint32_t seed = 20240611;
  std::string policy;  // empty: the plugin's default (spread)
  std::string plugin_dir = NODEHA_BENCH_PLUGIN_DIR;
};

void say(const std::string& s) { std::cerr << "[scheduler_e2e] " << s << std::endl; }

// 10000 -> "10k", 1500 -> "1500", 100 -> "100": the counts in figure keys.
std::string count_key(size_t n) { return n >= 1000 && n % 1000 == 0 ? std::to_string(n / 1000) + "k" : std::to_string(n); }

void figure(const std::string& key, double value) { std::cout << "figure: " << key << " " << fixed(value, 2) << "\n"; }

double ms_since(SteadyClock::time_point t) { return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count(); }

// ---- the cluster and the request ----------------------------------------------------------

int64_t uniform(std::mt19937& rng, int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }

std::string node_id(size_t i, size_t count) {
  int width = std::max<int>(4, static_cast<int>(std::to_string(count).size()));
  char buf[32];
  std::snprintf(buf, sizeof buf, "n%0*zu", width, i + 1);
  return buf;
}

json node_record(const std::string& id, std::mt19937& rng) {
  return {{"node", id},
          {"management", "enabled"},
          {"monitor", "normal"},
          {"capacity",
           {{"vcpus", uniform(rng, 1, 4) * 32}, {"memory_mib", uniform(rng, 1, 8) * 128 * 1024}, {"disk_gib", uniform(rng, 1, 4) * 1024}}},
          {"use", {{"vcpus", 0}, {"memory_mib", 0}, {"disk_gib", 0}}}};
}

// Canonical uuids: the scheduler refuses any other VM id (issue 13).
std::string vm_uuid(size_t i) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "5c4e0000-0000-4000-8000-%012zx", i);
  return buf;
}

json make_request(const Options& opt, std::mt19937& rng) {
  json vms = json::array();
  for (size_t i = 0; i < opt.vms; ++i)
    vms.push_back({{"uuid", vm_uuid(i)},
                   {"vcpus", uniform(rng, 1, 16)},
                   {"memory_mib", uniform(rng, 1, 128) * 512},
                   {"disk_gib", uniform(rng, 1, 20) * 10},
                   {"local_disk", false}});
  json request = {{"vms", std::move(vms)}};
  if (!opt.policy.empty()) request["policy"] = opt.policy;
  return request;
}

// ---- the processes ------------------------------------------------------------------------

// nats-server -js on a free loopback port; from a config file with a larger max_payload when asked.
struct OwnNats {
  test::TempDir dir;
  int port = test::free_port();
  std::unique_ptr<test::Process> proc;

  explicit OwnNats(bool big_payload) {
    std::filesystem::create_directories(dir.file("js"));
    std::vector<std::string> argv{"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port), "-js", "-sd", dir.file("js")};
    if (big_payload) {
      argv.push_back("-c");
      argv.push_back(dir.write("nats.conf", "max_payload: 8MB\n"));
    }
    proc = std::make_unique<test::Process>(argv, dir.file("nats.log"));
  }
  ~OwnNats() {
    proc->signal(SIGTERM);
    if (!proc->wait_exit(10s)) proc->signal(SIGKILL);
  }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port); }
};

std::string controller_config(const Options& opt, const std::string& url) {
  return "[host]\nrole = \"controller\"\nnode_id = \"bench-ctl\"\nplugin_path = [\"" + opt.plugin_dir +
         "\"]\n[nats]\nservers = [\"" + url + "\"]\nreconnect_wait = \"100ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:0\"\n"
         "[[plugin]]\nlibrary = \"scheduler\"\nreserve_memory_mib = 0\n";
}

// Sum and count of a histogram in a Prometheus exposition (over all its label sets); 0 if absent.
std::pair<double, double> histogram_totals(const std::string& exposition, const std::string& name) {
  double sum = 0, count = 0;
  std::istringstream in(exposition);
  std::string line;
  auto take = [&](const std::string& series, double& into) {
    if (line.rfind(series, 0) != 0) return;
    size_t rest = series.size();
    if (rest < line.size() && line[rest] == '{') rest = line.find('}', rest);
    if (rest == std::string::npos || rest >= line.size()) return;
    size_t space = line.find(' ', rest);
    if (space == std::string::npos) return;
    into += std::stod(line.substr(space + 1));
  };
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    take(name + "_sum", sum);
    take(name + "_count", count);
  }
  return {sum, count};
}

const char* kHistogram = "nodeha_scheduler_duration_seconds";

// ---- the plugin's steps in this process ------------------------------------------------------

// The nodes as the plugin's view hands them to place(): its reserve (reserve_vcpus default 1,
// reserve_memory_mib 0 as configured, reserve_disk_gib default 0), nothing used, default ratios.
std::vector<scheduler::NodeState> node_states(const std::vector<json>& records) {
  std::vector<scheduler::NodeState> nodes;
  for (const auto& r : records) {
    scheduler::NodeState n;
    n.id = r["node"];
    n.management = r["management"];
    n.monitor = r["monitor"];
    n.capacity = {r["capacity"]["vcpus"], r["capacity"]["memory_mib"], r["capacity"]["disk_gib"]};
    n.host_reserve = {1, 0, 0};
    nodes.push_back(std::move(n));
  }
  std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return nodes;
}

struct Split {
  std::vector<double> parse, decode, place, encode;  // ms per repetition
};

Split split_in_process(const std::vector<json>& records, const std::string& body, size_t repetitions) {
  const auto nodes = node_states(records);
  const scheduler::SchedulerSettings settings;
  Split out;
  for (size_t i = 0; i < repetitions; ++i) {
    auto t0 = SteadyClock::now();
    auto j = json::parse(body);
    auto t1 = SteadyClock::now();
    auto request = scheduler::decode_request(j);
    auto t2 = SteadyClock::now();
    if (!request) {
      say("decode_request: " + request.status().message());
      return out;
    }
    auto result = scheduler::place(nodes, request.value(), settings);
    auto t3 = SteadyClock::now();
    std::string reply = R"({"ok":true,"result":{"placements":)";  // as the plugin writes it
    scheduler::append_placements(reply, result);
    reply += R"(,"reserved":false}})";
    auto t4 = SteadyClock::now();
    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    out.parse.push_back(ms(t0, t1));
    out.decode.push_back(ms(t1, t2));
    out.place.push_back(ms(t2, t3));
    out.encode.push_back(ms(t3, t4));
  }
  return out;
}

// ---- the run ------------------------------------------------------------------------------

struct Sample {
  double round_trip_ms = 0, parse_ms = 0, controller_ms = std::nan("");
  size_t placed = 0, reply_bytes = 0;
};

int run(const Options& opt) {
  std::mt19937 rng(opt.seed);
  std::vector<json> records;
  records.reserve(opt.nodes);
  for (size_t i = 0; i < opt.nodes; ++i) records.push_back(node_record(node_id(i, opt.nodes), rng));
  const std::string body = make_request(opt, rng).dump();
  const bool big_payload = body.size() > kDefaultMaxPayload;
  say("request: " + std::to_string(opt.vms) + " VMs, " + std::to_string(body.size()) + " bytes (" +
      fixed(static_cast<double>(body.size()) / 1024.0) + " KiB)" +
      (big_payload ? ": over the 1 MiB default max_payload, starting nats-server with max_payload: 8MB" : ""));
  say("load average at start: " + loadavg());

  OwnNats nats(big_payload);
  host::NatsSettings settings;
  settings.servers = {nats.url()};
  settings.reconnect_wait_ms = 100;
  auto created = host::Bus::create(settings, "scheduler_e2e", nullptr);
  if (!created || !created.value()->wait_connected(10s)) {
    say("cannot connect to " + nats.url() + (created ? "" : ": " + created.status().message()) + "\n" + nats.proc->output());
    return 2;
  }
  host::Bus& bus = *created.value();

  test::HostProcess ctl(controller_config(opt, nats.url()));
  if (!ctl.wait_ready(20s)) {
    say("the controller did not come up:\n" + ctl.log());
    return 2;
  }

  auto written_at = SteadyClock::now();
  for (const auto& r : records) {
    std::string id = r["node"];
    if (auto put = bus.kv_put("nodes", id, r.dump()); !put) {
      say("kv_put " + id + ": " + put.status().message());
      return 2;
    }
  }
  double write_ms = ms_since(written_at);

  // Ready: a one-VM placement targeted at the last node written succeeds.
  const std::string last = records.back()["node"];
  const std::string probe =
      json{{"vms", {{{"uuid", vm_uuid(999999999)}, {"vcpus", 1}, {"memory_mib", 512}, {"disk_gib", 1}, {"local_disk", false}}}},
           {"target", last}}
          .dump();
  size_t probes = 0;
  bool ready = wait_until(
      [&] {
        if (!ctl.process().running()) return true;
        ++probes;
        auto r = bus.request("nodeha.cmd.sched.place", probe, 1s);
        if (!r) return false;
        auto j = json::parse(r.value(), nullptr, false);
        if (!j.is_object() || !j.value("ok", false)) return false;
        const auto& p = j["result"]["placements"];
        return p.is_array() && p.size() == 1 && p[0].value("node", "") == last;
      },
      60s);
  if (!ready || !ctl.process().running()) {
    say("the scheduler never learnt all " + std::to_string(opt.nodes) + " nodes:\n" + ctl.log());
    return 3;
  }
  double known_ms = ms_since(written_at);
  say(std::to_string(opt.nodes) + " records written in " + fixed(write_ms, 0) + " ms; all known to the scheduler after " +
      fixed(known_ms, 0) + " ms (" + std::to_string(probes) + " probes)");

  std::vector<Sample> samples;
  std::string error;
  for (size_t i = 0; i < opt.warmup + opt.requests && error.empty(); ++i) {
    auto before = histogram_totals(ctl.metrics(), kHistogram);
    Sample s;
    auto t0 = SteadyClock::now();
    auto r = bus.request("nodeha.cmd.sched.place", body, 60s);
    auto t1 = SteadyClock::now();
    if (!r) {
      error = "request " + std::to_string(i) + ": " + r.status().message() +
              " (a reply over the server's max_payload is dropped by the controller)";
      break;
    }
    auto j = json::parse(r.value(), nullptr, false);
    auto t2 = SteadyClock::now();
    s.round_trip_ms = std::chrono::duration<double, std::milli>(t2 - t0).count();
    s.parse_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
    s.reply_bytes = r.value().size();
    if (!j.is_object() || !j.value("ok", false) || !j["result"]["placements"].is_array()) {
      error = "request " + std::to_string(i) + " refused: " + r.value().substr(0, 500);
      break;
    }
    for (const auto& p : j["result"]["placements"]) s.placed += p.contains("node") ? 1 : 0;
    // The plugin observes its histogram just after it responds: wait for the count to move.
    std::pair<double, double> after;
    wait_until(
        [&] {
          after = histogram_totals(ctl.metrics(), kHistogram);
          return after.second >= before.second + 1;
        },
        5s);
    if (after.second == before.second + 1) s.controller_ms = (after.first - before.first) * 1000;
    if (i >= opt.warmup) samples.push_back(s);
  }
  auto totals = histogram_totals(ctl.metrics(), kHistogram);
  bool alive = ctl.process().running();
  if (!error.empty() || !alive) {
    say((error.empty() ? "the controller exited" : error) + "\n" + ctl.log().substr(0, 4000));
    return 4;
  }

  std::vector<double> rtt, parse, controller, rest;
  size_t placed_min = opt.vms;
  for (const auto& s : samples) {
    rtt.push_back(s.round_trip_ms);
    parse.push_back(s.parse_ms);
    placed_min = std::min(placed_min, s.placed);
    if (!std::isnan(s.controller_ms)) {
      controller.push_back(s.controller_ms);
      rest.push_back(s.round_trip_ms - s.controller_ms);
    }
  }
  double controller_mean = 0;
  for (double c : controller) controller_mean += c;
  controller_mean = controller.empty() ? std::nan("") : controller_mean / static_cast<double>(controller.size());
  auto p = [](const std::vector<double>& v, double q) { return fixed(percentile(v, q)); };

  std::cout << "| nodes | VMs/request | requests | request KiB | reply KiB | placed (min) | round trip p50 ms | p90 ms | max ms "
               "| controller mean ms | controller p50 ms | controller max ms | rest p50 ms | client parse p50 ms |\n"
               "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  std::cout << "| " << opt.nodes << " | " << opt.vms << " | " << samples.size() << " | "
            << fixed(static_cast<double>(body.size()) / 1024.0) << " | "
            << fixed(samples.empty() ? 0.0 : static_cast<double>(samples.back().reply_bytes) / 1024.0) << " | " << placed_min
            << " | " << p(rtt, 50) << " | " << p(rtt, 90) << " | " << p(rtt, 100) << " | " << fixed(controller_mean) << " | "
            << p(controller, 50) << " | " << p(controller, 100) << " | " << p(rest, 50) << " | " << p(parse, 50) << " |\n\n";
  std::cout << "- round trip: the pre-encoded request handed to the client library -> reply parsed as JSON;\n"
            << "  controller: per-request delta of `" << kHistogram << "` (decode, place, encode, respond);\n"
            << "  rest = round trip - controller (NATS both ways, the controller's hand-off to its loop, client parse)\n"
            << "- controller histogram over the whole run (probes and " << opt.warmup << " warm-up requests included): sum "
            << fixed(totals.first, 4) << " s, count " << fixed(totals.second, 0) << "\n"
            << "- nats-server max_payload: " << (big_payload ? "8MB (config file)" : "default 1 MiB") << "; policy "
            << (opt.policy.empty() ? "plugin default (spread)" : opt.policy) << "\n"
            << "- " << opt.nodes << " records written in " << fixed(write_ms, 0) << " ms, all known after " << fixed(known_ms, 0)
            << " ms; load average at the end: " << loadavg() << "\n\n";

  // The same steps in this process, on the same data; the request must be decodable without the
  // plugin's own fields, which it is (no reserve, no task).
  Split split = split_in_process(records, body, std::max<size_t>(opt.requests, 5));
  std::vector<double> sums;
  for (size_t i = 0; i < split.place.size(); ++i)
    sums.push_back(split.parse[i] + split.decode[i] + split.place[i] + split.encode[i]);
  std::cout << "In this process, the plugin's steps on the same request and nodes (p50 of " << split.place.size()
            << "):\n\n"
               "| VMs/request | JSON parse ms | decode_request ms | place ms | reply text ms | sum ms |\n"
               "|---:|---:|---:|---:|---:|---:|\n"
            << "| " << opt.vms << " | " << p(split.parse, 50) << " | " << p(split.decode, 50) << " | " << p(split.place, 50)
            << " | " << p(split.encode, 50) << " | " << p(sums, 50) << " |\n\n";

  const std::string scale = count_key(opt.vms) + "_vms_" + count_key(opt.nodes) + "_nodes";
  const std::string policy = opt.policy.empty() || opt.policy == "spread" ? "" : "_" + opt.policy;
  figure("scheduler.e2e_" + scale + policy + "_p50_ms", percentile(rtt, 50));
  figure("scheduler.e2e_" + scale + policy + "_p99_ms", percentile(rtt, 99));
  figure("scheduler.e2e_" + scale + policy + "_controller_p50_ms", percentile(controller, 50));
  figure("scheduler.place_" + scale + policy + "_ms", percentile(split.place, 50));
  return 0;
}

}  // namespace
}  // namespace nodeha::bench

int main(int argc, char** argv) {
  nodeha::bench::Options opt;
  CLI::App app{"Placement requests end to end against a real nodeha controller"};
  app.add_option("--nodes", opt.nodes, "node records written to the nodes bucket")->check(CLI::Range(1, 100000));
  app.add_option("--requests", opt.requests, "timed requests")->check(CLI::Range(1, 100000));
  app.add_option("--vms", opt.vms, "VMs in each request")->check(CLI::Range(1, 1000000));
  app.add_option("--warmup", opt.warmup, "untimed requests before the timed ones");
  app.add_option("--seed", opt.seed, "seed of the random capacities and VM sizes");
  app.add_option("--policy", opt.policy, "policy field of the request (default: none, the plugin's default)")
      ->check(CLI::IsMember({"spread", "pack"}));
  app.add_option("--plugin-dir", opt.plugin_dir, "where nodeha_scheduler.so is");
  CLI11_PARSE(app, argc, argv);
  return nodeha::bench::run(opt);
}
