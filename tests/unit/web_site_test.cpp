// The web plugin's pure parts: which answer a request line gets (plugins/web/site.h) and the
// Alertmanager URL (alert_proxy.h). The server itself: integration/web_plugin_test.cpp.
#include "alert_proxy.h"
#include "site.h"

#include "wait.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace nodeha::web {
namespace {

using ::testing::HasSubstr;

class SiteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.write("index.html", "<p>page</p>");
    dir_.write("app.js", "1");
    dir_.write("style.css", "p{}");
    dir_.write("views.js", "2");
    dir_.write("secret.txt", "no");
    dir_.write(".hidden.js", "no");
    std::filesystem::create_directory(dir_.file("sub.js"));
  }
  test::TempDir dir_;
};

TEST_F(SiteTest, ServesTheTableOfFilesAndNothingElse) {
  auto site = Site::load(dir_.path(), {{"wss://a:1"}, "nodeha", true});
  ASSERT_TRUE(site) << site.status().message();
  EXPECT_EQ(site->answer("GET", "/").body, "<p>page</p>");
  EXPECT_EQ(site->answer("GET", "/views.js?x=1").body, "2");
  EXPECT_THAT(site->answer("HEAD", "/style.css").content_type, HasSubstr("text/css"));
  for (std::string target : {"/secret.txt", "/.hidden.js", "/sub.js", "/../index.html", "/./index.html",
                             "index.html", "/INDEX.HTML", "/index.html/", ""})
    EXPECT_EQ(site->answer("GET", target).status, 404u) << target;
  EXPECT_EQ(site->answer("POST", "/").status, 405u);
  auto config = site->answer("GET", "/config.json");
  EXPECT_TRUE(config.no_store);
  EXPECT_EQ(config.body, R"({"alerts":true,"prefix":"nodeha","servers":["wss://a:1"]})");
  EXPECT_TRUE(site->answer("GET", "/api/alerts").alerts);
}

TEST_F(SiteTest, AMissingPageFileIsRefusedWithItsPath) {
  std::filesystem::remove(dir_.file("app.js"));
  auto site = Site::load(dir_.path(), {});
  ASSERT_FALSE(site);
  EXPECT_THAT(site.status().message(), HasSubstr(dir_.file("app.js") + " cannot be read"));
}

TEST(AlertmanagerUrl, TakesHttpHostPortAndPathOnly) {
  auto u = parse_http_url("http://am.example:9093/prefix/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "am.example");
  EXPECT_EQ(u->port, "9093");
  EXPECT_EQ(u->path, "/prefix");
  EXPECT_EQ(parse_http_url("http://[::1]:9093")->host, "::1");
  EXPECT_EQ(parse_http_url("http://am")->port, "80");
  for (std::string bad : {"https://am:9093", "am:9093", "http://", "http://user@am", "http://am:99999", "http://am:x",
                          "http://am/?q=1"})
    EXPECT_FALSE(parse_http_url(bad)) << bad;
}

}  // namespace
}  // namespace nodeha::web
