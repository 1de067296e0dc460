#include "fence_loop.h"

#include "ipmitool.h"

namespace nodeha::fence_ipmi {
namespace {

// The first line of what ipmitool printed.
std::string first_line(const std::string& out) {
  std::string line = out.substr(0, out.find('\n'));
  return line.size() > 200 ? line.substr(0, 200) : line;
}

}  // namespace

Outcome confirm_off(const FenceSteps& steps) {
  std::string said, why;
  bool sent = false;  // the BMC took `power off`
  bool look = false;  // it refused `power off`: look whether it is off already
  while (steps.time_left()) {
    const char* action = sent || look ? "status" : "off";
    Try t = steps.call(action);
    switch (t.kind) {
      case Try::kRefused: return {false, "", t.why};
      case Try::kNoAnswer:
        // Cut short by the deadline, a call says less than the try before it.
        if (why.empty() || steps.time_left()) why = t.why;
        break;
      case Try::kFailed:
        why = t.why;
        look = !sent && !look;
        break;
      case Try::kAnswered:
        if (!sent && !look) {
          sent = true;
          said = first_line(t.out);
          continue;  // look at once: most BMCs are off by the time they answer
        }
        if (parse_power(t.out) == Power::kOff) return {true, said.empty() ? first_line(t.out) : said + "; " + first_line(t.out), ""};
        if (parse_power(t.out) == Power::kOn)
          why = sent ? "the BMC took `chassis power off` (\"" + said + "\") but the chassis still says on" : why;
        else
          why = "`chassis power status` said \"" + first_line(t.out) + "\"";
        look = false;
        break;
    }
    if (steps.time_left()) steps.pause();
  }
  return {false, "", why.empty() ? "no time left for a first try" : why};
}

}  // namespace nodeha::fence_ipmi
