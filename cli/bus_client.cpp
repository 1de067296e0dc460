#include "bus_client.h"

#include "nats_handles.h"
#include "nats_limits.h"

#include <nats/nats.h>

namespace nodeha::cli {
namespace {

using nats::MsgPtr;
using nats::OptionsPtr;

// cnats' last error without its "(conn.c:2088): " source position: the operator reads it.
std::string last_error(natsStatus s) {
  const char* raw = nats_GetLastError(nullptr);
  std::string text = raw && *raw ? raw : natsStatus_GetText(s);
  if (size_t end = text.find("): "); !text.empty() && text[0] == '(' && end != std::string::npos) text.erase(0, end + 3);
  return text;
}

std::string data_of(natsMsg* m) {
  return std::string(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
}

void on_async_error(natsConnection* nc, natsSubscription*, natsStatus s, void* closure) {
  const char* text = nullptr;
  natsConnection_GetLastError(nc, &text);
  if (s != NATS_NOT_PERMITTED || !text) return;
  auto* refusals = static_cast<BusClient::Refusals*>(closure);
  std::lock_guard lock(refusals->mu);
  refusals->texts.push_back(text);
}

}  // namespace

bool BusClient::Refusals::about(const std::string& subject) {
  std::lock_guard lock(mu);
  for (const auto& t : texts)
    if (t.find("\"" + subject + "\"") != std::string::npos) return true;
  return false;
}

BusSubscription::~BusSubscription() { natsSubscription_Destroy(sub_); }

std::optional<std::string> BusSubscription::next(std::chrono::milliseconds timeout) {
  natsMsg* raw = nullptr;
  if (natsSubscription_NextMsg(&raw, sub_, timeout.count()) != NATS_OK) return std::nullopt;
  MsgPtr msg(raw);
  return data_of(msg.get());
}

std::unique_ptr<BusClient> BusClient::connect(const std::vector<std::string>& servers, const auth::ClientSecurity& security,
                                              std::chrono::milliseconds timeout, std::string* why) {
  natsOptions* raw = nullptr;
  if (natsStatus s = natsOptions_Create(&raw); s != NATS_OK) {
    *why = last_error(s);
    return nullptr;
  }
  OptionsPtr opts(raw);
  std::vector<const char*> urls;
  for (const auto& s : servers) urls.push_back(s.c_str());
  natsStatus s = natsOptions_SetServers(opts.get(), urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetNoRandomize(opts.get(), true);  // in the order given
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts.get(), timeout.count());
  if (s == NATS_OK) s = natsOptions_SetName(opts.get(), "nodeha-cli");
  auto refusals = std::make_unique<Refusals>();
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(opts.get(), &on_async_error, refusals.get());
  if (s != NATS_OK) {
    *why = last_error(s);
    return nullptr;
  }
  auto login = auth::BusLogin::apply(opts.get(), security);
  if (!login) {
    *why = login.status().message();
    return nullptr;
  }
  natsConnection* conn = nullptr;
  if (s = static_cast<natsStatus>(auth::connect_with_retry(&conn, opts.get())); s != NATS_OK) {
    *why = last_error(s);
    return nullptr;
  }
  return std::unique_ptr<BusClient>(new BusClient(conn, std::move(login.value()), std::move(refusals)));
}

BusClient::~BusClient() { natsConnection_Destroy(conn_); }

BusReply BusClient::request(const std::string& subject, const std::string& body, std::chrono::milliseconds timeout) {
  // One bad subject must not get the connection closed (the server's -ERR would).
  nats_limits::Limits limits;
  if (int64_t mp = natsConnection_GetMaxPayload(conn_); mp > 0) limits.max_payload = static_cast<size_t>(mp);
  if (auto why = nats_limits::check_publish(subject, {}, body.size(), limits); !why.empty()) {
    BusReply r;
    r.outcome = BusReply::kRefused;
    r.error = why;
    return r;
  }
  natsMsg* raw = nullptr;
  natsStatus s = natsConnection_Request(&raw, conn_, subject.c_str(), body.data(), static_cast<int>(body.size()),
                                        timeout.count());
  MsgPtr msg(raw);
  BusReply r;
  if (s == NATS_OK) {
    r.outcome = BusReply::kAnswered;
    r.body = data_of(msg.get());
  } else if (s == NATS_NO_RESPONDERS) {
    r.outcome = BusReply::kNoResponders;
  } else if (s == NATS_TIMEOUT && refusals_->about(subject)) {
    r.outcome = BusReply::kNotPermitted;
    r.error = "Permissions Violation for Publish to \"" + subject + "\"";
  } else if (s == NATS_TIMEOUT) {
    r.outcome = BusReply::kTimeout;
  } else {
    r.error = last_error(s);
  }
  return r;
}

std::unique_ptr<BusSubscription> BusClient::subscribe(const std::string& subject, std::string* why) {
  if (*why = nats_limits::check_subscribe(subject, {}, nats_limits::Limits{}); !why->empty()) return nullptr;
  natsSubscription* sub = nullptr;
  if (natsStatus s = natsConnection_SubscribeSync(&sub, conn_, subject.c_str()); s != NATS_OK) {
    *why = last_error(s);
    return nullptr;
  }
  return std::make_unique<BusSubscription>(sub);
}

}  // namespace nodeha::cli
