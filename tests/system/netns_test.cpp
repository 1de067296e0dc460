// The test cluster's network (tests/support/netns.h) against real namespaces: nodes reach each
// other on every network (management, business, storage), a cut takes one network away and leaves
// the others, a node's byte counters count what crossed its link on one network only, nats-server
// in the control plane serves the nodes over management, and nothing is left behind: neither by
// the object when it is destroyed, nor by an earlier run that crashed.
//
// Needs root and iproute2; without them the tests fail (they do not skip).
#include "nats_server.h"
#include "netns.h"
#include "process.h"
#include "wait.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <thread>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kProbe = 1s;      // a connect that has not completed by then counts as failed
constexpr auto kSettle = 10s;    // links coming up, a daemon starting
constexpr int kNatsPort = 4222;  // the control plane's namespace is the server's alone

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in inet(const std::string& address, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, address.c_str(), &addr.sin_addr);
  return addr;
}

// A TCP listener in `ns` on `address` and a port of the kernel's choice (port 0 on failure). The
// kernel completes connections into its backlog: nothing needs to accept them.
struct Listener {
  Listener(const std::string& ns, const std::string& address) : fd(socket_in(ns, SOCK_STREAM)) {
    sockaddr_in addr = inet(address, 0);
    socklen_t len = sizeof addr;
    if (fd.get() >= 0 && bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        listen(fd.get(), 64) == 0 && getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port = ntohs(addr.sin_port);
  }
  Fd fd;
  int port = 0;
};

// Whether a TCP connection from `ns` to address:port completes within `timeout`.
bool connects(const std::string& ns, const std::string& address, int port, std::chrono::milliseconds timeout) {
  Fd fd(socket_in(ns, SOCK_STREAM | SOCK_NONBLOCK));
  if (fd.get() < 0) return false;
  sockaddr_in addr = inet(address, port);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{fd.get(), POLLOUT, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  int err = 0;
  socklen_t len = sizeof err;
  return getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}

// The output of a short command; the test fails if it does not exit 0.
std::string run(const std::vector<std::string>& argv) {
  TempDir dir;
  Process p(argv, dir.file("out"));
  auto status = p.wait_exit(kSettle);
  EXPECT_EQ(status, 0) << argv[0] << " " << argv[1] << ": " << p.output();
  return p.output();
}

std::string netns_list() { return run({"ip", "netns", "list"}); }
std::string root_links() { return run({"ip", "link"}); }

// Whether process `pid` has entered namespace `ns` (`ip netns exec` joins it after it started).
bool inside(const std::string& ns, pid_t pid) {
  std::string pids = " " + run({"ip", "netns", "pids", ns});
  for (auto& c : pids) c = c == '\n' ? ' ' : c;
  return pids.find(" " + std::to_string(pid) + " ") != std::string::npos;
}

// Listeners on a node's management, business and storage addresses, and whether a namespace
// reaches them.
struct NodeListeners {
  NodeListeners(const TestNetwork& net, int node)
      : net(net), node(node), mgmt(net.node_ns(node), net.node_address(node, Network::kManagement)),
        biz(net.node_ns(node), net.node_address(node, Network::kBusiness)),
        stor(net.node_ns(node), net.node_address(node, Network::kStorage)) {}
  bool listening() const { return mgmt.port != 0 && biz.port != 0 && stor.port != 0; }
  const Listener& on(Network net) const {
    return net == Network::kManagement ? mgmt : net == Network::kBusiness ? biz : stor;
  }
  bool reached_from(const std::string& ns, Network over) const {
    return connects(ns, net.node_address(node, over), on(over).port, kProbe);
  }
  const TestNetwork& net;
  int node;
  Listener mgmt, biz, stor;
};

TEST(NetnsTest, NodesReachEachOtherOnEveryNetwork) {
  TestNetwork net(3);
  ASSERT_TRUE(net.ready()) << net.error();
  NodeListeners node1(net, 1);
  ASSERT_TRUE(node1.listening());

  EXPECT_TRUE(wait_until([&] { return node1.reached_from(net.node_ns(2), Network::kBusiness); }, kSettle))
      << "node-2 cannot reach node-1 over business";
  EXPECT_TRUE(wait_until([&] { return node1.reached_from(net.control_ns(), Network::kManagement); }, kSettle))
      << "the control plane cannot reach node-1 over management";
  EXPECT_TRUE(wait_until([&] { return node1.reached_from(net.node_ns(3), Network::kManagement); }, kSettle))
      << "node-3 cannot reach node-1 over management";
  EXPECT_TRUE(wait_until([&] { return node1.reached_from(net.node_ns(3), Network::kStorage); }, kSettle))
      << "node-3 cannot reach node-1 over storage";
  // The control plane and the controller are on management only, and the root namespace is untouched.
  EXPECT_FALSE(node1.reached_from(net.control_ns(), Network::kBusiness));
  EXPECT_FALSE(node1.reached_from(net.control_ns(), Network::kStorage));
  EXPECT_FALSE(node1.reached_from(net.controller_ns(), Network::kStorage));
  EXPECT_THAT(root_links(), Not(HasSubstr("nh" + net.tag())));
}

TEST(NetnsTest, CutManagementKeepsBusinessAndRestoreBringsItBack) {
  TestNetwork net(3);
  ASSERT_TRUE(net.ready()) << net.error();
  NodeListeners node1(net, 1);
  ASSERT_TRUE(node1.listening());
  auto management_works = [&] { return node1.reached_from(net.control_ns(), Network::kManagement); };
  auto business_works = [&] { return node1.reached_from(net.node_ns(2), Network::kBusiness); };
  ASSERT_TRUE(wait_until(management_works, kSettle));
  ASSERT_TRUE(wait_until(business_works, kSettle));

  ASSERT_TRUE(net.cut(1, Network::kManagement)) << net.error();
  EXPECT_FALSE(management_works()) << "management still reaches node-1 after the cut";
  EXPECT_TRUE(business_works()) << "cutting management took business down too";

  ASSERT_TRUE(net.restore(1, Network::kManagement)) << net.error();
  EXPECT_TRUE(wait_until(management_works, kSettle)) << "management did not come back";
  EXPECT_TRUE(business_works());

  ASSERT_TRUE(net.cut_all(1)) << net.error();
  EXPECT_FALSE(management_works());
  EXPECT_FALSE(business_works());
  ASSERT_TRUE(net.restore_all(1)) << net.error();
  EXPECT_TRUE(wait_until(management_works, kSettle));
  EXPECT_TRUE(wait_until(business_works, kSettle));
}

TEST(NetnsTest, CutStorageKeepsTheOthersAndRestoreBringsItBack) {
  TestNetwork net(2);
  ASSERT_TRUE(net.ready()) << net.error();
  NodeListeners node1(net, 1);
  ASSERT_TRUE(node1.listening());
  auto works = [&](Network over) { return node1.reached_from(net.node_ns(2), over); };
  for (Network over : kNodeNetworks) ASSERT_TRUE(wait_until([&] { return works(over); }, kSettle)) << name(over);

  ASSERT_TRUE(net.cut(1, Network::kStorage)) << net.error();
  EXPECT_FALSE(works(Network::kStorage)) << "storage still reaches node-1 after the cut";
  EXPECT_TRUE(works(Network::kManagement)) << "cutting storage took management down too";
  EXPECT_TRUE(works(Network::kBusiness)) << "cutting storage took business down too";

  ASSERT_TRUE(net.restore(1, Network::kStorage)) << net.error();
  EXPECT_TRUE(wait_until([&] { return works(Network::kStorage); }, kSettle)) << "storage did not come back";

  ASSERT_TRUE(net.cut_all(1)) << net.error();
  EXPECT_FALSE(works(Network::kStorage)) << "cut_all left storage up";
  ASSERT_TRUE(net.restore_all(1)) << net.error();
  EXPECT_TRUE(wait_until([&] { return works(Network::kStorage); }, kSettle)) << "restore_all left storage down";
}

// 4 MiB sent from node-2 to node-1 over storage show on node-2's stor0 (tx) and node-1's stor0
// (rx), and on no other link of theirs.
TEST(NetnsTest, CountersCountOneNetworkOnly) {
  TestNetwork net(2);
  ASSERT_TRUE(net.ready()) << net.error();
  constexpr uint64_t kSent = 4u << 20;
  // A listener of its own: the reachability probes leave their connections in another's backlog.
  NodeListeners probed(net, 1);
  ASSERT_TRUE(probed.listening());
  ASSERT_TRUE(wait_until([&] { return probed.reached_from(net.node_ns(2), Network::kStorage); }, kSettle));
  Listener sink(net.node_ns(1), net.node_address(1, Network::kStorage));
  ASSERT_NE(sink.port, 0);
  // Bounded: accept, read and write give up after this instead of hanging the test.
  timeval bound{.tv_sec = 10, .tv_usec = 0};
  setsockopt(sink.fd.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  TrafficMeter meter(net);
  ASSERT_TRUE(meter.ok()) << meter.error();

  // Accepted on node-1 and read to the end on a thread, while node-2 writes.
  uint64_t received = 0;
  std::thread reader([&] {
    Fd conn(accept(sink.fd.get(), nullptr, nullptr));
    if (conn.get() < 0) return;
    setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
    char buf[65536];
    for (ssize_t n; (n = read(conn.get(), buf, sizeof buf)) > 0;) received += static_cast<uint64_t>(n);
  });
  std::string failed = [&]() -> std::string {
    Fd fd(socket_in(net.node_ns(2), SOCK_STREAM));
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
    sockaddr_in addr = inet(net.node_address(1, Network::kStorage), sink.port);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      return std::string("connect: ") + std::strerror(errno);
    std::vector<char> chunk(65536, 'x');
    for (uint64_t sent = 0; sent < kSent; sent += chunk.size())
      if (write(fd.get(), chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size()))
        return std::string("write: ") + std::strerror(errno);
    return "";
  }();  // closed: the reader sees the end
  reader.join();
  ASSERT_EQ(failed, "");
  ASSERT_EQ(received, kSent);
  ASSERT_TRUE(meter.stop()) << meter.error();

  EXPECT_GE(meter.carried(2, Network::kStorage).tx, kSent) << meter.text();
  EXPECT_GE(meter.carried(1, Network::kStorage).rx, kSent) << meter.text();
  for (int node : {1, 2})
    for (Network over : {Network::kManagement, Network::kBusiness}) {
      EXPECT_LT(meter.carried(node, over).tx, kSent / 100) << meter.text();
      EXPECT_LT(meter.carried(node, over).rx, kSent / 100) << meter.text();
    }
  EXPECT_FALSE(net.counters(3, Network::kStorage)) << "node-3 does not exist";
  EXPECT_FALSE(net.counters(0, Network::kStorage)) << "node-0 does not exist";
}

TEST(NetnsTest, NatsServerInControlPlaneServesNodesOverManagement) {
  TestNetwork net(3);
  ASSERT_TRUE(net.ready()) << net.error();
  NatsServer nats({.netns = net.control_ns(), .address = net.control_address(), .port = kNatsPort});
  ASSERT_FALSE(::testing::Test::HasFailure()) << "nats-server did not start in " << net.control_ns();

  // A client in node-2's namespace, as an agent would connect: the server greets with INFO.
  auto greeting = [&] {
    TempDir dir;
    std::string probe =
        "exec 3<>/dev/tcp/" + net.control_address() + "/" + std::to_string(kNatsPort) + " && head -c 4 <&3";
    Process client(TestNetwork::argv_in(net.node_ns(2), {"timeout", "2", "bash", "-c", probe}), dir.file("out"));
    auto status = client.wait_exit(kSettle);
    return std::make_pair(status, client.output());
  };
  auto [status, out] = greeting();
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, "INFO");

  ASSERT_TRUE(net.cut(2, Network::kManagement)) << net.error();
  auto [cut_status, cut_out] = greeting();
  EXPECT_NE(cut_status, 0) << "node-2 reached nats-server with its management link cut: " << cut_out;
}

TEST(NetnsTest, DestructionLeavesNothing) {
  std::vector<std::string> names;
  std::string tag;
  TempDir dir;
  std::unique_ptr<Process> lingering;  // outlives the network: its destructor must kill it
  {
    TestNetwork net(4);
    ASSERT_TRUE(net.ready()) << net.error();
    names = net.namespaces();
    tag = net.tag();
    ASSERT_EQ(names.size(), 9u);  // three bridges, the control plane, the controller, four nodes
    std::string listed = netns_list();
    for (const auto& ns : names) EXPECT_THAT(listed, HasSubstr(ns));
    EXPECT_THAT(run({"ip", "-n", names[0], "link"}), HasSubstr("nh" + tag));
    lingering = std::make_unique<Process>(TestNetwork::argv_in(net.node_ns(4), {"sleep", "600"}), dir.file("sleep"));
    ASSERT_TRUE(wait_until([&] { return inside(net.node_ns(4), lingering->pid()); }, kSettle));
  }
  EXPECT_EQ(lingering->wait_exit(kSettle), 128 + SIGKILL);
  std::string listed = netns_list();
  for (const auto& ns : names) EXPECT_THAT(listed, Not(HasSubstr(ns)));
  EXPECT_THAT(listed, Not(HasSubstr("-" + tag + "-")));
  EXPECT_THAT(root_links(), Not(HasSubstr("nh" + tag)));
}

TEST(NetnsTest, ConstructionRemovesLeftoversOfDeadCreatorsOnly) {
  pid_t dead = fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) _exit(0);
  ASSERT_EQ(waitpid(dead, nullptr, 0), dead);
  TempDir dir;
  Process alive({"sleep", "600"}, dir.file("alive"));
  const std::string orphan = std::string(TestNetwork::kNamePrefix) + std::to_string(dead) + "-0dead0-n1";
  const std::string owned = std::string(TestNetwork::kNamePrefix) + std::to_string(alive.pid()) + "-0a11fe-n1";
  run({"ip", "netns", "add", orphan});
  run({"ip", "netns", "add", owned});
  Process stray(TestNetwork::argv_in(orphan, {"sleep", "600"}), dir.file("stray"));
  ASSERT_TRUE(wait_until([&] { return inside(orphan, stray.pid()); }, kSettle));

  {
    TestNetwork net(1);
    EXPECT_TRUE(net.ready()) << net.error();
  }
  std::string listed = netns_list();
  EXPECT_THAT(listed, Not(HasSubstr(orphan))) << "a crashed run's namespace survived";
  EXPECT_EQ(stray.wait_exit(kSettle), 128 + SIGKILL) << "a process in it survived";
  EXPECT_THAT(listed, HasSubstr(owned)) << "the namespace of a live test was removed";
  run({"ip", "netns", "delete", owned});
}

}  // namespace
}  // namespace nodeha::test
