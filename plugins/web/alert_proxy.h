// GET of the active, unsilenced, uninhibited alerts from an Alertmanager, for /api/alerts: at most
// one request in flight (every page asking meanwhile waits for that one's answer), 2 s per try, so
// a slow or dead Alertmanager costs it nothing and many open pages cost it one request at a time.
//
// Threads: every method on the io_context's thread (the web server's).
#pragma once

#include "site.h"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace nodeha::web {

struct HttpUrl {
  std::string host, port, path;  // path without a trailing '/'
};
// "http://host[:port][/path]"; INVALID otherwise (https is not spoken to an Alertmanager here).
Result<HttpUrl> parse_http_url(const std::string& url);

class AlertProxy {
 public:
  AlertProxy(boost::asio::io_context& io, HttpUrl url, std::chrono::milliseconds timeout);
  // Calls `done` with the Alertmanager's JSON (200) or a 502 error answer.
  void fetch(std::function<void(Answer)> done);

 private:
  void finish(Answer a);
  boost::asio::io_context& io_;
  HttpUrl url_;
  std::chrono::milliseconds timeout_;
  std::vector<std::function<void(Answer)>> waiting_;  // non-empty: a request is in flight
};

}  // namespace nodeha::web
