#include "browser.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace nodeha::test {
namespace {

std::string base64(const unsigned char* data, size_t size) {
  std::string out(4 * ((size + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(n);
  return out;
}

std::string unbase64(const std::string& text) {
  std::string out(3 * text.size() / 4 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return "";
  size_t pad = text.size() >= 2 ? (text[text.size() - 1] == '=') + (text[text.size() - 2] == '=') : 0;
  out.resize(n - pad);
  return out;
}

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += n;
  }
  return true;
}

}  // namespace

std::string spki_pin(const std::string& cert_pem_file) {
  FILE* f = std::fopen(cert_pem_file.c_str(), "r");
  if (!f) return "";
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!cert) return "";
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(X509_get0_pubkey(cert), &der);
  std::string pin;
  if (len > 0) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(der, len, digest);
    pin = base64(digest, sizeof digest);
  }
  OPENSSL_free(der);
  X509_free(cert);
  return pin;
}

Browser::Browser(BrowserOptions options) {
  int in[2], out[2];  // in: we write, the browser reads (its fd 3); out: the reverse (its fd 4)
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    error_ = "pipe failed";
    return;
  }
  std::vector<std::string> args = {"chromium", "--headless=new", "--no-sandbox", "--remote-debugging-pipe",
                                   "--user-data-dir=" + profile_.path(), "--no-first-run", "--disable-gpu",
                                   "--disable-extensions", "--disable-background-networking", "--disable-sync",
                                   "--hide-scrollbars", "--mute-audio",
                                   "--window-size=" + std::to_string(options.width) + "," +
                                       std::to_string(options.height)};
  std::string pins;
  for (const auto& p : options.trusted_spki) pins += (pins.empty() ? "" : ",") + p;
  if (!pins.empty()) args.push_back("--ignore-certificate-errors-spki-list=" + pins);
  args.push_back("about:blank");
  std::string log = profile_.file("chromium.log");
  pid_ = fork();
  if (pid_ == 0) {
    dup2(in[0], 3);
    dup2(out[1], 4);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  to_browser_ = in[1];
  from_browser_ = out[0];
  if (pid_ < 0) {
    error_ = "fork failed";
    return;
  }
  reader_ = std::thread([this] { read_loop(); });
  auto target = call("Target.createTarget", {{"url", "about:blank"}}, false, 30s);
  if (!target.contains("targetId")) {
    error_ = "chromium did not open a page: " + target.dump() + "; " + read_file(log);
    return;
  }
  auto attached = call("Target.attachToTarget", {{"targetId", target["targetId"]}, {"flatten", true}}, false);
  if (!attached.contains("sessionId")) {
    error_ = "could not attach to the page: " + attached.dump();
    return;
  }
  session_ = attached["sessionId"];
  call("Page.enable", nlohmann::json::object());
  call("Runtime.enable", nlohmann::json::object());
}

Browser::~Browser() {
  if (pid_ > 0) {
    call("Browser.close", nlohmann::json::object(), false, 5s);
    bool gone = wait_until([&] { return waitpid(pid_, nullptr, WNOHANG) == pid_; }, 5s);
    if (!gone) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  if (to_browser_ >= 0) ::close(to_browser_);
  if (reader_.joinable()) reader_.join();
  if (from_browser_ >= 0) ::close(from_browser_);
}

nlohmann::json Browser::call(const std::string& method, nlohmann::json params, bool on_page,
                             std::chrono::milliseconds timeout) {
  int id;
  {
    std::lock_guard lock(mu_);
    if (closed_) return {{"error", "the browser has gone"}};
    id = next_id_++;
  }
  nlohmann::json msg = {{"id", id}, {"method", method}, {"params", std::move(params)}};
  if (on_page) msg["sessionId"] = session_;
  if (!write_all(to_browser_, msg.dump() + std::string(1, '\0'))) return {{"error", "cannot write to the browser"}};
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return closed_ || replies_.count(id); }))
    return {{"error", method + ": no answer within " + std::to_string(timeout.count()) + " ms"}};
  if (!replies_.count(id)) return {{"error", "the browser has gone"}};
  auto reply = std::move(replies_[id]);
  replies_.erase(id);
  if (reply.contains("error")) return {{"error", reply["error"].dump()}};
  return reply.value("result", nlohmann::json::object());
}

void Browser::read_loop() {
  std::string pending;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(from_browser_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, n);
    size_t start = 0;
    for (size_t nul; (nul = pending.find('\0', start)) != std::string::npos; start = nul + 1)
      on_message(pending.substr(start, nul - start));
    pending.erase(0, start);
  }
  std::lock_guard lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

void Browser::on_message(const std::string& text) {
  auto msg = nlohmann::json::parse(text, nullptr, false);
  if (msg.is_discarded()) return;
  std::lock_guard lock(mu_);
  if (msg.contains("id")) {
    int id = msg["id"].is_number_integer() ? msg["id"].get<int>() : 0;
    replies_[id] = std::move(msg);
    cv_.notify_all();
    return;
  }
  std::string method = msg.value("method", "");
  if (method == "Runtime.consoleAPICalled") {
    std::string line = msg["params"].value("type", "log") + ":";
    for (const auto& a : msg["params"]["args"]) line += " " + (a.contains("value") ? a["value"].dump() : a.value("description", "?"));
    console_.push_back(line);
  } else if (method == "Runtime.exceptionThrown") {
    console_.push_back("exception: " + msg["params"]["exceptionDetails"].dump());
  }
  if (console_.size() > 200) console_.pop_front();
}

bool Browser::open(const std::string& url, std::chrono::milliseconds timeout) {
  auto r = call("Page.navigate", {{"url", url}});
  if (r.contains("error") || r.contains("errorText")) {
    error_ = "navigate to " + url + ": " + r.dump();
    return false;
  }
  // Compared without the fragment: a page may rewrite its hash (drop a secret) once loaded.
  std::string base = url.substr(0, url.find('#'));
  if (!wait_for("document.readyState === 'complete' && location.href.split('#')[0] === " + nlohmann::json(base).dump(),
                timeout)) {
    error_ = "the page " + url + " did not load: " + eval("location.href + ' ' + document.readyState").dump();
    return false;
  }
  return true;
}

nlohmann::json Browser::eval(const std::string& expression) {
  auto r = call("Runtime.evaluate",
                {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}});
  if (r.contains("error")) return r;
  if (r.contains("exceptionDetails")) return {{"error", r["exceptionDetails"].value("text", "exception") + ": " +
                                                            r["exceptionDetails"].value("exception", nlohmann::json{}).dump()}};
  return r["result"].value("value", nlohmann::json());
}

bool Browser::wait_for(const std::string& expression, std::chrono::milliseconds timeout) {
  std::string truthy = "(() => { try { return !!(" + expression + "); } catch (e) { return false; } })()";
  return wait_until([&] { return eval(truthy) == true; }, timeout);
}

bool Browser::click(const std::string& selector) {
  return eval("(() => { const e = document.querySelector(" + nlohmann::json(selector).dump() +
              "); if (!e) return false; e.click(); return true; })()") == true;
}

bool Browser::fill(const std::string& selector, const std::string& value) {
  return eval("(() => { const e = document.querySelector(" + nlohmann::json(selector).dump() +
              "); if (!e) return false; e.value = " + nlohmann::json(value).dump() +
              "; e.dispatchEvent(new Event('input', {bubbles: true})); "
              "e.dispatchEvent(new Event('change', {bubbles: true})); return true; })()") == true;
}

std::string Browser::text(const std::string& selector) {
  auto r = eval("(() => { const e = document.querySelector(" + nlohmann::json(selector).dump() +
                "); return e ? e.textContent : ''; })()");
  return r.is_string() ? r.get<std::string>() : "";
}

std::string Browser::screenshot(const std::string& name) {
  auto r = call("Page.captureScreenshot", {{"format", "png"}}, true, 20s);
  if (!r.contains("data")) return "";
  std::filesystem::path dir = std::filesystem::path(NODEHA_BINARY_DIR) / "test-artifacts" / "browser";
  std::filesystem::create_directories(dir);
  std::string path = (dir / (name + ".png")).string();
  std::ofstream(path, std::ios::binary) << unbase64(r["data"].get<std::string>());
  std::cout << "screenshot: " << path << std::endl;
  return path;
}

std::string Browser::console() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& line : console_) out += line + "\n";
  return out;
}

}  // namespace nodeha::test
