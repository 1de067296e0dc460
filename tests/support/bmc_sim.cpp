#include "bmc_sim.h"

#include "netns.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <arpa/inet.h>
#include <csignal>
#include <fstream>
#include <netinet/in.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace nodeha::test {

int free_port_in(const std::string& ns, const std::string& address, int type) {
  int fd = socket_in(ns, type);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  socklen_t len = sizeof a;
  int port = 0;
  if (inet_pton(AF_INET, address.c_str(), &a.sin_addr) == 1 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

namespace {

// Alive and not a zombie waiting for ipmi_sim to reap it.
bool alive(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t close_paren = stat.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < stat.size() && stat[close_paren + 2] != 'Z';
}

// The BMC: one management controller at 0x20 (ipmi_sim starts with none).
constexpr const char* kEmu =
    "mc_setbmc 0x20\n"
    "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\n"
    "mc_enable 0x20\n";

}  // namespace

std::string BmcSim::lan_conf(int serial_port) const {
  std::ostringstream c;
  c << "name \"bmcsim\"\n"
    << "set_working_mc 0x20\n"
    << "  startlan 1\n"
    << "    addr " << options_.address << " " << options_.port << "\n"
    << "    priv_limit admin\n"
    << "    allowed_auths_callback none md2 md5 straight\n"
    << "    allowed_auths_user none md2 md5 straight\n"
    << "    allowed_auths_operator none md2 md5 straight\n"
    << "    allowed_auths_admin none md2 md5 straight\n"
    << "    guid a123456789abcdefa123456789abcdef\n"
    << "  endlan\n"
    // The system interface: with the VM codec, channel 15 can power the chassis on and off
    // (through startcmd); no VM ever connects to it.
    << "  serial 15 " << options_.address << " " << serial_port << " codec VM\n"
    << "  startcmd \"setsid /bin/sh " << dir_.file("machine.sh") << "\"\n"
    << "  startnow true\n"
    << "  poweroff_wait 1\n"
    << "  kill_wait 5\n"
    << "  user 2 true \"" << options_.user << "\" \"" << options_.password << "\" admin 10 none md2 md5 straight\n";
  return c.str();
}

BmcSim::BmcSim(BmcSimOptions options) : options_(std::move(options)) {
  if (options_.port == 0) options_.port = free_port_in(options_.netns, options_.address, SOCK_DGRAM);
  int serial_port = free_port_in(options_.netns, options_.address, SOCK_STREAM);
  if (options_.port == 0 || serial_port == 0) {
    error_ = "no free port on " + options_.address + (options_.netns.empty() ? "" : " in " + options_.netns);
    return;
  }
  dir_.write("on_power_off.sh", options_.on_power_off + "\n");
  // The machine: its pid (its process group: setsid) first, for machine_pid() and stop(); the
  // trap before anything can take time. `wait` returns at once on SIGTERM, unlike `sleep`.
  dir_.write("machine.sh", "trap 'kill $s 2>/dev/null; /bin/sh " + dir_.file("on_power_off.sh") + "; exit 0' TERM\n"
                           "echo $$ > " + dir_.file("machine.pid") + ".tmp && mv " + dir_.file("machine.pid") + ".tmp " +
                           dir_.file("machine.pid") + "\necho $$ >> " + dir_.file("machines") +
                           "\nwhile :; do sleep 3600 & s=$!; wait $s; done\n");
  dir_.write("password", options_.password);
  chmod(password_file().c_str(), 0600);
  dir_.write("lan.conf", lan_conf(serial_port));
  dir_.write("bmc.emu", kEmu);
  mkdir(dir_.file("state").c_str(), 0700);
  std::vector<std::string> argv = {"ipmi_sim", "-n", "-c", dir_.file("lan.conf"), "-f", dir_.file("bmc.emu"), "-s",
                                   dir_.file("state")};
  if (!options_.netns.empty()) argv = TestNetwork::argv_in(options_.netns, argv);
  sim_ = std::make_unique<Process>(argv, dir_.file("ipmi_sim.log"));
  if (!wait_until([&] { return !sim_->running() || (machine_running() && power_status() == true); }, 10s) ||
      !sim_->running())
    error_ = "ipmi_sim did not come up with the power on at " + options_.address + ":" + std::to_string(options_.port) +
             ": " + log();
}

BmcSim::~BmcSim() { stop(); }

std::optional<int> BmcSim::ipmitool(const std::string& action, std::string* out) const {
  std::vector<std::string> argv = {"ipmitool", "-I", "lanplus", "-C", "3", "-H", options_.address, "-p",
                                   std::to_string(options_.port), "-U", options_.user, "-f", password_file(),
                                   "-R", "1", "-N", "1", "chassis", "power", action};
  if (!options_.netns.empty()) argv = TestNetwork::argv_in(options_.netns, argv);
  std::string log = dir_.file("ipmitool.log");
  std::remove(log.c_str());
  Process p(argv, log);
  auto status = p.wait_exit(10s);
  *out = p.output();
  return status;
}

std::optional<bool> BmcSim::power_status() const {
  std::string out;
  if (ipmitool("status", &out) != 0) return std::nullopt;
  if (out.find("Chassis Power is on") != std::string::npos) return true;
  if (out.find("Chassis Power is off") != std::string::npos) return false;
  return std::nullopt;
}

bool BmcSim::power_on() {
  std::string out;
  if (ipmitool("on", &out) != 0) {
    error_ = "chassis power on: " + out;
    return false;
  }
  return wait_until([&] { return machine_running() && power_status() == true; }, 10s);
}

bool BmcSim::lose_power() {
  pid_t pid = machine_pid();
  if (pid == 0) return false;
  return ::kill(-pid, SIGKILL) == 0;  // its process group (setsid)
}

pid_t BmcSim::machine_pid() const {
  std::ifstream f(dir_.file("machine.pid"));
  pid_t pid = 0;
  if (!(f >> pid) || !alive(pid)) return 0;
  return pid;
}

void BmcSim::stop() {
  if (!sim_) return;
  // Every machine ever started leads its own process group: the group goes whole (its sleep, an
  // on_power_off command still running), then the simulator.
  std::vector<pid_t> groups;
  std::ifstream machines(dir_.file("machines"));
  for (pid_t pid = 0; machines >> pid;)
    if (pid > 0 && kill(-pid, SIGKILL) == 0) groups.push_back(pid);
  sim_.reset();
  // Killed is not yet gone: an orphan stays until it is reaped.
  bool gone = wait_until([&] {
    return std::none_of(groups.begin(), groups.end(), [](pid_t g) { return kill(-g, 0) == 0; });
  }, 5s);
  if (!gone) ADD_FAILURE() << "the simulated machine's processes outlived the BMC simulator";
}

std::string BmcSim::log() const {
  return read_file(dir_.file("ipmi_sim.log")) + read_file(dir_.file("ipmitool.log"));
}

}  // namespace nodeha::test
