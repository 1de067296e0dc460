// decode_check_message: a check's verdict on <prefix>.check.<node>.<name>, read by the agent
// (into its heartbeat) and by the controller.
#include "fuzz_check.h"
#include "heartbeat_codec.h"

using namespace nodeha;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = heartbeat::decode_check_message(fuzz::as_text(data, size));
  if (!m) return 0;
  fuzz::require(!m->check.name.empty(), "a verdict names its check");
  // What the agent does next: the verdict goes into its heartbeat, which the controller decodes.
  heartbeat::Heartbeat hb;
  hb.node = "node-a";
  hb.boot_id = "boot";
  hb.interval_ms = 1000;
  hb.checks.push_back(m->check);
  auto again = heartbeat::decode_heartbeat(heartbeat::encode_heartbeat(hb));
  fuzz::require(again.is_ok(), "a heartbeat carrying the verdict decodes");
  fuzz::require(again->checks == hb.checks, "the verdict survives the heartbeat");
  return 0;
}
