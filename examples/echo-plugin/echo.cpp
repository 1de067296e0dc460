// An example plugin built out of tree against the installed SDK: it answers requests on a
// subject with the request's body (optionally prefixed) and counts them in a metric.
#include <nodeha/plugin.hpp>

namespace {

const nodeha_config_key kKeys[] = {
    nodeha::key("subject", NODEHA_CONFIG_STRING, "\"echo\"", nullptr, "subject answered, under the host's prefix unless it contains a '.'"),
    nodeha::key("reply_prefix", NODEHA_CONFIG_STRING, "\"\"", nullptr, "text put before every reply"),
};

class Echo : public nodeha::Plugin {
 public:
  explicit Echo(nodeha::Host host)
      : Plugin(std::move(host)),
        subject_(this->host().config().at("subject").get<std::string>()),
        prefix_(this->host().config().at("reply_prefix").get<std::string>()) {
    if (subject_.find('.') == std::string::npos) subject_ = this->host().subject(subject_);
  }

  nodeha::Status start() override {
    requests_ = host().counter("nodeha_echo_requests_total", "requests answered by the echo plugin",
                               {{"instance", host().instance_name()}});
    auto sub = host().subscribe(subject_, [this](const nodeha::Message& m) {
      requests_.inc();
      host().respond(m.reply, prefix_ + m.data);
    });
    if (!sub) return sub.status();
    host().info("answering on " + subject_);
    return nodeha::Status::ok();
  }

 private:
  std::string subject_;
  std::string prefix_;
  nodeha::Metric requests_;
};

}  // namespace

NODEHA_PLUGIN(Echo, "echo", "1.0.0", "answers requests with their body", nodeha::kAnyRole, kKeys)
