// What the load generators (heartbeat_load, scheduler_e2e, rebuild_load) share to measure and
// print: numbers as table cells, percentiles, the machine's load, a process's CPU time.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

namespace nodeha::bench {

std::string fixed(double v, int digits = 1);         // "n/a" for NaN
double percentile(std::vector<double> v, double p);  // nearest rank; NaN when empty
std::string loadavg();                               // the three load averages of /proc/loadavg
double cpu_seconds(pid_t pid);                       // utime + stime from /proc; NaN when the process is gone

}  // namespace nodeha::bench
