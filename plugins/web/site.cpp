#include "site.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace nodeha::web {
namespace {

// The type of a page file's name; empty: not one the page serves.
std::string content_type_of(const std::string& name) {
  size_t dot = name.find('.');
  if (dot == 0 || dot == std::string::npos || name.find_first_not_of(
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != std::string::npos ||
      name.find('.', dot + 1) != std::string::npos)
    return "";
  std::string ext = name.substr(dot);
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".png") return "image/png";
  if (ext == ".svg") return "image/svg+xml";
  return "";
}

}  // namespace

Answer error_answer(unsigned status, std::string_view code, std::string_view message) {
  nlohmann::json body = {{"error", {{"code", code}, {"message", message}}}};
  return {status, "application/json", body.dump(), true, false};
}

Result<Site> Site::load(const std::string& dir, SiteConfig config) {
  Site site;
  std::vector<std::string> names = kPageFiles;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && !content_type_of(name).empty() &&
        std::find(names.begin(), names.end(), name) == names.end())
      names.push_back(name);
  }
  size_t total = 0;
  for (const auto& name : names) {
    std::string path = dir + "/" + name;
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status(NODEHA_ERR_INVALID, "web page file " + path + " cannot be read (set files to the directory of " +
                                    "index.html, app.js and style.css)");
    std::ostringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) return Status(NODEHA_ERR_INVALID, "web page file " + path + " could not be read to its end");
    total += text.str().size();
    if (total > kMaxSiteBytes) return Status(NODEHA_ERR_INVALID, "the web page files in " + dir + " exceed " +
                                                                     std::to_string(kMaxSiteBytes >> 20) + " MiB");
    site.files_["/" + name] = {200, content_type_of(name), text.str(), false, false};
  }
  site.config_json_ =
      nlohmann::json{{"servers", config.servers}, {"prefix", config.prefix}, {"alerts", config.alerts}}.dump();
  return site;
}

Answer Site::answer(std::string_view method, std::string_view target) const {
  if (method != "GET" && method != "HEAD")
    return error_answer(405, "method_not_allowed", "only GET and HEAD are served here");
  std::string_view path = target.substr(0, target.find_first_of("?#"));
  if (path == "/") path = "/index.html";
  if (auto it = files_.find(std::string(path)); it != files_.end()) return it->second;
  if (path == "/config.json") return {200, "application/json", config_json_, true, false};
  if (path == "/api/alerts") {
    Answer a{200, "application/json", "", true, true};
    return a;
  }
  return error_answer(404, "not_found", "no such page: the page is at /");
}

const std::vector<std::pair<std::string, std::string>>& Site::security_headers() {
  static const std::vector<std::pair<std::string, std::string>> kHeaders = {
      {"Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
  };
  return kHeaders;
}

}  // namespace nodeha::web
