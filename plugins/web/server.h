// The web plugin's HTTP(S) server: Boost.Beast on an io_context of its own, run by one thread of
// the plugin (never the plugin's event loop). Hostile clients: GET and HEAD only, headers bounded
// (8 KiB) and no body, 10 s to send a request and 10 s to take the answer, a bad request gets 400
// and the connection closes; at most kMaxConnections at once (more are closed on accept).
//
// Threads: the constructor and start()/stop() on the plugin's event thread; everything else on
// the server's thread.
#pragma once

#include "alert_proxy.h"
#include "site.h"

#include "thread_set.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

namespace nodeha::web {

struct ServerConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 8480;
  std::string tls_cert, tls_key;  // both empty: plain HTTP
  std::optional<HttpUrl> alertmanager;
};

class Server {
 public:
  static constexpr int kMaxConnections = 256;
  Server(Site site, ServerConfig config);
  ~Server();
  // Binds and starts serving; the address's error (in use, no such address, bad TLS files).
  Status start();
  void stop();
  // "https://127.0.0.1:8480" (the bound port).
  std::string url() const;

 private:
  void accept();
  Site site_;
  ServerConfig config_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::optional<boost::asio::ssl::context> tls_;
  std::optional<AlertProxy> alerts_;
  std::shared_ptr<std::atomic<int>> connections_ = std::make_shared<std::atomic<int>>(0);
  ThreadSet threads_;  // last: joined before the rest goes
};

}  // namespace nodeha::web
