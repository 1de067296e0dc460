// Self-fencing's decoders of outside input (plugins/selffence/fence_lease.h): a lease renewal as
// the leader reads it from the bus, a grant as the agent reads it, and a witness datagram as any
// host on the business network may send it. The first byte picks the decoder.
#include "fence_lease.h"
#include "fuzz_check.h"

using namespace nodeha;

namespace {
// A fixed key, so that the fuzzer can reach the decoding past the mac: the corpus holds datagrams
// sealed with it.
const std::string kKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto text = fuzz::as_text(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto r = lease::decode_renewal(text);
      if (!r) return 0;
      auto again = lease::decode_renewal(lease::encode(*r));
      fuzz::require(again.is_ok() && *again == *r, "a decoded renewal encodes and decodes to itself");
      for (const auto& h : r->heard)
        fuzz::require(h.node != r->node && h.any_first_ms >= h.any_last_ms, "a renewal's hearings are checked");
      break;
    }
    case 1: {
      auto g = lease::decode_grant(text);
      if (!g) return 0;
      auto again = lease::decode_grant(lease::encode(*g));
      fuzz::require(again.is_ok() && *again == *g, "a decoded grant encodes and decodes to itself");
      fuzz::require(g->seq > 0 && g->fence_after_ms > 0 && g->key.size() == 64, "a grant's numbers and key are checked");
      break;
    }
    default: {
      auto d = lease::open(text, kKey);
      if (!d) return 0;
      auto again = lease::open(lease::seal(*d, kKey), kKey);
      fuzz::require(again.is_ok() && *again == *d, "an opened datagram seals and opens to itself");
      break;
    }
  }
  return 0;
}
