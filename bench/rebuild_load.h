// The evacuation benchmark (executable rebuild_load; docs/performance.md, "Evacuation"): what its
// two modes share. rebuild_load.cpp has main() and these helpers; rebuild_load_control.cpp the
// control-plane cost on the libvirt test driver; rebuild_load_real.cpp nodeha side by side with
// an operator's virsh loops on one real libvirtd.
//
// Threads: one. Requests are synchronous; conditions are polled with deadlines (wait_until).
#pragma once

#include "bus.h"
#include "measure.h"
#include "process.h"
#include "wait.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nodeha::bench {

using namespace std::chrono_literals;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

struct Options {
  std::string mode = "control";
  size_t vms = 0;  // 0: the mode's default (1000 control, 10 real)
  size_t targets = 4;
  int parallel = 0;             // rebuild's `parallel`; 0: the plugin's default
  std::string drain_retry;      // drain's `retry_every`; empty: the plugin's default
  size_t repeat = 3;
  int deadline_s = 600;
  int workers = 0;              // every host's [host] workers; 0: the host's default
  std::string perf;             // control: perf record the controller during the rebuild into this file
  bool drain_by_record = false; // control: node-a set drained in its record, no drain task beside the rebuild
  bool no_loops = false;        // real: nodeha's runs only (ratios n/a)
  int max_client_requests = 0;  // real: libvirtd's max_client_requests; 0: libvirt's default (5)
};

int run_control(const Options& opt);
int run_real(const Options& opt);

// ---- small things ----------------------------------------------------------------------------

void say(const std::string& s);  // a progress line on stderr
int64_t unix_ms();
double s_since(SteadyClock::time_point t);
std::string tail(const std::string& log, size_t n = 3000);
// wait_until of tests/support/wait.h that also gives up once SIGINT or SIGTERM arrived: an
// interrupted run then returns through its destructors, which stop its processes, remove its
// guests and temp dirs.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 10s);
bool interrupted();
// Calls `cond` at most every `period` until it holds or `timeout` passes (for checks too heavy
// for wait_until's 10 ms polling: a kv_list of 1,000 records, a 236 KiB task record).
bool poll_until(const std::function<bool()>& cond, std::chrono::milliseconds period, std::chrono::milliseconds timeout);

// ---- the processes ---------------------------------------------------------------------------

// nats-server -js on a free loopback port, its store in a temp dir (its pid is wanted for its CPU).
struct Nats {
  Nats();
  ~Nats();
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port); }
  test::TempDir dir;
  int port = 0;
  std::unique_ptr<test::Process> proc;
};

// A controller: heartbeat (1 s), scheduler (no reserve, cpu_ratio 32), tasks, drain (stop_timeout
// 0s), rebuild; and an agent: heartbeat (1 s) and vms on `libvirt_uri`. Plugin keys not named
// here are at their defaults.
std::string controller_config(const Options& opt, const std::string& url);
std::string agent_config(const Options& opt, const std::string& node, const std::string& url, const std::string& libvirt_uri);

// The benchmark's own NATS client and the questions it asks the cluster.
class Client {
 public:
  explicit Client(const std::string& url);
  explicit operator bool() const { return bus_ != nullptr; }
  host::Bus& bus() { return *bus_; }
  // The reply envelope of `nodeha.<subject>`; {ok:false, error:{code:"no_answer"}} when none came.
  json request(const std::string& subject, const json& body, std::chrono::milliseconds timeout = 10s);
  json get(const std::string& bucket, const std::string& key);  // null when absent
  std::vector<json> list(const std::string& bucket);
  bool normal(const std::string& node);  // monitor normal, capacity reported
  // uuid -> state of the domains an agent reports; empty when it does not answer.
  std::map<std::string, std::string> domains(const std::string& node);

 private:
  std::unique_ptr<host::Bus> bus_;
};

// ---- task records ----------------------------------------------------------------------------

// What a finished task's record says about its timing (unix ms of the controller, this machine's clock).
struct TaskTiming {
  double plan_ms = 0;        // request sent -> task started (vms bucket read, placement, lock, stored)
  double run_ms = 0;         // task started -> finished
  double total_ms = 0;       // request sent -> finished
  std::vector<double> steps_ms;  // started -> finished of each succeeded step
  double first_step_ms = 0;  // task started -> first step started
  double last_step_ms = 0;   // last step finished -> task finished
  double busy = 0;           // sum of step durations / run time: steps running at once, on average
  size_t succeeded = 0;
};
TaskTiming timing_of(const json& task, int64_t requested_ms);

// Polls the task's record every `period` until its state is final; the record (with
// "bench_record_bytes", its size), or null on timeout. `revisions` (optional) gets the record's
// revision at the first and the last read: their difference counts every write to the tasks
// bucket in between (a bucket's revisions are one sequence).
json wait_task(Client& c, const std::string& id, std::chrono::milliseconds period, std::chrono::milliseconds timeout,
               std::pair<uint64_t, uint64_t>* revisions = nullptr);

json without_xml(json record);
// The first few steps that neither succeeded nor were skipped, one a line.
std::string step_errors(const json& task, size_t max = 5);

}  // namespace nodeha::bench
