// selffence (agent): self-fencing by lease (docs/operations.md, "Self-fencing"; fence_lease.h).
//
// Every `renew_every` the agent asks the leader to renew its lease on <prefix>.ctl.<node>.lease;
// the grant says how long the lease lasts, what to do when only this node is cut off
// (isolation_response), the witness key and the peers. A witness on the business network
// (UDP, `address`:`port`) probes up to `witness_peers` peers and answers theirs, each datagram
// signed with the key. Every 250 ms the agent decides (lease::decide): while the lease is valid,
// or while it keeps its VMs on purpose (isolated under keep, or a control-plane outage), it feeds
// the watchdog; when the rule says fence it destroys every VM, says so in its probes, and only then
// feeds again. A hung agent feeds nothing, so the watchdog resets the node.
//
// The decisions, the feeding and the destroying run on a thread of their own, the witness on
// another; neither makes a bus call: while the NATS server cannot be reached, a bus call on the
// event thread may wait for the reconnect (seconds), and neither the watchdog nor the witness may
// starve for that.
//
// The watchdog is a device path (`/dev/watchdog`; its timeout set to `watchdog_timeout`) or, in
// tests, a FIFO read by a stand-in process: a byte written is a feed.
//
// The grant is kept in the state directory (selffence-lease.json) with its end on the monotonic
// clock, which outlives the process but not a reboot: an agent restarted within its lease goes on
// with it, so a restart during a partition cannot turn a lease that ended into "never leased" (which
// would keep the VMs that the leader is about to count fenced).
#include "fence_lease.h"

#include "libvirt.h"

#include <nodeha/plugin.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

namespace nodeha::selffence {
namespace {

using lease::Clock;

const nodeha_config_key kKeys[] = {
    key("address", NODEHA_CONFIG_STRING, nullptr, nullptr,
        "this node's address on the witness network (the business network), where its witness listens"),
    key("port", NODEHA_CONFIG_INTEGER, "7480", "port", "the witness's UDP port, the same on every node"),
    key("witness_peers", NODEHA_CONFIG_INTEGER, "8", "peers", "how many peers the witness probes (the next ones by name)"),
    key("watchdog", NODEHA_CONFIG_STRING, "\"\"", nullptr,
        "the watchdog device, e.g. \"/dev/watchdog\"; empty: none, and the controller cannot count on a hung agent's "
        "node being reset"),
    key("watchdog_timeout", NODEHA_CONFIG_DURATION, "\"10s\"", "duration", "the time after which an unfed watchdog resets the node"),
    key("renew_every", NODEHA_CONFIG_DURATION, "\"1s\"", "duration", "how often the lease is renewed"),
};

constexpr Millis kDecideEvery{250};
constexpr Millis kProbeEvery{500};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { if (fd_ >= 0) ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// What the witness heard of one peer since the last granted renewal.
struct Hearing {
  std::optional<Clock::time_point> any_first, any_last, invalid_first, invalid_last;
  uint64_t fenced_seq = 0;
};

class SelfFence : public Plugin {
 public:
  explicit SelfFence(Host h) : Plugin(std::move(h)) {
    const auto& c = host().config();
    address_ = c.at("address").get<std::string>();
    in_addr a{};
    if (inet_pton(AF_INET, address_.c_str(), &a) != 1) throw ConfigError("address must be an IPv4 address, got " + address_);
    port_ = c.at("port").get<int>();
    if (port_ < 1 || port_ > 65535) throw ConfigError("port must be from 1 to 65535");
    witness_peers_ = c.at("witness_peers").get<int>();
    if (witness_peers_ < 1 || witness_peers_ > 64) throw ConfigError("witness_peers must be from 1 to 64");
    watchdog_path_ = c.at("watchdog").get<std::string>();
    watchdog_timeout_ = host().duration("watchdog_timeout");
    if (watchdog_timeout_ < Millis(1000) || watchdog_timeout_.count() > lease::kMaxWatchdogMs)
      throw ConfigError("watchdog_timeout must be from 1s to 10m");
    renew_every_ = host().duration("renew_every");
    if (renew_every_ < Millis(100) || renew_every_ > Millis(10000)) throw ConfigError("renew_every must be from 100ms to 10s");
    node_ = host().node_id();
    std::random_device rd;
    rng_.seed((static_cast<uint64_t>(rd()) << 32) | rd());
    incarnation_ = rng_() | 1;
    state_path_ = host().state_dir() + "/selffence-lease.json";
    restore();
  }
  ~SelfFence() override {
    running_ = false;
    if (witness_.joinable()) witness_.join();
    if (decider_.joinable()) decider_.join();
  }

  Status start() override {
    fences_ = host().counter("nodeha_self_fences_total", "times this agent destroyed its VMs because its lease ended");
    leased_ = host().gauge("nodeha_lease_valid", "1 while this agent's lease is valid");
    sock_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port_));
    inet_pton(AF_INET, address_.c_str(), &sa.sin_addr);
    if (sock_.get() < 0 || ::bind(sock_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
      return Status(NODEHA_ERR_UNAVAILABLE, "witness: cannot bind " + address_ + ":" + std::to_string(port_) + ": " + strerror(errno));
    open_watchdog();
    witness_ = std::thread([this] { receive(); });
    decider_ = std::thread([this] {
      while (running_) {
        decide();
        std::this_thread::sleep_for(kDecideEvery);
      }
    });
    auto t = host().timer(Millis(0), renew_every_, [this] { renew(); });
    return t ? Status::ok() : t.status();
  }

  // A clean stop (systemctl stop, an upgrade) disarms the watchdog, but only once the leader knows:
  // a last renewal, `leaving`, with what the witness heard, after which the leader no longer counts
  // on a watchdog, so the node, whose VMs run on unwatched, can never be counted fenced by its
  // lease, nor waits for this node's witness reports. Without the leader's answer the watchdog
  // stays armed: a restart must come within its timeout.
  void stop() override {
    running_ = false;  // the witness answers no more: what it heard is in the last renewal
    if (witness_.joinable()) witness_.join();
    lease::Renewal r = renewal(Clock::now(), true);
    bool told = false;
    {
      auto reply = host().request(host().subject("ctl." + node_ + ".lease"), lease::encode(r), lease::kRenewTimeout);
      auto env = reply ? nlohmann::json::parse(reply.value(), nullptr, false) : nlohmann::json();
      told = env.is_object() && env.value("ok", false) == true;
    }
    if (decider_.joinable()) decider_.join();
    if (!armed_) return;
    if (told && ::write(watchdog_.get(), "V", 1) == 1) {
      host().info("watchdog " + watchdog_path_ + " disarmed: the controller knows");
    } else {
      host().warn("the watchdog stays armed (the controller could not be told it goes): start the agent again within " +
                  std::to_string(watchdog_timeout_.count() / 1000) + " s or the node resets");
    }
    watchdog_.reset(-1);
  }

 private:
  void open_watchdog() {
    if (watchdog_path_.empty() || watchdog_.get() >= 0) return;
    watchdog_.reset(::open(watchdog_path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    if (watchdog_.get() < 0) {
      if (!watchdog_warned_) host().warn("watchdog " + watchdog_path_ + " cannot be opened yet: " + strerror(errno));
      watchdog_warned_ = true;
      return;
    }
    struct stat st {};
    if (fstat(watchdog_.get(), &st) == 0 && S_ISCHR(st.st_mode)) {
      int seconds = static_cast<int>(watchdog_timeout_.count() / 1000);
      if (ioctl(watchdog_.get(), WDIOC_SETTIMEOUT, &seconds) != 0 || seconds * 1000LL > watchdog_timeout_.count() + 999) {
        host().error("watchdog " + watchdog_path_ + " refused a timeout of " + std::to_string(watchdog_timeout_.count() / 1000) +
                     " s; not counting on it");
        watchdog_.reset(-1);
        return;
      }
    }
    armed_ = true;
    host().info("watchdog " + watchdog_path_ + " armed, " + std::to_string(watchdog_timeout_.count()) + " ms");
  }

  void feed() {
    open_watchdog();
    if (watchdog_.get() >= 0 && ::write(watchdog_.get(), "1", 1) != 1 && errno != EAGAIN) {
      host().warn("watchdog " + watchdog_path_ + " write failed: " + strerror(errno) + "; reopening");
      watchdog_.reset(-1);
      armed_ = false;
    }
  }

  // Event thread.
  // The renewal as of `now`, with what the witness heard since the last granted one.
  lease::Renewal renewal(Clock::time_point now, bool leaving) {
    lease::Renewal r;
    r.node = node_;
    r.incarnation = incarnation_;
    r.leaving = leaving;
    r.watchdog_ms = armed_ && !leaving ? watchdog_timeout_.count() : 0;
    std::lock_guard lock(mu_);
    r.seq = grant_ ? grant_->seq : 0;
    r.fenced = fenced_seq_ != 0 && fenced_seq_ == r.seq;
    r.peers_rev = grant_ ? grant_->peers_rev : 0;
    auto age = [&](const std::optional<Clock::time_point>& t) {
      return t ? std::chrono::duration_cast<Millis>(now - *t).count() : -1;
    };
    for (const auto& [peer, h] : heard_)
      r.heard.push_back({peer, age(h.any_first), age(h.any_last), age(h.invalid_first), age(h.invalid_last), h.fenced_seq});
    return r;
  }

  void renew() {
    if (renewing_) return;
    renewing_ = true;
    auto sent = Clock::now();
    lease::Renewal r = renewal(sent, false);
    auto s = host().request_async(host().subject("ctl." + node_ + ".lease"), lease::encode(r), lease::kRenewTimeout,
                                  [this, sent](const Result<std::string>& reply) { granted(sent, reply); });
    if (!s) renewing_ = false;
  }

  void granted(Clock::time_point sent, const Result<std::string>& reply) {
    renewing_ = false;
    if (!reply) return;
    if (Clock::now() - sent > lease::kRenewTimeout) return;  // late: the leader's window no longer covers it
    auto env = nlohmann::json::parse(reply.value(), nullptr, false);
    if (!env.is_object() || env.value("ok", false) != true) {
      std::string why = env.is_object() ? env.value("message", reply.value()) : reply.value();
      if (why != refused_) host().warn("lease renewal refused: " + why);
      refused_ = why;
      return;
    }
    refused_.clear();
    auto g = lease::decode_grant(env.contains("result") ? env["result"].dump() : "");
    if (!g) return host().warn("ignored a malformed lease grant: " + g.status().message());
    lease::Grant next = g.value();
    std::lock_guard lock(mu_);
    if (grant_ && next.key != grant_->key) old_key_ = grant_->key;
    if (!next.peers && grant_ && grant_->peers_rev == next.peers_rev) next.peers = grant_->peers;
    until_ = sent + Millis(next.fence_after_ms);
    granted_at_ = sent;
    grant_ = std::move(next);
    save_locked();
    // What that renewal reported is the leader's now; only what came after it stays to report.
    for (auto it = heard_.begin(); it != heard_.end();) {
      auto& h = it->second;
      auto keep = [&](std::optional<Clock::time_point>& first, std::optional<Clock::time_point>& last) {
        if (last && *last < sent) first = last = std::nullopt;
        else if (first && *first < sent) first = sent;
      };
      keep(h.any_first, h.any_last);
      keep(h.invalid_first, h.invalid_last);
      if (!h.any_last && !h.invalid_last && h.fenced_seq == 0) it = heard_.erase(it);
      else ++it;
    }
  }

  bool valid_locked() const { return grant_ && Clock::now() < until_; }
  // What this witness's answers say: its lease is valid, on a fresh grant, and its leader does not
  // hold recovery. A peer whose own lease ended keeps its VMs on any other answer.
  bool vouches_locked() const {
    return valid_locked() && !grant_->hold && Clock::now() - granted_at_ <= lease::kVouchFresh;
  }

  static std::string boot_id() {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string id;
    in >> id;
    return id;
  }

  // The last grant, kept for a restart; under mu_ (or before the threads start).
  void save_locked() {
    if (!grant_ || state_path_.empty()) return;
    nlohmann::json j{{"boot_id", boot_id()},
                     {"until_ns", std::chrono::duration_cast<std::chrono::nanoseconds>(until_.time_since_epoch()).count()},
                     {"fenced_seq", fenced_seq_},
                     {"grant", lease::to_json(*grant_)}};
    std::string tmp = state_path_ + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << j.dump();
      if (!out) {
        if (!save_warned_) host().warn("cannot write " + tmp + ": a restarted agent would not know its lease");
        save_warned_ = true;
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, state_path_, ec);
  }

  // A lease this agent's previous process held, since this boot.
  void restore() {
    std::ifstream in(state_path_);
    if (!in) return;
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("grant") || j.value("boot_id", "") != boot_id() || boot_id().empty()) return;
    auto g = lease::decode_grant(j["grant"].dump());
    if (!g || !j.contains("until_ns") || !j["until_ns"].is_number_integer()) return;
    grant_ = g.value();
    until_ = Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(j["until_ns"].get<int64_t>())));
    fenced_seq_ = j.value("fenced_seq", uint64_t{0});
    host().info(std::string("lease of the previous process taken over: ") + (Clock::now() < until_ ? "valid" : "ended"));
  }

  // The decider thread.
  void decide() {
    lease::Verdict v;
    uint64_t seq = 0;
    {
      std::lock_guard lock(mu_);
      auto now = Clock::now();
      size_t answers = 0, valid = 0;
      for (const auto& [peer, a] : answers_)
        if (now - a.first <= lease::kWitnessWindow) {
          ++answers;
          valid += a.second ? 1 : 0;
        }
      bool ok = valid_locked();
      // Never leased: nothing to fence for. Fenced under this grant already: nothing left to do.
      v = grant_ ? lease::decide(ok, grant_->self_fence, grant_->response, answers, valid) : lease::Verdict::kOutage;
      if (v == lease::Verdict::kFence && fenced_seq_ == grant_->seq) v = lease::Verdict::kOutage;
      if (grant_) seq = grant_->seq;
      leased_.set(ok ? 1 : 0);
    }
    if (v != verdict_) {
      (v == lease::Verdict::kLeased ? host().info("lease: valid") : host().warn(std::string("lease ended: ") + lease::name(v)));
      verdict_ = v;
    }
    if (v != lease::Verdict::kFence) return feed();
    // No feed while the VMs are being destroyed: a stuck libvirt gets the reset.
    auto left = destroy_all();
    if (!left.empty()) return host().error("self-fence: could not destroy " + left + "; the watchdog will reset the node");
    fences_.inc();
    host().error("self-fenced: the lease ended and no peer with a lease said to wait; every VM is destroyed");
    std::lock_guard lock(mu_);
    fenced_seq_ = seq;
    save_locked();
  }

  // Every running VM destroyed; what could not be, or "".
  std::string destroy_all() {
    auto raw = host().libvirt_connect();
    if (!raw) return "any VM (" + raw.status().message() + ")";
    libvirt::Connection conn(static_cast<virConnectPtr>(raw.value()));
    virDomainPtr* doms = nullptr;
    int n = virConnectListAllDomains(conn.get(), &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (n < 0) return "any VM (" + libvirt::last_error() + ")";
    std::string left;
    for (int i = 0; i < n; ++i) {
      libvirt::Domain d(doms[i]);
      if (virDomainDestroy(d.get()) != 0 && virDomainIsActive(d.get()) == 1)
        left += std::string(left.empty() ? "" : ", ") + (virDomainGetName(d.get()) ?: "?") + ": " + libvirt::last_error();
    }
    free(doms);
    return left;
  }

  // The witness thread: a probe to each of the next witness_peers peers by name.
  void probe() {
    std::lock_guard lock(mu_);
    if (!grant_ || !grant_->peers) return;
    const auto& peers = *grant_->peers;
    auto now = Clock::now();
    for (auto it = pending_.begin(); it != pending_.end();)
      it = now - it->second.second > lease::kWitnessWindow ? pending_.erase(it) : std::next(it);
    size_t start = 0;
    while (start < peers.size() && peers[start].node < node_) ++start;
    for (size_t i = 0; i < peers.size() && i < static_cast<size_t>(witness_peers_); ++i) {
      const auto& p = peers[(start + i) % peers.size()];
      lease::Datagram d{false, node_, p.node, rng_(), vouches_locked(), fenced_seq_};
      pending_[d.nonce] = {p.node, now};
      send(lease::seal(d, grant_->key), p.address);
    }
  }

  void send(const std::string& text, const std::string& address) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port_));
    if (inet_pton(AF_INET, address.c_str(), &to.sin_addr) != 1) return;
    (void)::sendto(sock_.get(), text.data(), text.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), sizeof to);
  }

  // The witness thread: probes sent, probes answered, answers recorded. Anything unsigned is dropped.
  void receive() {
    char buf[lease::kMaxDatagramBytes + 1];
    auto next_probe = Clock::now();
    while (running_) {
      auto now = Clock::now();
      if (now >= next_probe) {
        probe();
        next_probe = now + kProbeEvery;
      }
      pollfd p{sock_.get(), POLLIN, 0};
      auto wait = std::chrono::duration_cast<Millis>(next_probe - Clock::now()).count();
      if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(wait, 1))) <= 0) continue;
      sockaddr_in from{};
      socklen_t len = sizeof from;
      ssize_t n = ::recvfrom(sock_.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n <= 0 || static_cast<size_t>(n) > lease::kMaxDatagramBytes) continue;
      std::string_view text(buf, static_cast<size_t>(n));
      std::lock_guard lock(mu_);
      if (!grant_) continue;
      auto d = lease::open(text, grant_->key);
      if (!d && !old_key_.empty()) d = lease::open(text, old_key_);
      if (!d || d->to != node_ || !known_peer(d->from)) continue;
      now = Clock::now();
      if (d->reply) {
        auto it = pending_.find(d->nonce);
        if (it == pending_.end() || it->second.first != d->from || now - it->second.second > lease::kWitnessWindow) continue;
        answers_[d->from] = {now, d->valid};
        pending_.erase(it);
        continue;
      }
      bool valid = vouches_locked();
      auto& h = heard_[d->from];
      (valid ? h.any_first : h.invalid_first) = (valid ? h.any_first : h.invalid_first).value_or(now);
      (valid ? h.any_last : h.invalid_last) = now;
      if (!valid) {  // heard while ours had ended counts as heard as well
        h.any_first = h.any_first.value_or(now);
        h.any_last = now;
      }
      if (d->fenced_seq > h.fenced_seq) h.fenced_seq = d->fenced_seq;
      char ip[INET_ADDRSTRLEN] = {};
      inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
      send(lease::seal({true, node_, d->from, d->nonce, valid, fenced_seq_}, grant_->key), ip);
    }
  }

  bool known_peer(const std::string& node) const {
    if (!grant_->peers) return false;
    return std::any_of(grant_->peers->begin(), grant_->peers->end(), [&](const lease::Peer& p) { return p.node == node; });
  }

  std::string node_, address_, watchdog_path_, state_path_;
  uint64_t incarnation_ = 0;
  bool save_warned_ = false;
  int port_ = 0, witness_peers_ = 0;
  Millis watchdog_timeout_{0}, renew_every_{0};
  Metric fences_, leased_;
  Fd sock_, watchdog_;
  bool watchdog_warned_ = false;  // the decider thread's, like watchdog_ (and start())
  std::atomic<bool> armed_{false};
  // Event thread only.
  bool renewing_ = false;
  std::string refused_;
  // The decider thread only.
  lease::Verdict verdict_ = lease::Verdict::kOutage;  // as before the first grant
  // Shared with the witness thread.
  std::mutex mu_;
  std::optional<lease::Grant> grant_;
  std::string old_key_;  // the previous leader's: peers may still sign with it for a second
  Clock::time_point until_;
  Clock::time_point granted_at_;  // when the last grant was asked for (a restored one: never)
  uint64_t fenced_seq_ = 0;  // the grant under which this agent fenced itself
  std::map<std::string, Hearing> heard_;
  std::map<uint64_t, std::pair<std::string, Clock::time_point>> pending_;  // nonce -> peer, sent
  std::map<std::string, std::pair<Clock::time_point, bool>> answers_;       // peer -> last answer, its lease valid
  std::mt19937_64 rng_;
  std::atomic<bool> running_{true};
  std::thread witness_, decider_;
};

}  // namespace
}  // namespace nodeha::selffence

NODEHA_PLUGIN(nodeha::selffence::SelfFence, "selffence", "0.1.0",
              "self-fencing by lease: destroys this node's VMs when its lease ends and no peer says to wait",
              nodeha::kAgentRole, nodeha::selffence::kKeys)
