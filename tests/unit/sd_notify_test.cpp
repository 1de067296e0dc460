// When the host feeds systemd's watchdog, and how often: half of $WATCHDOG_USEC, only for the
// process $WATCHDOG_PID names (or any, when unset), never for a malformed value.
#include "sd_notify.h"

#include <gtest/gtest.h>

namespace nodeha::host {
namespace {

using std::chrono::microseconds;

TEST(WatchdogPeriod, HalfOfTheTimeoutForThisProcess) {
  EXPECT_EQ(watchdog_period("10000000", nullptr, 42), microseconds(5000000));
  EXPECT_EQ(watchdog_period("400000", "", 42), microseconds(200000));
  EXPECT_EQ(watchdog_period("400000", "42", 42), microseconds(200000));
}

TEST(WatchdogPeriod, NoneForAnotherProcessOrWithoutATimeout) {
  EXPECT_EQ(watchdog_period("400000", "41", 42), std::nullopt);  // meant for another process of the unit
  EXPECT_EQ(watchdog_period(nullptr, nullptr, 42), std::nullopt);
  EXPECT_EQ(watchdog_period("", nullptr, 42), std::nullopt);
  EXPECT_EQ(watchdog_period("0", nullptr, 42), std::nullopt);  // systemd's "off"
}

TEST(WatchdogPeriod, MalformedValuesTurnItOff) {
  for (const char* usec : {"-1", "10s", " 400000", "400000 ", "0x10", "99999999999999999999999"})
    EXPECT_EQ(watchdog_period(usec, nullptr, 42), std::nullopt) << usec;
  EXPECT_EQ(watchdog_period("400000", "42abc", 42), std::nullopt);
  EXPECT_EQ(watchdog_period("400000", "-42", 42), std::nullopt);
}

}  // namespace
}  // namespace nodeha::host
