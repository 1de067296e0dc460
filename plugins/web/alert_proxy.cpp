#include "alert_proxy.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace nodeha::web {
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {
constexpr const char* kQuery = "/api/v2/alerts?active=true&silenced=false&inhibited=false";
constexpr size_t kMaxBody = 16u << 20;  // an Alertmanager with thousands of alerts still fits

// One request: resolve, connect, write, read, all under one deadline.
struct Exchange : std::enable_shared_from_this<Exchange> {
  Exchange(boost::asio::io_context& io, std::function<void(Answer)> done)
      : resolver(io), stream(io), done(std::move(done)) {}
  tcp::resolver resolver;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  http::request<http::empty_body> req;
  http::response_parser<http::string_body> parser;
  std::function<void(Answer)> done;

  void fail(const std::string& what) {
    done(error_answer(502, "alertmanager_unreachable", "the Alertmanager did not answer: " + what));
  }
};
}  // namespace

Result<HttpUrl> parse_http_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0)
    return Status(NODEHA_ERR_INVALID, "alertmanager \"" + url + "\" must be an http:// URL (http://host:9093)");
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (authority.empty() || authority.find_first_of("@ ") != std::string::npos ||
      path.find_first_of("?# ") != std::string::npos)
    return Status(NODEHA_ERR_INVALID, "alertmanager \"" + url + "\" must be http://host[:port][/path]");
  HttpUrl u{authority, "80", path};
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
    if (u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos || u.port.size() > 5 ||
        std::stoi(u.port) > 65535)
      return Status(NODEHA_ERR_INVALID, "alertmanager \"" + url + "\": bad port");
  }
  if (u.host.size() > 2 && u.host.front() == '[' && u.host.back() == ']') u.host = u.host.substr(1, u.host.size() - 2);
  return u;
}

AlertProxy::AlertProxy(boost::asio::io_context& io, HttpUrl url, std::chrono::milliseconds timeout)
    : io_(io), url_(std::move(url)), timeout_(timeout) {}

void AlertProxy::fetch(std::function<void(Answer)> done) {
  waiting_.push_back(std::move(done));
  if (waiting_.size() > 1) return;  // the one in flight answers this page too
  auto x = std::make_shared<Exchange>(io_, [this](Answer a) { finish(std::move(a)); });
  x->req = {http::verb::get, url_.path + kQuery, 11};
  x->req.set(http::field::host, url_.host + ":" + url_.port);
  x->req.set(http::field::accept, "application/json");
  x->parser.body_limit(kMaxBody);
  x->stream.expires_after(timeout_);
  x->resolver.async_resolve(url_.host, url_.port, [x](beast::error_code ec, tcp::resolver::results_type r) {
    if (ec) return x->fail("resolve: " + ec.message());
    x->stream.async_connect(r, [x](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return x->fail("connect: " + ec.message());
      http::async_write(x->stream, x->req, [x](beast::error_code ec, size_t) {
        if (ec) return x->fail("send: " + ec.message());
        http::async_read(x->stream, x->buffer, x->parser, [x](beast::error_code ec, size_t) {
          if (ec) return x->fail("read: " + ec.message());
          auto& res = x->parser.get();
          if (res.result() != http::status::ok)
            return x->done(error_answer(502, "alertmanager_failed",
                                        "the Alertmanager answered " + std::to_string(res.result_int())));
          x->done({200, "application/json", std::move(res.body()), true, false});
        });
      });
    });
  });
}

void AlertProxy::finish(Answer a) {
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& w : waiting) w(a);
}

}  // namespace nodeha::web
