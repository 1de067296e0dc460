#include "cli_run.h"

#include "netns.h"
#include "process.h"

#include <atomic>

namespace nodeha::test {

CliRun run_cli(const std::vector<std::string>& args, const TempDir& dir, std::chrono::milliseconds timeout,
               const std::string& netns) {
  static std::atomic<int> runs{0};
  std::vector<std::string> argv{"/bin/sh", "-c", "exec \"$@\" </dev/null", "sh", NODEHA_CLI_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  if (!netns.empty()) argv = TestNetwork::argv_in(netns, argv);
  std::string n = std::to_string(runs++);
  std::string out = dir.file("cli.out." + n), err = dir.file("cli.err." + n);
  Process p(argv, out, err);
  CliRun r;
  r.status = p.wait_exit(timeout).value_or(-1);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace nodeha::test
