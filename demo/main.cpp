// nodeha-demo-cluster: builds the demo cluster and takes commands for it, one a line on stdin,
// so that scripts/demo can tell the story in bash and run the `nodeha` commands itself.
//
//   nodeha-demo-cluster --dir DIR [--guests N] [--test-driver]
//
// It starts the cluster at once. Every reply (the start's included) is zero or more lines of
// text for a person, then one line: `ok`, `error`, or `interrupted` (a signal came). Commands:
//   kill NODE                        power loss: agent, hypervisor, guests
//   power-on NODE                    power back: hypervisor and old guests, not the agent
//   start-agent NODE                 the node's agent (with its old state dir)
//   wait-node NODE KEY VALUE SECS    monitor|management VALUE, or lock free|held
//   wait-empty NODE SECS             no VM recorded on or running on NODE
//   wait-running SECS                every guest's record says running
//   wait-stale NODE SECS             NODE removed the stale copy of every guest it ran at its
//                                    power loss (they were rebuilt elsewhere meanwhile)
//   check                            every guest runs on exactly one node, its recorded one
//   kept-off NODE LOST               NODE still disabled, none of LOST's guests recorded on it
//   kill-leader                      kill -9 of the leading controller and of the nats-server
//                                    it is connected to; holds once the other leads, then
//                                    starts both again (the controller follows)
//   quit                             stops everything (so do EOF, SIGINT, SIGTERM, SIGHUP)
// Exit status: 0 after quit or EOF, 1 when the cluster did not start, 2 usage, 130 on a signal.
#include "cluster.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <sstream>

namespace {

int g_signal_pipe[2] = {-1, -1};
std::atomic<bool> g_interrupted{false};

void on_signal(int) {
  g_interrupted = true;
  char c = 1;
  [[maybe_unused]] auto w = write(g_signal_pipe[1], &c, 1);
}

// A handler, not SIG_IGN: an ignored signal stays ignored in the processes we start.
void on_sigpipe(int) {}

void reply(const std::string& text) {
  std::cout << text << std::endl;  // flushed: scripts/demo reads it line by line
}

int usage(const std::string& why) {
  std::cerr << "nodeha-demo-cluster: " << why << "\nusage: nodeha-demo-cluster --dir DIR [--guests N] [--test-driver]\n";
  return 2;
}

// Runs one command line; false for quit.
bool run(nodeha::demo::Cluster& cluster, const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> w;
  for (std::string s; in >> s;) w.push_back(s);
  if (w.empty()) return true;
  auto secs = [&](size_t i) { return i < w.size() ? std::atoi(w[i].c_str()) : 0; };
  bool ok = false;
  if (w[0] == "quit") return false;
  if (w[0] == "kill" && w.size() == 2) ok = cluster.kill_node(w[1]);
  else if (w[0] == "power-on" && w.size() == 2) ok = cluster.power_on_node(w[1]);
  else if (w[0] == "start-agent" && w.size() == 2) ok = cluster.start_agent(w[1]);
  else if (w[0] == "wait-node" && w.size() == 5) ok = cluster.wait_node(w[1], w[2], w[3], secs(4));
  else if (w[0] == "wait-empty" && w.size() == 3) ok = cluster.wait_empty(w[1], secs(2));
  else if (w[0] == "wait-running" && w.size() == 2) ok = cluster.wait_running(secs(1));
  else if (w[0] == "wait-stale" && w.size() == 3) ok = cluster.wait_stale(w[1], secs(2));
  else if (w[0] == "check" && w.size() == 1) ok = cluster.check();
  else if (w[0] == "kept-off" && w.size() == 3) ok = cluster.kept_off(w[1], w[2]);
  else if (w[0] == "kill-leader" && w.size() == 1) ok = cluster.kill_leader();
  else reply("unknown command: " + line);
  reply(g_interrupted ? "interrupted" : ok ? "ok" : "error");
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  nodeha::demo::Options options;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc) options.dir = argv[++i];
    else if (a == "--guests" && i + 1 < argc) options.guests_per_node = std::atoi(argv[++i]);
    else if (a == "--test-driver") options.force_test_driver = true;
    else return usage("unknown argument '" + a + "'");
  }
  if (options.dir.empty()) return usage("--dir is required");
  if (options.guests_per_node < 1 || options.guests_per_node > 9) return usage("--guests takes 1 to 9");

  // The harness reports trouble through gtest (ADD_FAILURE); outside a test its printer would
  // only repeat, out of context, what the cluster says in its own words.
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  delete listeners.Release(listeners.default_result_printer());

  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) return 1;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  sa.sa_handler = on_sigpipe;
  sigaction(SIGPIPE, &sa, nullptr);

  int status = 0;
  {
    nodeha::demo::Cluster cluster(options, reply, [] { return g_interrupted.load(); });
    bool started = cluster.start();
    reply(g_interrupted ? "interrupted" : started ? "ok" : "error");
    status = started ? 0 : 1;
    while (started && !g_interrupted && std::cout.good()) {
      pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {g_signal_pipe[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) continue;  // EINTR: the signal pipe says why
      if (fds[1].revents) break;
      std::string line;
      // One command at a time: scripts/demo waits for each reply before it sends the next.
      if (!std::getline(std::cin, line) || !run(cluster, line)) break;
    }
    if (g_interrupted) status = 130;
  }  // everything stops here
  return status;
}
