// What the load generators (heartbeat_load, agent_load, scheduler_e2e, rebuild_load, ...) share to measure and
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
// A "VmRSS:   1234 kB" line of a /proc status file, as a number (kB for sizes); NaN when absent.
double status_field(const std::string& path, const std::string& key);
double status_mib(pid_t pid, const std::string& key);  // of /proc/<pid>/status, in MiB

}  // namespace nodeha::bench
