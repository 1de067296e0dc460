#include "repeat.h"

#include <nodeha/ids.hpp>

#include <charconv>

namespace nodeha::heartbeat {
namespace {

bool digit(char c) { return c >= '0' && c <= '9'; }

// The length of the integer written at text[at] as the encoder writes one: an optional '-' (when
// `sign`), then "0" or a non-zero digit and more digits; 0 when there is none such. "-0" and
// leading zeros are not what the encoder writes, so they are no match.
size_t integer_length(std::string_view text, size_t at, bool sign) {
  size_t i = at;
  if (sign && i < text.size() && text[i] == '-') ++i;
  size_t first = i;
  while (i < text.size() && digit(text[i])) ++i;
  size_t digits = i - first;
  if (digits == 0 || digits > 20) return 0;
  if (text[first] == '0' && (digits > 1 || first > at)) return 0;
  return i - at;
}

// Where the value of the plain key `"key":` stands, when it is an integer: in a canonical
// heartbeat that is the top-level field, the only one (see repeat.h).
std::optional<size_t> value_of(std::string_view text, std::string_view quoted_key, bool sign) {
  for (size_t at = text.find(quoted_key); at != std::string_view::npos; at = text.find(quoted_key, at + 1)) {
    size_t value = at + quoted_key.size();
    if (integer_length(text, value, sign) > 0) return value;
  }
  return std::nullopt;
}

template <class T>
std::optional<T> read_integer(std::string_view text, size_t at, size_t size) {
  T v{};
  auto [end, ec] = std::from_chars(text.data() + at, text.data() + at + size, v);
  if (ec != std::errc() || end != text.data() + at + size) return std::nullopt;  // out of range
  return v;
}

}  // namespace

std::optional<Repeat> Repeat::of(std::string_view text, const Heartbeat& hb) {
  if (encode_heartbeat(hb) != text) return std::nullopt;
  auto sent_at = value_of(text, "\"sent_at\":", true);
  auto seq = value_of(text, "\"seq\":", false);
  if (!sent_at || !seq || *seq < *sent_at) return std::nullopt;
  Repeat r;
  r.text_ = text;
  r.sent_at_ = {*sent_at, integer_length(text, *sent_at, true)};
  r.seq_ = {*seq, integer_length(text, *seq, false)};
  return r;
}

std::optional<Repeat::Counters> Repeat::match(std::string_view text) const {
  std::string_view kept = text_;
  size_t before = sent_at_.at;                                  // up to sent_at's value
  size_t between = seq_.at - (sent_at_.at + sent_at_.size);     // from it to seq's value
  size_t after = kept.size() - (seq_.at + seq_.size);           // from seq's value to the end
  if (text.size() < before + between + after + 2 || text.size() > kMaxHeartbeatBytes) return std::nullopt;
  if (text.compare(0, before, kept.substr(0, before)) != 0) return std::nullopt;
  size_t sent_at_size = integer_length(text, before, true);
  if (sent_at_size == 0) return std::nullopt;
  size_t at = before + sent_at_size;
  if (text.compare(at, between, kept.substr(sent_at_.at + sent_at_.size, between)) != 0) return std::nullopt;
  size_t seq_at = at + between;
  size_t seq_size = integer_length(text, seq_at, false);
  if (seq_size == 0 || text.size() - (seq_at + seq_size) != after) return std::nullopt;
  if (text.compare(seq_at + seq_size, after, kept.substr(seq_.at + seq_.size)) != 0) return std::nullopt;
  auto sent = read_integer<int64_t>(text, before, sent_at_size);
  auto seq = read_integer<uint64_t>(text, seq_at, seq_size);
  if (!sent || !seq) return std::nullopt;
  return Counters{*seq, *sent};
}

}  // namespace nodeha::heartbeat
