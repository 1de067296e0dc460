// config/grafana/nodeha.json, the shipped Grafana dashboard: its shape, every query parsed by the
// real Prometheus tooling, and every metric a query names exported by nodeha.
//
// Which metrics exist: a scrape of a running controller and agent lists only the series made so
// far (a counter labelled by result appears with its first result; a fence plugin's only where
// one is loaded), so it cannot tell a family that is not yet used from one that does not exist.
// The truth here is the Metrics table of docs/operations.md, each of its names checked against
// the registrations in the source (a counter/gauge/histogram/series call with that literal name),
// and each registration checked to be in the table: a query naming a metric that no code makes
// fails, and so does a table that drifts from the code.
#include "process.h"
#include "wait.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace nodeha::test {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every panel, those nested in collapsed rows too.
void collect_panels(const json& list, std::vector<json>* out) {
  for (const auto& p : list) {
    out->push_back(p);
    if (p.contains("panels") && p["panels"].is_array()) collect_panels(p["panels"], out);
  }
}

struct Query {
  std::string where;  // "panel 3 (Heartbeat age) A"
  std::string expr;
};

// Grafana's own variables become what Prometheus would see once Grafana filled them in.
std::string as_prometheus_sees_it(std::string expr) {
  for (const char* v : {"$__rate_interval", "$__interval", "$__range"}) {
    for (size_t at; (at = expr.find(v)) != std::string::npos;) expr.replace(at, std::strlen(v), "5m");
  }
  return expr;
}

// The metric names of a PromQL expression: identifiers outside strings, label matchers, ranges
// and grouping lists, that are not functions, aggregations (followed by `(`) or keywords.
std::set<std::string> metric_names(const std::string& expr) {
  static const std::set<std::string> kKeywords = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                                                 "offset", "and", "or", "unless", "inf", "nan", "Inf", "NaN", "atan2"};
  std::string s;
  // Blank out strings, {...} and [...].
  int depth_brace = 0, depth_bracket = 0;
  char quote = 0;
  for (size_t i = 0; i < expr.size(); ++i) {
    char c = expr[i];
    if (quote) {
      if (c == '\\') ++i;
      else if (c == quote) quote = 0;
      s += ' ';
      continue;
    }
    if (c == '"' || c == '\'' || c == '`') quote = c, c = ' ';
    else if (c == '{') ++depth_brace, c = ' ';
    else if (c == '}') --depth_brace, c = ' ';
    else if (c == '[') ++depth_bracket, c = ' ';
    else if (c == ']') --depth_bracket, c = ' ';
    s += (depth_brace || depth_bracket) ? ' ' : c;
  }
  // Grouping lists name labels: by (...), on (...), ...
  static const std::regex kGrouping(R"(\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))");
  s = std::regex_replace(s, kGrouping, " ");
  std::set<std::string> out;
  static const std::regex kIdent(R"(([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?)");
  for (std::sregex_iterator it(s.begin(), s.end(), kIdent), end; it != end; ++it) {
    std::string name = (*it)[1];
    size_t at = static_cast<size_t>(it->position(0));
    bool part_of_number = at > 0 && std::isdigit(static_cast<unsigned char>(s[at - 1]));  // 5m, 1e3
    if ((*it)[2].matched || kKeywords.count(name) || part_of_number) continue;
    out.insert(name);
  }
  return out;
}

// The names in the first column of docs/operations.md's Metrics table.
std::set<std::string> documented_metrics() {
  std::string doc = read(fs::path(NODEHA_SOURCE_DIR) / "docs/operations.md");
  size_t from = doc.find("\n## Metrics\n");
  EXPECT_NE(from, std::string::npos) << "docs/operations.md has no Metrics section";
  size_t to = doc.find("\n## ", from + 1);
  std::istringstream lines(doc.substr(from, to == std::string::npos ? std::string::npos : to - from));
  std::set<std::string> names;
  static const std::regex kName(R"(`(nodeha_[a-z0-9_]+))");
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("| `", 0) != 0) continue;
    std::string first = line.substr(0, line.find(" | "));
    for (std::sregex_iterator it(first.begin(), first.end(), kName), end; it != end; ++it) names.insert((*it)[1]);
  }
  return names;
}

// name -> histogram? for every metric the host and the plugins register.
std::map<std::string, bool> registered_metrics() {
  static const std::regex kSdk(R"re(\b(counter|gauge|histogram)\(\s*"(nodeha_[a-z0-9_]+)")re");
  static const std::regex kHost(R"re(series\(\s*NODEHA_METRIC_([A-Z]+),\s*"(nodeha_[a-z0-9_]+)")re");
  std::map<std::string, bool> out;
  for (const char* dir : {"host", "plugins"})
    for (const auto& e : fs::recursive_directory_iterator(fs::path(NODEHA_SOURCE_DIR) / dir)) {
      auto ext = e.path().extension();
      if (!e.is_regular_file() || (ext != ".cpp" && ext != ".h" && ext != ".hpp")) continue;
      std::string text = read(e.path());
      for (std::sregex_iterator it(text.begin(), text.end(), kSdk), end; it != end; ++it)
        out[(*it)[2]] = out[(*it)[2]] || (*it)[1] == "histogram";
      for (std::sregex_iterator it(text.begin(), text.end(), kHost), end; it != end; ++it)
        out[(*it)[2]] = out[(*it)[2]] || (*it)[1] == "HISTOGRAM";
    }
  return out;
}

class GrafanaDashboard : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string text = read(fs::path(NODEHA_SOURCE_DIR) / "config/grafana/nodeha.json");
    dash_ = json::parse(text, nullptr, false);
    ASSERT_TRUE(dash_.is_object()) << "config/grafana/nodeha.json is not a JSON object";
    ASSERT_TRUE(dash_.contains("panels") && dash_["panels"].is_array());
    collect_panels(dash_["panels"], &panels_);
    for (const auto& p : panels_) {
      if (p.value("type", "") == "row") continue;
      for (const auto& t : p.value("targets", json::array()))
        queries_.push_back({"panel " + std::to_string(p.value("id", -1)) + " (" + p.value("title", "") + ") " +
                                t.value("refId", "?"),
                            t.value("expr", "")});
    }
  }
  json dash_;
  std::vector<json> panels_;
  std::vector<Query> queries_;
};

TEST_F(GrafanaDashboard, HasTheShapeGrafanaImports) {
  EXPECT_TRUE(dash_["title"].is_string());
  EXPECT_TRUE(dash_["uid"].is_string());
  ASSERT_TRUE(dash_["schemaVersion"].is_number_integer());
  EXPECT_GE(dash_["schemaVersion"].get<int>(), 36);  // panels' own datasource objects
  // The datasource is chosen at import (a `datasource` variable), not a uid of one installation.
  bool variable = false;
  for (const auto& v : dash_["templating"]["list"]) variable |= v.value("type", "") == "datasource" && v["name"] == "datasource";
  EXPECT_TRUE(variable) << "no `datasource` template variable";

  std::set<int> ids;
  size_t graphs = 0;
  for (const auto& p : panels_) {
    ASSERT_TRUE(p["id"].is_number_integer()) << p.dump();
    EXPECT_TRUE(ids.insert(p["id"].get<int>()).second) << "panel id " << p["id"] << " twice";
    EXPECT_TRUE(p["gridPos"].is_object()) << p["title"];
    EXPECT_FALSE(p.value("title", "").empty()) << p["id"];
    if (p.value("type", "") == "row") continue;
    ++graphs;
    EXPECT_EQ(p["datasource"]["uid"], "${datasource}") << p["title"];
    ASSERT_TRUE(p.contains("targets") && p["targets"].is_array() && !p["targets"].empty()) << p["title"] << " has no target";
    std::set<std::string> refs;
    for (const auto& t : p["targets"]) {
      ASSERT_TRUE(t.contains("expr") && t["expr"].is_string() && !t["expr"].get<std::string>().empty())
          << p["title"] << ": a target without an expr: " << t.dump();
      EXPECT_TRUE(refs.insert(t.value("refId", "")).second) << p["title"] << ": refId twice";
    }
  }
  EXPECT_GE(graphs, 6u);
}

// Each expr as a recording rule: `promtool check rules` parses it with Prometheus' own parser.
TEST_F(GrafanaDashboard, EveryQueryParsesWithPromtool) {
  ASSERT_FALSE(queries_.empty());
  TempDir dir;
  std::string rules = dir.path() + "/dashboard-rules.yml";
  {
    std::ofstream out(rules);
    out << "groups:\n  - name: grafana_dashboard\n    rules:\n";
    for (size_t i = 0; i < queries_.size(); ++i)  // a JSON string is a YAML double-quoted scalar
      out << "      - record: grafana:query_" << i << "\n        expr: " << json(as_prometheus_sees_it(queries_[i].expr)).dump()
          << "\n";
  }
  Process p({NODEHA_PROMTOOL, "check", "rules", rules}, rules + ".log");
  auto code = p.wait_exit(std::chrono::seconds(60));
  ASSERT_TRUE(code.has_value()) << "promtool did not finish";
  EXPECT_EQ(*code, 0) << p.output();
  EXPECT_THAT(p.output(), ::testing::HasSubstr("SUCCESS: " + std::to_string(queries_.size()) + " rules found"));
}

TEST_F(GrafanaDashboard, EveryMetricAQueryNamesIsOneNodehaExports) {
  auto documented = documented_metrics();
  auto registered = registered_metrics();
  ASSERT_GT(documented.size(), 20u);
  for (const auto& name : documented) EXPECT_TRUE(registered.count(name)) << name << " is in docs/operations.md's Metrics table but no code registers it";
  for (const auto& [name, histogram] : registered)
    EXPECT_TRUE(documented.count(name)) << name << " is registered but missing from docs/operations.md's Metrics table";

  std::set<std::string> used;
  for (const auto& q : queries_) {
    auto names = metric_names(q.expr);
    EXPECT_FALSE(names.empty()) << q.where << " names no metric: " << q.expr;
    for (const auto& n : names) {
      std::string family = n;
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        std::string s = suffix;
        if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0 && registered.count(n.substr(0, n.size() - s.size())) &&
            registered[n.substr(0, n.size() - s.size())])
          family = n.substr(0, n.size() - s.size());
      }
      EXPECT_TRUE(documented.count(family) && registered.count(family)) << q.where << " names " << n << ", which nodeha does not export";
      EXPECT_TRUE(family == n || registered[family]) << q.where << ": " << n << " of a family that is no histogram";
      used.insert(family);
    }
  }
  // What the dashboard is for (issue 17): each of these appears in some query.
  for (const char* must : {"nodeha_node_monitor_state", "nodeha_node_management_state", "nodeha_node_heartbeat_age_seconds",
                           "nodeha_tasks_running", "nodeha_task_steps_total", "nodeha_migrate_bytes_total",
                           "nodeha_migrate_duration_seconds", "nodeha_scheduler_duration_seconds", "nodeha_bus_connected",
                           "nodeha_config_reloads_total"})
    EXPECT_TRUE(used.count(must)) << "no panel shows " << must;
}

// The extraction itself: what it must find and what it must leave alone.
TEST(PromqlMetricNames, FindsMetricsAndSkipsLabelsFunctionsAndKeywords) {
  EXPECT_EQ(metric_names(R"(histogram_quantile(0.95, sum by (kind, le) (rate(nodeha_task_duration_seconds_bucket{a="x y"}[5m]))))"),
            std::set<std::string>{"nodeha_task_duration_seconds_bucket"});
  EXPECT_EQ(metric_names("max by (node) (a * 2 + ignoring (state) b and on (instance) (c == 1)) offset 1h"),
            (std::set<std::string>{"a", "b", "c"}));
  EXPECT_EQ(metric_names("node_cpu_seconds_total > 1e3"), std::set<std::string>{"node_cpu_seconds_total"});
}

}  // namespace
}  // namespace nodeha::test
