// decode_heartbeat: the message every agent publishes on <prefix>.hb.<node>, read by the
// controller; and decode_wire_grant, the controller's word back on <prefix>.agent.<node>.hb.wire.
// Anything decoded must encode and decode again to the same record. A Repeat (the controller's
// way of taking a node's next heartbeat undecoded) must match only what decodes to the kept
// heartbeat with new counters, and must match the message it was made from.
#include "fuzz_check.h"
#include "heartbeat_codec.h"
#include "repeat.h"

using namespace nodeha;

namespace {

// A steady node's heartbeat, kept as the controller keeps it (the corpus holds its bytes).
const heartbeat::Heartbeat& kept() {
  static const heartbeat::Heartbeat hb = [] {
    heartbeat::Heartbeat h;
    h.version = 2;
    h.node = "n1";
    h.seq = 7;
    h.boot_id = "b1";
    h.sent_at = 1700000000000;
    h.interval_ms = 1000;
    h.addresses = {{"management", "10.0.0.5"}};
    h.has_vms = false;
    h.vms_digest = "0123456789abcdef";
    h.checks = {{"netcheck", true, "", 1700000000000}};
    return h;
  }();
  return hb;
}

void check_repeat(std::string_view text, const Result<heartbeat::Heartbeat>& decoded) {
  static const auto repeat = heartbeat::Repeat::of(heartbeat::encode_heartbeat(kept()), kept());
  fuzz::require(repeat.has_value(), "a canonical heartbeat makes a Repeat");
  if (auto c = repeat->match(text)) {
    heartbeat::Heartbeat expect = kept();
    expect.seq = c->seq;
    expect.sent_at = c->sent_at;
    fuzz::require(decoded.is_ok() && *decoded == expect, "a matched repeat decodes to the kept heartbeat with its counters");
  }
  if (!decoded) return;
  if (auto own = heartbeat::Repeat::of(text, *decoded)) {
    auto c = own->match(text);
    fuzz::require(c && c->seq == decoded->seq && c->sent_at == decoded->sent_at, "a Repeat matches its own message");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (auto g = heartbeat::decode_wire_grant(fuzz::as_text(data, size))) {
    auto again = heartbeat::decode_wire_grant(heartbeat::encode_wire_grant(*g));
    fuzz::require(again.is_ok() && *again == *g, "a wire grant survives encode and decode");
  }
  auto hb = heartbeat::decode_heartbeat(fuzz::as_text(data, size));
  check_repeat(fuzz::as_text(data, size), hb);
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
