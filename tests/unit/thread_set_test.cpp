#include "thread_set.h"
#include "wait.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace nodeha {
namespace {

TEST(ThreadSet, RunsEachOnItsOwnThreadAtOnceAndJoinWaitsForAll) {
  ThreadSet set;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  std::atomic<int> done{0};
  // Six threads that each wait until all six are running: they must run side by side.
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(set.start([&] {
      std::unique_lock lock(mu);
      ++arrived;
      cv.notify_all();
      cv.wait(lock, [&] { return arrived == 6; });
      ++done;
    }));
  set.join();
  EXPECT_EQ(done, 6);
  EXPECT_FALSE(set.start([&] { ++done; }));  // closed: not run
  EXPECT_EQ(done, 6);
}

TEST(ThreadSet, AThreadMayStartAnotherAndEndedThreadsAreReaped) {
  ThreadSet set;
  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(set.start([&] {
      if (!set.start([&] { ++done; })) ADD_FAILURE() << "a start from a thread of the set was refused";
      ++done;
    }));
  // Every inner start happened before join() closes the set (a start after it is refused).
  EXPECT_TRUE(test::wait_until([&] { return done == 200; }, std::chrono::seconds(10))) << done;
  set.join();
  EXPECT_EQ(done, 200);
}

// A reply from another process read carelessly can throw; on a thread of the set that must not
// end the process (std::terminate), and the set goes on.
TEST(ThreadSet, AThreadThatThrowsEndsAloneAndTheSetGoesOn) {
  ThreadSet set;
  std::atomic<int> done{0};
  ASSERT_TRUE(set.start([] { throw std::runtime_error("a field of the wrong type"); }));
  ASSERT_TRUE(set.start([] { throw 42; }));
  ASSERT_TRUE(set.start([&] { ++done; }));
  set.join();
  EXPECT_EQ(done, 1);
}

}  // namespace
}  // namespace nodeha
