// decode_heartbeat: the message every agent publishes on <prefix>.hb.<node>, read by the
// controller; and decode_wire_grant, the controller's word back on <prefix>.agent.<node>.hb.wire.
// Anything decoded must encode and decode again to the same record.
#include "fuzz_check.h"
#include "heartbeat_codec.h"

using namespace nodeha;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (auto g = heartbeat::decode_wire_grant(fuzz::as_text(data, size))) {
    auto again = heartbeat::decode_wire_grant(heartbeat::encode_wire_grant(*g));
    fuzz::require(again.is_ok() && *again == *g, "a wire grant survives encode and decode");
  }
  auto hb = heartbeat::decode_heartbeat(fuzz::as_text(data, size));
  if (!hb) {
    fuzz::require(hb.status().code() == NODEHA_ERR_INVALID, "a refused heartbeat is INVALID");
    fuzz::require(!hb.status().message().empty(), "a refusal says why");
    return 0;
  }
  fuzz::require(!hb->node.empty() && !hb->boot_id.empty() && hb->interval_ms > 0, "required fields are set");
  auto again = heartbeat::decode_heartbeat(heartbeat::encode_heartbeat(*hb));
  fuzz::require(again.is_ok(), "an encoded heartbeat decodes");
  fuzz::require(*again == *hb, "a heartbeat survives encode and decode");
  return 0;
}
