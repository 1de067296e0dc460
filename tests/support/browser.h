// A headless Chromium (Debian's `chromium`, never downloaded) driven over the DevTools protocol
// on a pipe: the browser reads JSON messages on its fd 3 and writes on its fd 4, each ended by a
// NUL (--remote-debugging-pipe); no websocket, no npm. One page (tab) per Browser.
//
// TLS: the browser trusts exactly the certificates whose SPKI hashes are given (Chromium's
// --ignore-certificate-errors-spki-list pins them; every other certificate is checked as usual).
//
// Thread contract: one test thread calls the methods; a reader thread of its own parses what the
// browser writes.
#pragma once

#include <nlohmann/json.hpp>

#include "wait.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace nodeha::test {

// base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in a PEM file; empty on failure.
std::string spki_pin(const std::string& cert_pem_file);

struct BrowserOptions {
  std::vector<std::string> trusted_spki;  // spki_pin() of the servers' certificates
  int width = 1280, height = 900;
};

class Browser {
 public:
  explicit Browser(BrowserOptions options = {});
  ~Browser();
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  // Whether the browser started and a page is attached; error() says why not.
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // Navigates and waits until the document is loaded; false (and error()) otherwise.
  bool open(const std::string& url, std::chrono::milliseconds timeout = 15s);
  // Evaluates `expression` in the page (awaiting a promise) and returns its value as JSON; an
  // exception or no answer within 10 s: {"error": "..."}.
  nlohmann::json eval(const std::string& expression);
  // Polls `expression` until it is truthy or the deadline passes.
  bool wait_for(const std::string& expression, std::chrono::milliseconds timeout = 10s);
  // Clicks / fills the first element matching `selector` (fill fires input and change events);
  // false if there is none.
  bool click(const std::string& selector);
  bool fill(const std::string& selector, const std::string& value);
  // The text of the first element matching `selector`; empty if none.
  std::string text(const std::string& selector);
  // Writes a PNG of the page to <build>/test-artifacts/browser/<name>.png, prints and returns its
  // path (empty on failure).
  std::string screenshot(const std::string& name);
  // The page's console messages and uncaught exceptions so far (for a failing test's message).
  std::string console() const;

 private:
  nlohmann::json call(const std::string& method, nlohmann::json params, bool on_page = true,
                      std::chrono::milliseconds timeout = 10s);
  void read_loop();
  void on_message(const std::string& text);

  TempDir profile_;
  int pid_ = -1;
  int to_browser_ = -1, from_browser_ = -1;
  std::string session_;
  std::string error_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int next_id_ = 1;
  std::map<int, nlohmann::json> replies_;
  std::deque<std::string> console_;
  bool closed_ = false;
};

}  // namespace nodeha::test
