// The host's Prometheus registry and /metrics endpoint; plugins register through it.
#pragma once

#include <nodeha/plugin.h>
#include <nodeha/plugin.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace prometheus {
class Registry;
class Exposer;
}  // namespace prometheus

namespace nodeha::host {

class Metrics {
 public:
  // Binds `listen` ("host:port"; port 0 picks a free one).
  static Result<std::unique_ptr<Metrics>> create(const std::string& listen);
  ~Metrics();

  // "host:port" actually bound.
  const std::string& address() const { return address_; }

  // The series for these labels; NULL when the name is used with another kind or label names.
  nodeha_metric* series(nodeha_metric_kind kind, const std::string& name, const std::string& help,
                        const std::vector<std::pair<std::string, std::string>>& labels,
                        const std::vector<double>& buckets, std::string* error);
  // A plugin instance holds a series until it removes it or stops; the series goes when its
  // last holder lets go (two instances may share one series).
  void hold(nodeha_metric* m);
  void remove(nodeha_metric* m);

  static void add(nodeha_metric* m, double v);
  static void set(nodeha_metric* m, double v);
  static void observe(nodeha_metric* m, double v);

  struct Family;  // one metric name: its kind, label names and series (metrics.cpp)

 private:
  Metrics() = default;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_;
};

}  // namespace nodeha::host
