// The Debian packages as an operator gets them: `cpack` builds nodeha and nodeha-dev from this
// build tree, `dpkg -i` installs them into a fresh root whose dpkg database knows only the
// packages they depend on (as installed on this machine), and what was installed runs: both
// shipped configs pass `nodeha-host --check` with the installed binary and plugins, and both
// systemd units pass `systemd-analyze verify`.
#include "process.h"
#include "wait.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <sys/stat.h>

namespace nodeha::test {
namespace {

namespace fs = std::filesystem;

struct RunResult {
  int status = -1;  // -1: it did not end within the timeout
  std::string output;
};

// Runs argv to its end (PATH also searched in /usr/sbin and /sbin, where dpkg looks for
// ldconfig and start-stop-daemon), output kept in a log under `dir`.
RunResult run(std::vector<std::string> argv, const TempDir& dir, std::chrono::milliseconds timeout = 60s) {
  static int runs = 0;
  std::string log = dir.file("run-" + std::to_string(++runs) + ".log");
  const char* path = std::getenv("PATH");
  argv.insert(argv.begin(), {"env", std::string("PATH=") + (path ? path : "/usr/bin:/bin") + ":/usr/sbin:/sbin"});
  Process p(argv, log);
  auto status = p.wait_exit(timeout);
  return {status.value_or(-1), read_file(log)};
}

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Package names of a Depends field ("libc6 (>= 2.34), libfoo1 | libfoo2"), every alternative.
std::vector<std::string> depended_names(const std::string& depends) {
  std::vector<std::string> names;
  std::regex name(R"(([a-z0-9][a-z0-9.+-]+)(:[a-z0-9]+)?\s*(\([^)]*\))?)");
  for (std::sregex_iterator it(depends.begin(), depends.end(), name), end; it != end; ++it) names.push_back((*it)[1]);
  return names;
}

class Package : public testing::Test {
 protected:
  // Builds both packages and installs them into root_ with a dpkg database of its own.
  void SetUp() override {
    std::string out = dir_.file("packages");
    auto built = run({"cpack", "-G", "DEB", "--config", NODEHA_BINARY_DIR "/CPackConfig.cmake", "-B", out}, dir_);
    ASSERT_EQ(built.status, 0) << built.output;
    for (const auto& e : fs::directory_iterator(out)) {
      std::string name = e.path().filename().string();
      if (name.rfind("nodeha_", 0) == 0 && e.path().extension() == ".deb") deb_ = e.path().string();
      if (name.rfind("nodeha-dev_", 0) == 0 && e.path().extension() == ".deb") dev_deb_ = e.path().string();
    }
    ASSERT_FALSE(deb_.empty()) << built.output;
    ASSERT_FALSE(dev_deb_.empty()) << built.output;

    root_ = dir_.file("root");
    for (const char* d : {"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"})
      fs::create_directories(root_ + "/" + d);
    // The root's database knows what both packages depend on, as this machine has it: dpkg
    // refuses them (no --force-depends) if their Depends name a package or version it lacks.
    // A name may be virtual (libspdlog1.10-fmt9 is provided by libspdlog1.10): its provider goes.
    auto installed_here = run({"dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Package}\t${Provides}\n"}, dir_);
    ASSERT_EQ(installed_here.status, 0) << installed_here.output;
    std::map<std::string, std::string> provider;  // package or provided name -> installed package
    std::istringstream lines(installed_here.output);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("ii", 0) != 0) continue;  // known to dpkg but not installed
      size_t name = line.find('\t') + 1, provides = line.find('\t', name);
      std::string package = line.substr(name, provides - name);
      provider.emplace(package, package);
      for (auto& n : depended_names(line.substr(provides + 1))) provider.emplace(n, package);
    }
    std::vector<std::string> query{"dpkg-query", "-s"};
    for (const auto& deb : {deb_, dev_deb_}) {
      auto depends = run({"dpkg-deb", "-f", deb, "Depends"}, dir_);
      ASSERT_EQ(depends.status, 0) << depends.output;
      for (auto& n : depended_names(depends.output)) {
        auto it = provider.find(n);
        ASSERT_NE(it, provider.end()) << deb << " depends on " << n << ", which nothing installed here provides";
        query.push_back(it->second);
      }
    }
    auto status = run(query, dir_);
    ASSERT_EQ(status.status, 0) << "a dependency is not installed here: " << status.output;
    std::ofstream(root_ + "/var/lib/dpkg/status") << status.output;

    auto installed = dpkg({"-i", deb_, dev_deb_});
    ASSERT_EQ(installed.status, 0) << installed.output;
  }

  // dpkg on root_: without chroot (the maintainer scripts see $DPKG_ROOT and do nothing), its
  // log in the temp dir rather than the machine's /var/log/dpkg.log.
  RunResult dpkg(std::vector<std::string> args) {
    std::vector<std::string> argv{"dpkg", "--root=" + root_, "--log=" + dir_.file("dpkg.log"), "--force-not-root",
                                  "--force-script-chrootless", "--force-unsafe-io"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, dir_);
  }
  std::string query(const std::string& format, const std::string& package) {
    auto r = run({"dpkg-query", "--root=" + root_, "-W", "-f=" + format, package}, dir_);
    EXPECT_EQ(r.status, 0) << r.output;
    return r.output;
  }
  std::string in_root(const std::string& path) const { return root_ + path; }

  TempDir dir_;
  std::string deb_, dev_deb_, root_;
};

bool executable(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & S_IXUSR);
}

TEST_F(Package, InstallsIntoAFreshRootAndItsConfigsCheck) {
  EXPECT_EQ(query("${Status}", "nodeha"), "install ok installed");
  EXPECT_EQ(query("${Status}", "nodeha-dev"), "install ok installed");
  // dpkg keeps an operator's edits to these across upgrades, and asks before replacing them.
  std::string conffiles = query("${Conffiles}", "nodeha");
  EXPECT_NE(conffiles.find(" /etc/nodeha/agent.toml "), std::string::npos) << conffiles;
  EXPECT_NE(conffiles.find(" /etc/nodeha/controller.toml "), std::string::npos) << conffiles;

  EXPECT_TRUE(executable(in_root("/usr/bin/nodeha-host")));
  EXPECT_TRUE(executable(in_root("/usr/bin/nodeha")));
  for (const char* f : {"/lib/systemd/system/nodeha-agent.service", "/lib/systemd/system/nodeha-controller.service",
                        "/usr/share/nodeha/config/prometheus/nodeha-rules.yml", "/usr/include/nodeha/plugin.h",
                        "/usr/include/nodeha/plugin.hpp", "/usr/lib/cmake/nodeha/nodeha-config.cmake",
                        "/usr/lib/cmake/nodeha/NodehaPlugin.cmake",
                        // the web page and its server (plugins/web: `files` defaults to this dir)
                        "/usr/share/nodeha/web/index.html", "/usr/share/nodeha/web/app.js",
                        "/usr/lib/nodeha/plugins/nodeha_web.so"})
    EXPECT_TRUE(fs::is_regular_file(in_root(f))) << f;

  // Each shipped config, as installed, with the installed binary and plugins only.
  std::string plugins = in_root("/usr/lib/nodeha/plugins");
  for (const char* role : {"agent", "controller"}) {
    std::string config = in_root(std::string("/etc/nodeha/") + role + ".toml");
    std::istringstream text(read_file(config));
    int tables = 0;
    for (std::string line; std::getline(text, line);) tables += line.rfind("[[plugin]]", 0) == 0;
    std::vector<std::string> argv{in_root("/usr/bin/nodeha-host"), "--check", "--config", config, "--set",
                                  "host.plugin_path=[\"" + plugins + "\"]"};
    auto check = run(argv, dir_);
    EXPECT_EQ(check.status, 0) << joined(argv) << "\n" << check.output;
    EXPECT_NE(check.output.find("valid, " + std::to_string(tables) + " plugin(s)"), std::string::npos)
        << joined(argv) << "\n" << check.output;
  }
  auto cli = run({in_root("/usr/bin/nodeha"), "--version"}, dir_);
  EXPECT_EQ(cli.status, 0) << cli.output;

  // Removed, not purged: the programs go, the operator's configuration stays.
  auto removed = dpkg({"-r", "nodeha"});
  ASSERT_EQ(removed.status, 0) << removed.output;
  EXPECT_FALSE(fs::exists(in_root("/usr/bin/nodeha-host")));
  EXPECT_FALSE(fs::exists(in_root("/lib/systemd/system/nodeha-agent.service")));
  EXPECT_TRUE(fs::exists(in_root("/etc/nodeha/agent.toml")));
  EXPECT_EQ(query("${Status}", "nodeha"), "deinstall ok config-files");
}

// nodeha-dev is enough to build a plugin out of tree (the example echo plugin, against the root's
// /usr alone), and the installed host loads it.
TEST_F(Package, DevPackageBuildsAPluginTheInstalledHostLoads) {
  std::string build = dir_.file("echo-build");
  auto configured = run({"cmake", "-S", NODEHA_SOURCE_DIR "/examples/echo-plugin", "-B", build, "-G", "Ninja",
                         "-DCMAKE_PREFIX_PATH=" + in_root("/usr"), "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF"},
                        dir_);
  ASSERT_EQ(configured.status, 0) << configured.output;
  // The SDK found is the package's, not this build tree's or one under /usr/local.
  std::string cache = read_file(build + "/CMakeCache.txt");
  EXPECT_NE(cache.find("nodeha_DIR:PATH=" + in_root("/usr/lib/cmake/nodeha")), std::string::npos) << cache;
  auto built = run({"cmake", "--build", build}, dir_);
  ASSERT_EQ(built.status, 0) << built.output;

  std::string config = dir_.write("echo.toml", "[host]\nrole = \"agent\"\nnode_id = \"node-x\"\n[[plugin]]\nlibrary = \"" +
                                                   build + "/nodeha_echo.so\"\n");
  auto check = run({in_root("/usr/bin/nodeha-host"), "--check", "--config", config}, dir_);
  EXPECT_EQ(check.status, 0) << check.output;
  EXPECT_NE(check.output.find("valid, 1 plugin(s)"), std::string::npos) << check.output;
}

// The installed units as systemd reads them. systemd does not run here, so its checks of the
// ExecStart binary look at the real /usr/bin: each unit is verified as a copy whose
// ExecStart names the installed root's binary and config, after checking that the path it
// names is what the package installed.
TEST_F(Package, SystemdUnitsVerify) {
  for (const char* role : {"agent", "controller"}) {
    std::string name = std::string("nodeha-") + role + ".service";
    std::string unit = read_file(in_root("/lib/systemd/system/" + name));
    std::string exec = "ExecStart=/usr/bin/nodeha-host --config /etc/nodeha/" + std::string(role) + ".toml\n";
    ASSERT_NE(unit.find(exec), std::string::npos) << unit;
    EXPECT_TRUE(executable(in_root("/usr/bin/nodeha-host")));
    for (const char* line : {"Type=notify\n", "NotifyAccess=main\n", "Restart=always\n", "WatchdogSec=10s\n"})
      EXPECT_NE(unit.find(line), std::string::npos) << name << " lacks " << line;

    std::string copy = dir_.file(name);
    std::ofstream(copy) << unit.replace(unit.find(exec), exec.size(),
                                        "ExecStart=" + in_root("/usr/bin/nodeha-host") + " --config " +
                                            in_root("/etc/nodeha/") + role + ".toml\n");
    auto verify = run({"systemd-analyze", "verify", copy}, dir_);
    EXPECT_EQ(verify.status, 0) << verify.output;
    EXPECT_EQ(verify.output, "") << "systemd has a remark on " << name;

    // systemd's own reading of the hardening: 0 (locked down) to 10 (nothing); ours stay low.
    auto security = run({"systemd-analyze", "security", "--offline=true", copy}, dir_);
    EXPECT_EQ(security.status, 0) << security.output;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(security.output, m, std::regex(R"(Overall exposure level for \S+: ([0-9.]+))")))
        << security.output;
    EXPECT_LE(std::stod(m[1]), 3.0) << security.output;
  }
}

}  // namespace
}  // namespace nodeha::test
