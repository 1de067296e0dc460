#include "server.h"

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace nodeha::web {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr auto kIoTimeout = std::chrono::seconds(10);
constexpr uint32_t kHeaderLimit = 8192;

// One connection. Stream: beast::tcp_stream or beast::ssl_stream<beast::tcp_stream>.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream stream, const Site& site, AlertProxy* alerts, std::shared_ptr<std::atomic<int>> count)
      : stream_(std::move(stream)), site_(site), alerts_(alerts), count_(std::move(count)) {}
  ~Session() { --*count_; }

  void run() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      read();
    } else {
      beast::get_lowest_layer(stream_).expires_after(kIoTimeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (!ec) self->read();
                              });
    }
  }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(0);
    beast::get_lowest_layer(stream_).expires_after(kIoTimeout);
    http::async_read(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted)
      return close();
    if (ec) {
      keep_alive_ = false;
      return send(error_answer(400, "bad_request", "the request could not be read: " + ec.message()), false);
    }
    const auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    bool head = req.method() == http::verb::head;
    Answer a = site_.answer(std::string(req.method_string()), std::string(req.target()));
    if (!a.alerts) return send(std::move(a), head);
    if (!alerts_) return send(error_answer(404, "not_configured", "no alertmanager is configured for this page"), head);
    alerts_->fetch([self = this->shared_from_this(), head](Answer got) { self->send(std::move(got), head); });
  }

  void send(Answer a, bool head) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(a.status), 11);
    res->set(http::field::server, "nodeha");
    res->set(http::field::content_type, a.content_type);
    res->set(http::field::cache_control, a.no_store ? "no-store" : "no-cache");
    for (const auto& [name, value] : Site::security_headers()) res->set(name, value);
    if (a.status == 405) res->set(http::field::allow, "GET, HEAD");
    res->keep_alive(keep_alive_);
    if (head) {
      res->content_length(a.body.size());
    } else {
      res->body() = std::move(a.body);
      res->prepare_payload();
    }
    beast::get_lowest_layer(stream_).expires_after(kIoTimeout);
    http::async_write(stream_, *res, [self = this->shared_from_this(), res](beast::error_code ec, size_t) {
      if (ec || !self->keep_alive_) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ignored;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    } else {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {});
    }
  }

  Stream stream_;
  const Site& site_;
  AlertProxy* alerts_;
  std::shared_ptr<std::atomic<int>> count_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  bool keep_alive_ = false;
};

}  // namespace

Server::Server(Site site, ServerConfig config)
    : site_(std::move(site)), config_(std::move(config)), acceptor_(io_) {
  if (config_.alertmanager) alerts_.emplace(io_, *config_.alertmanager, std::chrono::seconds(2));
}

Server::~Server() { stop(); }

Status Server::start() {
  try {
    if (!config_.tls_cert.empty()) {
      tls_.emplace(asio::ssl::context::tls_server);
      tls_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                        asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
      tls_->use_certificate_chain_file(config_.tls_cert);
      tls_->use_private_key_file(config_.tls_key, asio::ssl::context::pem);
    }
  } catch (const std::exception& e) {
    return Status(NODEHA_ERR_INVALID, "tls_cert " + config_.tls_cert + " / tls_key " + config_.tls_key +
                                          " cannot be used: " + e.what());
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(config_.host, ec);
  if (ec) return Status(NODEHA_ERR_INVALID, "listen: \"" + config_.host + "\" is not an IP address");
  tcp::endpoint ep(address, config_.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status(NODEHA_ERR_UNAVAILABLE, "cannot listen on " + config_.host + ":" +
                                                    std::to_string(config_.port) + ": " + ec.message());
  accept();
  if (!threads_.start([this] { io_.run(); })) return Status(NODEHA_ERR_UNAVAILABLE, "the server thread did not start");
  return Status::ok();
}

void Server::stop() {
  io_.stop();
  threads_.join();
  // Now, not at destruction: a controller coming to lead starts its leader instance right after
  // stopping the follower's, on the same port.
  beast::error_code ignored;
  acceptor_.close(ignored);
}

std::string Server::url() const {
  beast::error_code ec;
  auto ep = acceptor_.local_endpoint(ec);
  std::string host = ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
  return (tls_ ? "https://" : "http://") + host + ":" + std::to_string(ep.port());
}

void Server::accept() {
  acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec && connections_->load() < kMaxConnections) {
      ++*connections_;
      beast::tcp_stream plain(std::move(socket));
      if (tls_) {
        std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
            beast::ssl_stream<beast::tcp_stream>(std::move(plain), *tls_), site_, alerts_ ? &*alerts_ : nullptr,
            connections_)->run();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(std::move(plain), site_, alerts_ ? &*alerts_ : nullptr,
                                                     connections_)->run();
      }
    }
    accept();
  });
}

}  // namespace nodeha::web
