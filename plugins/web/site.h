// The web page's files and answers, pure: what the `web` plugin's HTTP server sends for a request
// line. The files are read once at start into a fixed table (every regular file directly in the
// directory named like `app.js`: letters, digits, '-', '_', one dot, a known type), so no path
// from a request ever reaches the file system (no traversal, no symlink surprises); /config.json
// is made from the plugin's config.
//
// Threads: load() anywhere; a loaded Site is immutable and answer() may run on any thread.
#pragma once

#include <nodeha/plugin.hpp>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace nodeha::web {

// The files the page cannot go without (web/ in the source tree, the share dir when installed).
inline const std::vector<std::string> kPageFiles = {"index.html", "app.js", "style.css"};
// At most this much is loaded (the page is a few tens of KiB).
inline constexpr size_t kMaxSiteBytes = 8u << 20;

struct SiteConfig {
  std::vector<std::string> servers;  // wss:// URLs the browser connects to
  std::string prefix;                // the NATS subject prefix
  bool alerts = false;               // whether /api/alerts proxies an Alertmanager
};

struct Answer {
  unsigned status = 200;
  std::string content_type;
  std::string body;
  bool no_store = false;  // Cache-Control: no-store (config.json, errors, alerts)
  bool alerts = false;    // the caller must fetch from the Alertmanager (GET /api/alerts)
};

class Site {
 public:
  // INVALID when one of kPageFiles is missing, a file is unreadable, or there is too much.
  static Result<Site> load(const std::string& dir, SiteConfig config);
  // The answer to `method` on `target` (the request line's path, with any query). HEAD gets the
  // headers of GET (the server sends no body). Only GET and HEAD are served.
  Answer answer(std::string_view method, std::string_view target) const;
  // The headers every answer carries (security; the server adds Content-Type and Cache-Control).
  static const std::vector<std::pair<std::string, std::string>>& security_headers();

 private:
  std::map<std::string, Answer> files_;  // "/index.html" -> its answer
  std::string config_json_;
};

// A JSON error body {"error": {"code", "message"}}.
Answer error_answer(unsigned status, std::string_view code, std::string_view message);

}  // namespace nodeha::web
