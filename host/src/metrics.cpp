#include "metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <fmt/format.h>

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <set>
#include <thread>
#include <variant>

namespace nodeha::host {
using Labels = std::map<std::string, std::string>;
}

// The opaque series handle plugins hold. A controller holds 7 for each node, 70,000 at 10,000
// nodes: its family and labels are pointers to where Metrics keeps them, not copies.
struct nodeha_metric {
  nodeha_metric_kind kind;
  prometheus::Counter* counter = nullptr;
  prometheus::Gauge* gauge = nullptr;
  prometheus::Histogram* histogram = nullptr;
  nodeha::host::Metrics::Family* family = nullptr;
  const nodeha::host::Labels* labels = nullptr;  // its key in family->series
  int holders = 0;  // guarded by Metrics::mu_
};

namespace nodeha::host {

struct Metrics::Family {
  nodeha_metric_kind kind;
  std::set<std::string> label_names;
  prometheus::Family<prometheus::Counter>* counters = nullptr;
  prometheus::Family<prometheus::Gauge>* gauges = nullptr;
  prometheus::Family<prometheus::Histogram>* histograms = nullptr;
  std::map<Labels, std::unique_ptr<nodeha_metric>> series;
};

Result<std::unique_ptr<Metrics>> Metrics::create(const std::string& listen) {
  std::unique_ptr<Metrics> m(new Metrics());
  m->registry_ = std::make_shared<prometheus::Registry>();
  try {
    // No keep-alive: a worker reading an idle scraper's connection sees a stop only between its
    // 2 s read quanta, which would hold the exit as long; a scrape every few seconds needs no reuse.
    m->exposer_ = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", listen, "num_threads", "2", "enable_keep_alive", "no"});
  } catch (const std::exception& e) {
    return Status(NODEHA_ERR_INVALID, fmt::format("[metrics] listen {}: cannot bind: {}", listen, e.what()));
  }
  m->exposer_->RegisterCollectable(m->registry_);
  auto ports = m->exposer_->GetListeningPorts();
  auto colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  m->address_ = fmt::format("{}:{}", host, ports.empty() ? 0 : ports.front());
  return m;
}

namespace {

// Opens a connection to host:port (the wildcard addresses as loopback) and closes it, waiting at
// most 50 ms for it to be accepted into the queue.
void knock(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return;
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || !found) return;
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    if (connect(fd, found->ai_addr, found->ai_addrlen) != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      (void)poll(&p, 1, 50);
    }
    close(fd);
  }
  freeaddrinfo(found);
}

}  // namespace

// civetweb's listener polls in 2 s quanta and sees a stop only when its poll returns, so a host
// would take up to 2 s to exit (and a node to be replaced in a restart). A connection of our own
// wakes it: knocked until the server has stopped.
Metrics::~Metrics() {
  if (!exposer_) return;
  std::atomic<bool> stopped{false};
  std::thread knocker([&] {
    while (!stopped) {
      knock(address_);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  exposer_.reset();
  stopped = true;
  knocker.join();
}

nodeha_metric* Metrics::series(nodeha_metric_kind kind, const std::string& name, const std::string& help,
                               const std::vector<std::pair<std::string, std::string>>& labels,
                               const std::vector<double>& buckets, std::string* error) {
  std::lock_guard lock(mu_);
  std::set<std::string> names;
  Labels label_map;
  for (const auto& [k, v] : labels) {
    names.insert(k);
    label_map[k] = v;
  }
  auto it = families_.find(name);
  if (it == families_.end()) {
    auto f = std::make_unique<Family>();
    f->kind = kind;
    f->label_names = names;
    try {
      switch (kind) {
        case NODEHA_METRIC_COUNTER: f->counters = &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_); break;
        case NODEHA_METRIC_GAUGE: f->gauges = &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_); break;
        case NODEHA_METRIC_HISTOGRAM: f->histograms = &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_); break;
        default:
          if (error) *error = "unknown metric kind";
          return nullptr;
      }
    } catch (const std::exception& e) {
      if (error) *error = fmt::format("metric {}: {}", name, e.what());
      return nullptr;
    }
    it = families_.emplace(name, std::move(f)).first;
  }
  Family& f = *it->second;
  if (f.kind != kind || f.label_names != names) {
    if (error) *error = fmt::format("metric {} is already registered with another kind or other label names", name);
    return nullptr;
  }
  auto s = f.series.find(label_map);
  if (s != f.series.end()) return s->second.get();
  auto m = std::make_unique<nodeha_metric>();
  m->kind = kind;
  m->family = &f;
  try {
    switch (kind) {
      case NODEHA_METRIC_COUNTER: m->counter = &f.counters->Add(label_map); break;
      case NODEHA_METRIC_GAUGE: m->gauge = &f.gauges->Add(label_map); break;
      case NODEHA_METRIC_HISTOGRAM: {
        prometheus::Histogram::BucketBoundaries b(buckets.begin(), buckets.end());
        if (b.empty()) b = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
        m->histogram = &f.histograms->Add(label_map, b);
        break;
      }
    }
  } catch (const std::exception& e) {
    if (error) *error = fmt::format("metric {}: {}", name, e.what());
    return nullptr;
  }
  auto placed = f.series.emplace(std::move(label_map), std::move(m)).first;
  placed->second->labels = &placed->first;
  return placed->second.get();
}

void Metrics::hold(nodeha_metric* m) {
  std::lock_guard lock(mu_);
  ++m->holders;
}

void Metrics::remove(nodeha_metric* m) {
  if (!m) return;
  std::lock_guard lock(mu_);
  if (m->holders > 0 && --m->holders > 0) return;  // another instance still uses it
  Family& f = *m->family;  // families are never removed
  if (m->counter) f.counters->Remove(m->counter);
  if (m->gauge) f.gauges->Remove(m->gauge);
  if (m->histogram) f.histograms->Remove(m->histogram);
  f.series.erase(*m->labels);  // destroys m
}

void Metrics::add(nodeha_metric* m, double v) {
  if (m->counter && v >= 0) m->counter->Increment(v);
  if (m->gauge) m->gauge->Increment(v);
}
void Metrics::set(nodeha_metric* m, double v) {
  if (m->gauge) m->gauge->Set(v);
}
void Metrics::observe(nodeha_metric* m, double v) {
  if (m->histogram) m->histogram->Observe(v);
}

}  // namespace nodeha::host
