#include "raw_nats.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace nodeha::test {

const char* to_string(RawReply::Kind k) {
  switch (k) {
    case RawReply::Kind::Answer: return "answer";
    case RawReply::Kind::NoResponders: return "no responders";
    case RawReply::Kind::Timeout: return "timeout";
    case RawReply::Kind::NotSent: return "not sent";
  }
  return "?";
}

RawNatsClient::RawNatsClient(const std::string& url, const std::string& name) {
  natsOptions* o = nullptr;
  natsStatus s = natsOptions_Create(&o);
  opts_.reset(o);
  if (s == NATS_OK) s = natsOptions_SetURL(o, url.c_str());
  if (s == NATS_OK) s = natsOptions_SetName(o, name.c_str());
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(o, false);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, &RawNatsClient::on_disconnected, this);
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, &RawNatsClient::on_error, this);
  natsConnection* c = nullptr;
  if (s == NATS_OK) s = natsConnection_Connect(&c, o);
  conn_.reset(c);
  natsInbox* inbox = nullptr;
  if (s == NATS_OK) s = natsInbox_Create(&inbox);
  if (s == NATS_OK) inbox_ = inbox;
  natsInbox_Destroy(inbox);
  natsSubscription* sub = nullptr;
  if (s == NATS_OK) s = natsConnection_Subscribe(&sub, c, (inbox_ + ".*").c_str(), &RawNatsClient::on_reply, this);
  inbox_sub_.reset(sub);
  if (s == NATS_OK) s = natsConnection_FlushTimeout(c, 5000);
  if (s != NATS_OK) ADD_FAILURE() << "raw cnats client: cannot connect to " << url << ": " << natsStatus_GetText(s);
}

RawNatsClient::~RawNatsClient() {
  // Closed first: no new deliveries to the handlers, which go with the members.
  if (conn_) natsConnection_Close(conn_.get());
  inbox_sub_.reset();
  subs_.clear();
}

bool RawNatsClient::connected() const {
  return conn_ && natsConnection_Status(conn_.get()) == NATS_CONN_STATUS_CONNECTED;
}

std::string RawNatsClient::last_async_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

void RawNatsClient::on_disconnected(natsConnection*, void* closure) { ++static_cast<RawNatsClient*>(closure)->drops_; }

void RawNatsClient::on_error(natsConnection*, natsSubscription*, natsStatus s, void* closure) {
  auto* self = static_cast<RawNatsClient*>(closure);
  ++self->async_errors_;
  std::lock_guard lock(self->mu_);
  self->last_error_ = natsStatus_GetText(s);
}

void RawNatsClient::on_reply(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  NatsMsgPtr owned(msg);
  auto* self = static_cast<RawNatsClient*>(closure);
  std::string subject = natsMsg_GetSubject(msg);
  uint64_t token = std::strtoull(subject.c_str() + subject.rfind('.') + 1, nullptr, 10);
  std::lock_guard lock(self->mu_);
  if (!self->replies_ || token < self->first_token_ || token - self->first_token_ >= self->done_.size()) return;
  size_t i = token - self->first_token_;
  if (self->done_[i]) return;  // answered twice, or after its timeout: the first word stands
  auto& r = (*self->replies_)[i];
  if (natsMsg_IsNoResponders(msg)) {
    r.kind = RawReply::Kind::NoResponders;
  } else {
    r.kind = RawReply::Kind::Answer;
    r.data.assign(natsMsg_GetData(msg) ? natsMsg_GetData(msg) : "", natsMsg_GetDataLength(msg));
  }
  self->done_[i] = true;
  --self->in_flight_;
  self->cv_.notify_all();
}

std::vector<RawReply> RawNatsClient::request_all(const std::vector<RawRequest>& requests, size_t window,
                                                 std::chrono::milliseconds timeout, size_t give_up) {
  using Clock = std::chrono::steady_clock;
  std::vector<RawReply> replies(requests.size());
  std::vector<Clock::time_point> sent(requests.size());
  size_t timeouts = 0;
  std::unique_lock lock(mu_);
  replies_ = &replies;
  done_.assign(requests.size(), false);
  first_token_ = next_token_;
  next_token_ += requests.size();
  in_flight_ = 0;
  // Marks the requests whose time is up; they free their place in the window.
  auto expire = [&](size_t upto) {
    for (size_t i = 0; i < upto; ++i)
      if (!done_[i] && Clock::now() - sent[i] > timeout) {
        replies[i].kind = RawReply::Kind::Timeout;
        done_[i] = true;
        --in_flight_;
        ++timeouts;
      }
  };
  size_t next = 0;
  for (; next < requests.size() && timeouts < give_up; ++next) {
    while (in_flight_ >= window) {
      cv_.wait_for(lock, std::chrono::milliseconds(20));
      expire(next);
    }
    std::string reply = inbox_ + "." + std::to_string(first_token_ + next);
    sent[next] = Clock::now();
    ++in_flight_;
    lock.unlock();
    natsStatus s = natsConnection_PublishRequest(conn_.get(), requests[next].subject.c_str(), reply.c_str(),
                                                 requests[next].body.data(), static_cast<int>(requests[next].body.size()));
    lock.lock();
    if (s != NATS_OK && !done_[next]) {
      replies[next] = {RawReply::Kind::NotSent, natsStatus_GetText(s)};
      done_[next] = true;
      --in_flight_;
    }
  }
  while (in_flight_ > 0) {
    cv_.wait_for(lock, std::chrono::milliseconds(20));
    expire(next);
  }
  replies_ = nullptr;
  return replies;
}

natsStatus RawNatsClient::publish(const std::string& subject, const std::string& body, const std::string& reply) {
  return reply.empty() ? natsConnection_Publish(conn_.get(), subject.c_str(), body.data(), static_cast<int>(body.size()))
                       : natsConnection_PublishRequest(conn_.get(), subject.c_str(), reply.c_str(), body.data(),
                                                       static_cast<int>(body.size()));
}

bool RawNatsClient::flush(std::chrono::milliseconds timeout) {
  return natsConnection_FlushTimeout(conn_.get(), timeout.count()) == NATS_OK;
}

void RawNatsClient::on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  NatsMsgPtr owned(msg);
  const char* d = natsMsg_GetData(msg);
  (*static_cast<std::function<void(const std::string&, const std::string&)>*>(closure))(
      natsMsg_GetSubject(msg), std::string(d ? d : "", natsMsg_GetDataLength(msg)));
}

bool RawNatsClient::subscribe(const std::string& subject,
                              std::function<void(const std::string& subject, const std::string& data)> fn) {
  handlers_.push_back(std::make_unique<std::function<void(const std::string&, const std::string&)>>(std::move(fn)));
  natsSubscription* sub = nullptr;
  natsStatus s = natsConnection_Subscribe(&sub, conn_.get(), subject.c_str(), &RawNatsClient::on_message,
                                          handlers_.back().get());
  subs_.emplace_back(sub);
  return s == NATS_OK && natsConnection_FlushTimeout(conn_.get(), 5000) == NATS_OK;
}

}  // namespace nodeha::test
