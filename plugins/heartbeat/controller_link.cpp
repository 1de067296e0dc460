// The controller's own link to NATS, watched so that its trouble never reads as the nodes'
// silence (see controller.h and the suspended mode in monitor.h).
#include "controller.h"

namespace nodeha::heartbeat {

namespace {

std::string tenths(Clock::duration d) {
  auto ms = std::chrono::duration_cast<Millis>(d).count();
  return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + "s";
}

constexpr const char* kReconnected = "the connection to NATS was lost and made again";

}  // namespace

// Every tick, without a round trip: disconnected, or connected again since the last look, the
// monitor is suspended; suspended and connected, a probe is taken, and its success resumes.
void ControllerSide::watch_link() {
  if (!monitor_.config().confirm_link) return;  // a host older than plugin interface 1.3
  uint64_t connects = 0;
  Status s = host_.bus_status(Millis(0), &connects);
  bool again = connects != connects_;
  connects_ = connects;
  if (!s) suspend("not connected to NATS (" + s.message() + ")");
  else if (again) suspend(kReconnected);
  if (s && monitor_.suspension()) probe_link();
}

// A round trip to the server on a worker (it blocks up to ping_timeout, the bound the pings it
// vouches for had). One at a time: asked again meanwhile, another follows at once.
void ControllerSide::probe_link() {
  if (probing_) {
    probe_again_ = true;
    return;
  }
  probing_ = true;
  probe_again_ = false;
  TimePoint sent = Clock::now();  // before the flush leaves: a conservative send time
  Millis timeout = monitor_.config().ping_timeout;
  auto spawned = host_.spawn([this, sent, timeout] {
    uint64_t connects = 0;
    Status status = host_.bus_status(timeout, &connects);
    host_.post([this, sent, status, connects] { link_probed(sent, status, connects); });
  });
  if (!spawned) {
    probing_ = false;
    suspend("cannot probe the link to NATS: " + spawned.message());
  }
}

void ControllerSide::link_probed(TimePoint sent, const Status& status, uint64_t connects) {
  probing_ = false;
  bool again = connects != connects_;
  connects_ = connects;
  if (!status) {
    suspend("the link to NATS failed a round trip: " + status.message());
  } else if (again) {
    suspend(kReconnected);  // the next tick probes again
  } else {
    auto held = monitor_.suspension();
    apply(monitor_.on_link_ok(sent, Clock::now()));
    if (held && !monitor_.suspension()) {
      suspended_.set(0);
      host_.info("monitor resumed after " + tenths(Clock::now() - held->since) + " suspended (" + held->reason +
                 "): every node gets a full detection window before it is judged");
    }
  }
  if (probe_again_) probe_link();
}

void ControllerSide::suspend(const std::string& reason) {
  if (!monitor_.config().confirm_link) return;  // without bus_status nothing would resume it
  if (!monitor_.suspend(Clock::now(), reason)) return;
  suspended_.set(1);
  host_.warn("monitor suspended: " + reason + "; no node is judged until the link to NATS answers again");
}

}  // namespace nodeha::heartbeat
