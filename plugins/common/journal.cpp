#include "journal.h"

#include "record_desk.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nodeha::journal {
namespace {

std::string path_of(const std::string& state_dir) { return state_dir + "/journal.jsonl"; }

// An exclusive flock for the life of the object: local actions (several plugins, each with its
// own copy of this code) and the reporter never interleave their writes. The lock is a file of
// its own, since the journal itself is replaced by rename.
class Locked {
 public:
  explicit Locked(const std::string& journal) : fd_(::open((journal + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Locked() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

Status io_error(const std::string& what, const std::string& path) {
  return Status(NODEHA_ERR_INTERNAL, what + " " + path + ": " + std::strerror(errno));
}

// Every line of the journal; a torn last line (a crash mid-append) is dropped.
std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("task")) out.push_back(std::move(j));
  }
  return out;
}

Status write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(NODEHA_ERR_INTERNAL, std::string("write: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return ::fsync(fd) == 0 ? Status::ok() : Status(NODEHA_ERR_INTERNAL, std::string("fsync: ") + std::strerror(errno));
}

// Replaces the journal with `lines` (write a temporary file, then rename over it).
Status rewrite(const std::string& path, const std::vector<nlohmann::json>& lines) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("cannot write", tmp);
  std::string text;
  for (const auto& l : lines) text += l.dump() + "\n";
  Status s = write_all(fd, text);
  ::close(fd);
  if (!s) return s;
  if (::rename(tmp.c_str(), path.c_str()) != 0) return io_error("cannot replace", path);
  return Status::ok();
}

}  // namespace

Status append(const std::string& state_dir, const nlohmann::json& task) {
  std::string path = path_of(state_dir);
  Locked lock(path);
  if (lock.fd() < 0) return io_error("cannot lock the journal", path);
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("cannot open the journal", path);
  Status s = write_all(fd, nlohmann::json{{"reported", false}, {"task", task}}.dump() + "\n");
  ::close(fd);
  return s;
}

Result<int> report(const Host& host) {
  std::string path = path_of(host.state_dir());
  if (::access(path.c_str(), F_OK) != 0) return 0;
  Locked lock(path);
  if (lock.fd() < 0) return io_error("cannot lock the journal", path);
  auto lines = read_lines(path);
  int reported = 0;
  Status failure;
  for (auto& l : lines) {
    if (l.value("reported", false)) continue;
    const auto& task = l["task"];
    std::string id = task.value("id", "");
    if (id.empty()) {
      l["reported"] = true;  // unreadable: nothing to report it as
      continue;
    }
    Status sent = desk::send(host, desk::TaskReport{task});
    if (!sent && sent.code() != NODEHA_ERR_INVALID) {
      failure = sent;
      break;
    }
    // Refused: the controller will never take it, so it is not offered again (it stays here).
    if (!sent) l["refused"] = sent.message();
    l["reported"] = true;
    ++reported;
  }
  if (reported > 0)
    if (Status s = rewrite(path, lines); !s) return s;
  if (!failure && reported == 0) return failure;  // the bus is down: everything waits
  return reported;
}

Result<nlohmann::json> entries(const std::string& state_dir) {
  std::string path = path_of(state_dir);
  if (::access(path.c_str(), F_OK) != 0) return nlohmann::json::array();
  Locked lock(path);
  if (lock.fd() < 0) return io_error("cannot open the journal", path);
  nlohmann::json out = nlohmann::json::array();
  for (auto& l : read_lines(path)) out.push_back(std::move(l));
  return out;
}

}  // namespace nodeha::journal
