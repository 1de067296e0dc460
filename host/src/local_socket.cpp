#include "local_socket.h"

#include "local_request.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <nodeha/ids.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <optional>
#include <poll.h>
#include <random>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace nodeha::host {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxConnections = 64;     // more at once is a runaway script, not an operator
constexpr auto kStopFlush = std::chrono::seconds(2);  // to hand out the last replies at exit
constexpr const char* kTokenPrefix = "_LOCAL.";
constexpr const char* kResults[] = {"answered", kLocalUnknownSubject, kLocalBadJson, kLocalTimeout,
                                    kLocalUnavailable, "client_left"};

std::string envelope(const char* code, const std::string& message) {
  return nlohmann::json{{"ok", false}, {"error", {{"code", code}, {"message", message}}}}.dump();
}

std::string errno_text(int e) { return std::strerror(e); }

std::optional<sockaddr_un> address_of(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return std::nullopt;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// Someone accepts connections on `path` (a live host), as opposed to a file left by a crash.
bool answering(const sockaddr_un& a) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool live = connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return live;
}

std::string random_nonce() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

std::string peer_of(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return "an unknown peer";
  return fmt::format("uid {} pid {}", cred.uid, cred.pid);
}

}  // namespace

struct LocalSocket::Conn {
  enum State { kReading, kWaiting, kWriting };
  explicit Conn(int f) : fd(f) {}
  ~Conn() { close(fd); }
  int fd;
  State state = kReading;
  std::string in, out;
  size_t written = 0;
  std::string token;  // while waiting
  std::string peer;   // for the log
  Clock::time_point deadline;
};

LocalSocket::LocalSocket(LocalSocketOptions options) : options_(std::move(options)), nonce_(random_nonce()) {}

Result<std::unique_ptr<LocalSocket>> LocalSocket::open(LocalSocketOptions options) {
  namespace fs = std::filesystem;
  const std::string path = options.path;
  auto refuse = [&](const std::string& why) { return Status(NODEHA_ERR_INVALID, fmt::format("{}: {}", path, why)); };
  auto final_addr = address_of(path);
  if (!final_addr) return refuse(fmt::format("longer than a unix socket path may be ({} bytes)", sizeof(sockaddr_un::sun_path) - 1));
  struct stat st{};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return refuse("exists and is not a socket; move it away or set [host] local_socket");
    if (answering(*final_addr)) return refuse("another process answers on it (is another nodeha-host running with this state_dir?)");
  }

  // Bound in a private directory, made 0600 there, then renamed over the path: no moment when
  // the socket is reachable with a wider mode, and a stale file is replaced in one step.
  fs::path parent = fs::path(path).parent_path();
  std::string tmpl = (parent / ".local-socket-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return refuse(fmt::format("cannot create a directory beside it: {}", errno_text(errno)));
  std::string staging = tmpl + "/s";
  auto cleanup = [&] {
    unlink(staging.c_str());
    rmdir(tmpl.c_str());
  };
  auto staging_addr = address_of(staging);
  if (!staging_addr) {
    cleanup();
    return refuse("its directory's path is too long for a unix socket");
  }
  std::unique_ptr<LocalSocket> s(new LocalSocket(std::move(options)));
  s->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  std::string failed;
  if (s->listen_fd_ < 0) failed = "socket";
  else if (bind(s->listen_fd_, reinterpret_cast<const sockaddr*>(&*staging_addr), sizeof *staging_addr) != 0) failed = "bind";
  else if (chmod(staging.c_str(), 0600) != 0) failed = "chmod";
  else if (listen(s->listen_fd_, 16) != 0) failed = "listen";
  else if (rename(staging.c_str(), path.c_str()) != 0) failed = "rename";
  else if (stat(path.c_str(), &st) != 0) failed = "stat";
  if (!failed.empty()) {
    int e = errno;
    cleanup();
    return refuse(fmt::format("{}: {}", failed, errno_text(e)));
  }
  cleanup();
  s->dev_ = st.st_dev;
  s->ino_ = st.st_ino;
  s->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wake_fd_ < 0) return refuse(fmt::format("eventfd: {}", errno_text(errno)));
  if (s->options_.metrics)
    for (const char* r : kResults) s->count_series(r);
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  pthread_setname_np(s->thread_.native_handle(), "local-socket");
  spdlog::info("serving the node-local path on {}", path);
  return s;
}

LocalSocket::~LocalSocket() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake();
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  // Only our own file: a host started meanwhile may have put its socket there.
  struct stat st{};
  if (ino_ != 0 && stat(options_.path.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    unlink(options_.path.c_str());
}

nodeha_metric* LocalSocket::count_series(const char* result) {
  return options_.metrics->series(NODEHA_METRIC_COUNTER, "nodeha_local_requests_total",
                                  "requests on the node-local socket by outcome", {{"result", result}}, {}, nullptr);
}

void LocalSocket::count(const char* result) {
  if (!options_.metrics) return;
  if (auto* m = count_series(result)) Metrics::add(m, 1);
}

void LocalSocket::wake() {
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

Result<uint64_t> LocalSocket::serve(const void* owner, const std::string& subject, Deliver fn) {
  const std::string under = options_.prefix + ".local.";
  if (subject.size() <= under.size() || subject.compare(0, under.size(), under) != 0 ||
      subject.find_first_of("*>") != std::string::npos)
    return Status(NODEHA_ERR_INVALID, fmt::format("{}: a subject served on the local socket must be {}<name>, without "
                                                  "wildcards", subject, under));
  std::string local = subject.substr(options_.prefix.size() + 1);
  std::lock_guard lock(mu_);
  if (by_subject_.count(local))
    return Status(NODEHA_ERR_CONFLICT, fmt::format("{}: {} is already served on the local socket by another plugin "
                                                   "instance", subject, local));
  uint64_t id = next_id_++;
  routes_[id] = Route{owner, subject, std::move(fn)};
  by_subject_[local] = id;
  return id;
}

void LocalSocket::unserve(uint64_t route) {
  std::unique_lock lock(mu_);
  auto it = routes_.find(route);
  if (it == routes_.end()) return;
  by_subject_.erase(it->second.subject.substr(options_.prefix.size() + 1));
  routes_.erase(it);
  // A delivery copied before the route went may still be running: its instance must outlive it.
  delivered_cv_.wait(lock, [&] { return !delivering_; });
}

void LocalSocket::abandon(const void* owner, const std::string& why) {
  std::vector<uint64_t> routes;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, r] : routes_)
      if (r.owner == owner) routes.push_back(id);
  }
  for (uint64_t id : routes) unserve(id);
  std::lock_guard lock(mu_);
  std::vector<std::string> tokens;
  for (const auto& [token, p] : pending_)
    if (p.owner == owner) tokens.push_back(token);
  for (const auto& token : tokens) {
    auto c = conns_.find(pending_[token].conn);
    if (c != conns_.end()) reply(*c->second, envelope(kLocalUnavailable, why), kLocalUnavailable);
  }
  if (!tokens.empty()) wake();
}

bool LocalSocket::is_token(std::string_view reply) { return reply.rfind(kTokenPrefix, 0) == 0; }

void LocalSocket::respond(const std::string& token, std::string_view body) {
  std::lock_guard lock(mu_);
  auto p = pending_.find(token);
  if (p == pending_.end()) {
    spdlog::debug("local socket: reply for {} dropped: nobody waits for it any more", token);
    return;
  }
  auto c = conns_.find(p->second.conn);
  if (c == conns_.end()) return;
  reply(*c->second, std::string(body), "answered");
  wake();
}

void LocalSocket::fail(const std::string& token, const char* code, const std::string& message) {
  std::lock_guard lock(mu_);
  auto p = pending_.find(token);
  if (p == pending_.end()) return;
  auto c = conns_.find(p->second.conn);
  if (c == conns_.end()) return;
  reply(*c->second, envelope(code, message), code);
  wake();
}

// From here on: mu_ held.

void LocalSocket::reply(Conn& c, std::string body, const char* result) {
  if (!c.token.empty()) pending_.erase(c.token);
  c.token.clear();
  c.out = std::move(body);
  c.out += '\n';
  c.written = 0;
  c.state = Conn::kWriting;
  c.deadline = Clock::now() + options_.io_timeout;
  count(result);
  if (std::strcmp(result, "answered") != 0) spdlog::warn("local socket: request from {}: {}", c.peer, c.out.substr(0, c.out.size() - 1));
}

void LocalSocket::accept_all() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
        spdlog::warn("local socket: accept: {}", errno_text(errno));
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    auto c = std::make_unique<Conn>(fd);
    c->peer = peer_of(fd);
    c->deadline = Clock::now() + options_.io_timeout;
    if (conns_.size() >= kMaxConnections)
      reply(*c, envelope(kLocalUnavailable, fmt::format("{} local requests are under way; try again when one is done",
                                                        kMaxConnections)),
            kLocalUnavailable);
    conns_[next_id_++] = std::move(c);
  }
}

void LocalSocket::handle_line(uint64_t id, Conn& c, std::vector<std::pair<Deliver, Message>>* deliveries) {
  auto bad = [&](const std::string& why) {
    reply(c, envelope(kLocalBadJson, why + R"(; send one line: {"subject":"local.<name>","data":"<request>"})"),
          kLocalBadJson);
  };
  auto request = parse_local_request(c.in);
  c.in.clear();
  if (!request) return bad(request.status().message());
  const std::string& subject = request->subject;
  auto route = by_subject_.find(subject);
  if (route == by_subject_.end()) {
    std::vector<std::string> known;
    for (const auto& [s, r] : by_subject_) known.push_back(s);
    return reply(c, envelope(kLocalUnknownSubject,
                             fmt::format("no plugin serves {} on this node (served: {})", echo_value(subject),
                                         known.empty() ? "none" : fmt::format("{}", fmt::join(known, ", ")))),
                 kLocalUnknownSubject);
  }
  const Route& r = routes_.at(route->second);
  c.token = fmt::format("{}{}.{}", kTokenPrefix, nonce_, id);
  c.state = Conn::kWaiting;
  c.deadline = Clock::now() + options_.max_wait;
  pending_[c.token] = Pending{id, r.owner};
  spdlog::info("local socket: {} from {}", subject, c.peer);
  deliveries->emplace_back(r.deliver, Message{r.subject, c.token, request->data});
}

bool LocalSocket::flush(Conn& c) {
  while (c.written < c.out.size()) {
    ssize_t n = send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0) return false;  // the client left; nothing more to tell it
    c.written += static_cast<size_t>(n);
  }
  return false;
}

void LocalSocket::expire(Clock::time_point now) {
  for (auto it = conns_.begin(); it != conns_.end();) {
    Conn& c = *it->second;
    if (c.deadline > now) {
      ++it;
      continue;
    }
    if (c.state == Conn::kReading) {
      reply(c, envelope(kLocalTimeout, fmt::format("no request line within {} ms", options_.io_timeout.count())),
            kLocalTimeout);
    } else if (c.state == Conn::kWaiting) {
      reply(c, envelope(kLocalTimeout, fmt::format("no reply within {} ms", options_.max_wait.count())), kLocalTimeout);
    } else {
      spdlog::warn("local socket: {} did not take its reply within {} ms", c.peer, options_.io_timeout.count());
      it = conns_.erase(it);
      continue;
    }
    ++it;
  }
}

void LocalSocket::run() {
  std::unique_lock lock(mu_);
  std::optional<Clock::time_point> stop_by;  // set once stopping: last replies go out until then
  std::vector<pollfd> fds;
  std::vector<uint64_t> ids;
  std::vector<std::pair<Deliver, Message>> deliveries;
  for (;;) {
    auto now = Clock::now();
    if (stopping_ && !stop_by) {
      stop_by = now + kStopFlush;
      for (auto it = conns_.begin(); it != conns_.end();) {
        if (it->second->state == Conn::kReading) {
          it = conns_.erase(it);
          continue;
        }
        if (it->second->state == Conn::kWaiting)
          reply(*it->second, envelope(kLocalUnavailable, "nodeha-host is stopping"), kLocalUnavailable);
        ++it;
      }
    }
    if (stop_by && (conns_.empty() || now >= *stop_by)) break;
    expire(now);

    fds.clear();
    ids.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({stop_by ? -1 : listen_fd_, POLLIN, 0});  // a negative fd is skipped
    auto next = stop_by.value_or(now + std::chrono::hours(1));
    for (const auto& [id, c] : conns_) {
      // While waiting nothing is read: a client that half-closes after its line is still there;
      // POLLHUP (both directions gone) says it left.
      short events = c->state == Conn::kReading ? POLLIN : c->state == Conn::kWriting ? POLLOUT : 0;
      fds.push_back({c->fd, events, 0});
      ids.push_back(id);
      next = std::min(next, c->deadline);
    }
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
    lock.unlock();
    int n = poll(fds.data(), fds.size(), static_cast<int>(std::clamp<int64_t>(wait, 0, INT_MAX)));
    int poll_errno = errno;
    lock.lock();
    if (n < 0) {
      if (poll_errno != EINTR) spdlog::error("local socket: poll: {}", errno_text(poll_errno));
      continue;
    }
    if (fds[0].revents) {
      uint64_t ticks = 0;
      (void)!read(wake_fd_, &ticks, sizeof ticks);
    }
    if (fds[1].revents & POLLIN) accept_all();
    for (size_t i = 0; i < ids.size(); ++i) {
      short revents = fds[i + 2].revents;
      auto it = conns_.find(ids[i]);
      if (revents == 0 || it == conns_.end()) continue;
      Conn& c = *it->second;
      bool keep = true;
      if (c.state == Conn::kReading) {
        char buf[16384];
        ssize_t got;
        while ((got = read(c.fd, buf, sizeof buf)) > 0 && c.in.size() <= kMaxLocalLine)
          c.in.append(buf, static_cast<size_t>(got));
        bool eof = got == 0, broken = got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
        LocalFrame frame = frame_local_request(c.in, eof);
        if (frame.state == LocalFraming::kTooLong) {
          reply(c, envelope(kLocalBadJson, fmt::format("request line longer than {} bytes", kMaxLocalLine)), kLocalBadJson);
        } else if (frame.state == LocalFraming::kLine) {
          c.in.resize(frame.line.size());
          handle_line(ids[i], c, &deliveries);
        } else {
          keep = !eof && !broken;  // closed before saying anything
        }
      } else if (c.state == Conn::kWaiting) {
        if (revents & (POLLHUP | POLLERR)) {
          spdlog::info("local socket: {} left before its reply", c.peer);
          pending_.erase(c.token);
          count("client_left");
          keep = false;
        }
      } else {
        keep = flush(c);
      }
      if (!keep) conns_.erase(it);
    }
    if (deliveries.empty()) continue;
    // Outside the lock (a plugin may answer at once), but unserve waits for it.
    delivering_ = true;
    lock.unlock();
    for (auto& [deliver, msg] : deliveries) {
      std::string token = msg.reply;
      if (!deliver(std::move(msg))) fail(token, kLocalUnavailable, "the plugin serving it is stopping");
    }
    deliveries.clear();
    lock.lock();
    delivering_ = false;
    delivered_cv_.notify_all();
  }
  conns_.clear();
  pending_.clear();
}

}  // namespace nodeha::host
