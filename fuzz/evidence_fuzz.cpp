// The history's decoders of outside input: a JetStream message-get answer (cli/event_log.h), the
// event inside it and its evidence object (plugins/common/evidence.h), as `nodeha node history`
// reads them from the events stream, which any controller (or a stolen controller credential)
// writes. Every answer decodes or is refused; a decoded evidence encodes and decodes to itself;
// any record prints as a timeline line.
#include "event_log.h"
#include "evidence.h"
#include "fuzz_check.h"

using namespace nodeha;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto text = std::string(fuzz::as_text(data, size));
  auto answer = cli::event_log::decode_answer(text);
  if (auto* e = std::get_if<cli::event_log::Event>(&answer)) {
    fuzz::require(e->record.is_object(), "a decoded event is an object");
    (void)cli::event_log::timeline_line(e->record);
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return 0;
  (void)cli::event_log::timeline_line(j.is_object() ? j : nlohmann::json{{"evidence", j}});
  auto ev = evidence::from_json(j);
  if (!ev) return 0;
  auto again = evidence::from_json(evidence::to_json(*ev));
  fuzz::require(again.is_ok() && again->summary == ev->summary && again->by == ev->by && again->epoch == ev->epoch &&
                    again->requester == ev->requester && again->task == ev->task,
                "a decoded evidence encodes and decodes to itself");
  return 0;
}
