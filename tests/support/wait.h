// Waiting on conditions with deadlines (never on sleeps), temp dirs and small HTTP reads.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace nodeha::test {

using namespace std::chrono_literals;

// Polls `cond` every few milliseconds until it holds or `timeout` passes; returns whether it held.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 10s);

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Writes `text` to `name` and returns its path.
  std::string write(const std::string& name, const std::string& text) const;

 private:
  std::string path_;
};

std::string read_file(const std::string& path);

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string body;
};
// GET http://host:port/path over HTTP/1.0, from network namespace `netns` ("" for the test's own;
// see netns.h).
HttpReply http_fetch(const std::string& host_port, const std::string& path, const std::string& netns = "");
// The body of a GET; empty on any failure.
inline std::string http_get(const std::string& host_port, const std::string& path, const std::string& netns = "") {
  return http_fetch(host_port, path, netns).body;
}

// The value of a sample line `name{labels} value` in a Prometheus text exposition; NaN if absent.
double metric_value(const std::string& exposition, const std::string& series);

// A loopback TCP port that was free a moment ago.
int free_port();

}  // namespace nodeha::test
