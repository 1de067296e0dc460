// web (controller): serves the live web page (web/: a static page that speaks NATS itself over
// nats-server's websocket listener, docs/architecture.md "The web page"), /config.json (where the
// page finds the bus) and /api/alerts (the Alertmanager's firing alerts). The server runs on a
// thread of its own; this plugin touches neither the bus nor the buckets.
#include "server.h"

#include <nodeha/plugin.hpp>

namespace nodeha::web {
namespace {

#ifndef NODEHA_WEB_DIR
#define NODEHA_WEB_DIR "/usr/share/nodeha/web"
#endif

const nodeha_config_key kKeys[] = {
    key("listen", NODEHA_CONFIG_STRING, "\"127.0.0.1:8480\"", nullptr, "address:port to serve the page on"),
    key("tls_cert", NODEHA_CONFIG_STRING, "\"\"", nullptr, "PEM certificate (chain) file; with tls_key: HTTPS only"),
    key("tls_key", NODEHA_CONFIG_STRING, "\"\"", nullptr, "PEM private key file of tls_cert"),
    key("files", NODEHA_CONFIG_STRING, "\"" NODEHA_WEB_DIR "\"", nullptr,
        "directory of the page's files (index.html, app.js, style.css)"),
    key("servers", NODEHA_CONFIG_STRING_ARRAY, "[]", nullptr,
        "the nats-servers' websocket URLs as the browser reaches them (wss://host:port)"),
    key("alertmanager", NODEHA_CONFIG_STRING, "\"\"", nullptr,
        "the Alertmanager whose firing alerts the page shows (http://host:9093); empty: none"),
};

Result<std::pair<std::string, uint16_t>> parse_listen(const std::string& text) {
  size_t colon = text.rfind(':');
  std::string why = "listen \"" + text + "\" must be address:port (127.0.0.1:8480, [::1]:8480)";
  if (colon == std::string::npos || colon == 0) return Status(NODEHA_ERR_INVALID, why);
  std::string host = text.substr(0, colon), port = text.substr(colon + 1);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535)
    return Status(NODEHA_ERR_INVALID, why);
  return std::pair{host, static_cast<uint16_t>(std::stoi(port))};
}

class Web : public Plugin {
 public:
  explicit Web(Host h) : Plugin(std::move(h)) {
    const auto& c = host().config();
    auto listen = parse_listen(c.at("listen").get<std::string>());
    if (!listen) throw ConfigError(listen.status().message());
    config_.host = listen->first;
    config_.port = listen->second;
    config_.tls_cert = c.at("tls_cert").get<std::string>();
    config_.tls_key = c.at("tls_key").get<std::string>();
    if (config_.tls_cert.empty() != config_.tls_key.empty())
      throw ConfigError("tls_cert and tls_key go together: set both (HTTPS) or neither (HTTP)");
    site_config_.servers = c.at("servers").get<std::vector<std::string>>();
    for (const auto& s : site_config_.servers)
      if (s.rfind("wss://", 0) != 0 && s.rfind("ws://", 0) != 0)
        throw ConfigError("servers: \"" + s + "\" must be a websocket URL (wss://host:port)");
    site_config_.prefix = host().prefix();
    if (auto am = c.at("alertmanager").get<std::string>(); !am.empty()) {
      auto url = parse_http_url(am);
      if (!url) throw ConfigError(url.status().message());
      config_.alertmanager = url.value();
      site_config_.alerts = true;
    }
    files_ = c.at("files").get<std::string>();
  }

  Status start() override {
    auto site = Site::load(files_, site_config_);
    if (!site) return site.status();
    server_ = std::make_unique<Server>(site.value(), config_);
    if (auto s = server_->start(); !s) return s;
    host().info("serving the web page on " + server_->url() + "/");
    return Status::ok();
  }

  void stop() override {
    if (server_) server_->stop();
  }

 private:
  ServerConfig config_;
  SiteConfig site_config_;
  std::string files_;
  std::unique_ptr<Server> server_;
};

}  // namespace
}  // namespace nodeha::web

// Serves followers too: the page is the same whichever controller leads.
NODEHA_PLUGIN_WITH_FLAGS(nodeha::web::Web, "web", "0.1.0", "serves the live web page (controller)",
                         nodeha::kControllerRole, nodeha::web::kKeys, nodeha::kServesFollowers)
