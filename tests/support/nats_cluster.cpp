#include "nats_cluster.h"

#include <gtest/gtest.h>

namespace nodeha::test {

namespace {
const char* kClusterName = "nodeha-test";
const char* kStreamsQuery = "/jsz?accounts=true&streams=true";
}

NatsCluster::NatsCluster(NatsClusterOptions options) : netns_(options.netns), address_(options.address) {
  // Every port first: each server's routes name the others' route ports.
  std::vector<int> client_ports, route_ports;
  auto port = [&](int offset, size_t i) {
    return options.first_port == 0 ? free_port() : options.first_port + offset + static_cast<int>(i);
  };
  for (size_t i = 0; i < options.servers; ++i) {
    client_ports.push_back(port(0, i));
    route_ports.push_back(port(10, i));
    monitor_ports_.push_back(port(20, i));
  }
  for (size_t i = 0; i < options.servers; ++i) {
    std::string routes;
    for (size_t j = 0; j < options.servers; ++j)
      if (j != i) routes += std::string(routes.empty() ? "" : ", ") + "nats-route://" + address_ + ":" + std::to_string(route_ports[j]);
    NatsServerOptions o;
    o.netns = netns_;
    o.address = address_;
    o.port = client_ports[i];
    o.include = options.include;
    o.config = "server_name: " + name(i) + "\nhttp: " + address_ + ":" + std::to_string(monitor_ports_[i]) +
               "\ncluster {\n  name: " + kClusterName + "\n  listen: " + address_ + ":" + std::to_string(route_ports[i]) +
               "\n  routes: [" + routes + "]\n}\n" + options.config;
    if (!options.websocket_cert.empty()) {
      int ws = port(30, i);
      o.config += "websocket {\n  port: " + std::to_string(ws) + "\n  tls {\n    cert_file: \"" + options.websocket_cert +
                  "\"\n    key_file: \"" + options.websocket_key + "\"\n  }\n}\n";
      websocket_urls_.push_back("wss://" + address_ + ":" + std::to_string(ws));
    }
    servers_.push_back(std::make_unique<NatsServer>(std::move(o)));
  }
  if (wait_meta_leader().empty()) {
    std::string logs;
    for (size_t i = 0; i < size(); ++i) logs += "--- " + name(i) + ":\n" + servers_[i]->log();
    ADD_FAILURE() << "the NATS cluster elected no JetStream meta leader within 20 s\n" << logs;
  }
}

std::vector<std::string> NatsCluster::urls() const {
  std::vector<std::string> out;
  for (const auto& s : servers_) out.push_back(s->url());
  return out;
}

std::string NatsCluster::urls_csv() const {
  std::string out;
  for (const auto& u : urls()) out += (out.empty() ? "" : ",") + u;
  return out;
}

nlohmann::json NatsCluster::monitor(size_t i, const std::string& path) const {
  if (!servers_.at(i)->running()) return nullptr;
  auto reply = http_fetch(address_ + ":" + std::to_string(monitor_ports_.at(i)), path, netns_);
  if (reply.status != 200) return nullptr;
  return nlohmann::json::parse(reply.body, nullptr, false);
}

std::string NatsCluster::agreed_meta_leader(const std::string& query, Reports* reports) const {
  std::string leader;
  for (size_t i = 0; i < size(); ++i) {
    if (!servers_[i]->running()) continue;
    auto jsz = monitor(i, query);
    if (!jsz.is_object()) return "";
    std::string named = jsz.value("/meta_cluster/leader"_json_pointer, std::string());
    if (named.empty() || (!leader.empty() && named != leader)) return "";
    leader = named;
    if (reports) reports->emplace_back(i, std::move(jsz));
  }
  return leader;
}

void NatsCluster::streams_in(const nlohmann::json& jsz, const std::string& server, std::set<std::string>* all,
                             std::vector<std::string>* led) {
  for (const auto& account : jsz.value("account_details", nlohmann::json::array()))
    for (const auto& stream : account.value("stream_detail", nlohmann::json::array())) {
      std::string name = stream.value("name", "");
      if (all) all->insert(name);
      if (stream.value("/cluster/leader"_json_pointer, std::string()) == server) led->push_back(name);
    }
}

std::string NatsCluster::wait_meta_leader(std::chrono::milliseconds timeout) const {
  std::string leader;
  bool agreed = wait_until([&] { return !(leader = agreed_meta_leader("/jsz", nullptr)).empty(); }, timeout);
  return agreed ? leader : "";
}

nlohmann::json NatsCluster::stream_info(const std::string& stream_name) const {
  // A follower's report of the group can be stale (an old leader, a replica long gone): the
  // leader's own report wins, any other only when no server says it leads.
  nlohmann::json any = nullptr;
  for (size_t i = 0; i < size(); ++i) {
    auto jsz = monitor(i, "/jsz?accounts=true&streams=true&config=true");
    if (!jsz.is_object()) continue;
    for (const auto& account : jsz.value("account_details", nlohmann::json::array()))
      for (const auto& stream : account.value("stream_detail", nlohmann::json::array())) {
        if (stream.value("name", "") != stream_name) continue;
        if (stream.value("/cluster/leader"_json_pointer, std::string()) == name(i)) return stream;
        if (any.is_null()) any = stream;
      }
  }
  return any;
}

std::optional<size_t> NatsCluster::stream_leader(const std::string& stream) const {
  auto info = stream_info(stream);
  if (!info.is_object()) return std::nullopt;
  std::string leader = info.value("/cluster/leader"_json_pointer, std::string());
  for (size_t i = 0; i < size(); ++i)
    if (name(i) == leader) return i;
  return std::nullopt;
}

std::vector<std::string> NatsCluster::groups_led_by(size_t i) const {
  std::vector<std::string> led;
  auto jsz = monitor(i, kStreamsQuery);
  if (!jsz.is_object()) return led;
  if (jsz.value("/meta_cluster/leader"_json_pointer, std::string()) == name(i)) led.push_back("the meta group");
  streams_in(jsz, name(i), nullptr, &led);
  return led;
}

bool NatsCluster::all_groups_led() const {
  Reports reports;
  std::string meta = agreed_meta_leader(kStreamsQuery, &reports);
  std::set<std::string> streams;
  std::vector<std::string> led;
  for (const auto& [i, jsz] : reports) streams_in(jsz, name(i), &streams, &led);
  bool meta_runs = false;
  for (size_t i = 0; i < size(); ++i) meta_runs |= name(i) == meta && servers_[i]->running();
  return meta_runs && streams == std::set<std::string>(led.begin(), led.end());
}

std::optional<size_t> NatsCluster::serving(const std::string& client_name) const {
  for (size_t i = 0; i < size(); ++i) {
    auto connz = monitor(i, "/connz?limit=1024");
    if (!connz.is_object()) continue;
    for (const auto& c : connz.value("connections", nlohmann::json::array()))
      if (c.value("name", "") == client_name) return i;
  }
  return std::nullopt;
}

host::NatsSettings NatsCluster::settings() const {
  host::NatsSettings s = servers_.front()->settings();
  s.servers = urls();
  s.kv_replicas = static_cast<int64_t>(size());
  return s;
}

std::unique_ptr<host::Bus> NatsCluster::client() const {
  for (const auto& s : servers_)
    if (s->running()) return s->client(settings());
  ADD_FAILURE() << "no server of the NATS cluster runs: no test client";
  return nullptr;
}

}  // namespace nodeha::test
