#include "command.h"

namespace nodeha::command {
namespace {

const char* type_name(Type t) {
  switch (t) {
    case Type::String: return "a string";
    case Type::Bool: return "a boolean";
    case Type::Integer: return "an integer";
    case Type::Number: return "a number";
    case Type::Array: return "an array";
    case Type::Object: return "an object";
    case Type::StringOrInteger: return "a string or an integer";
  }
  return "?";
}

bool has_type(const nlohmann::json& v, Type t) {
  switch (t) {
    case Type::String: return v.is_string();
    case Type::Bool: return v.is_boolean();
    case Type::Integer: return v.is_number_integer();
    case Type::Number: return v.is_number();
    case Type::Array: return v.is_array();
    case Type::Object: return v.is_object();
    case Type::StringOrInteger: return v.is_string() || v.is_number_integer();
  }
  return false;
}

}  // namespace

std::string ok(const nlohmann::json& result) { return nlohmann::json{{"ok", true}, {"result", result}}.dump(); }

std::string fail(const Error& e) {
  if (e.changes.is_null()) return fail(e.code, e.message);
  return nlohmann::json{{"ok", false}, {"error", {{"code", e.code}, {"message", e.message}, {"changes", e.changes}}}}.dump();
}

std::string fail(std::string_view code, std::string_view message) {
  return nlohmann::json{{"ok", false}, {"error", {{"code", code}, {"message", message}}}}.dump();
}

Envelope parse_envelope(std::string_view reply) {
  Envelope out;
  out.result = nlohmann::json::object();
  auto j = nlohmann::json::parse(reply, nullptr, false);
  auto field = [&](const char* key) -> const nlohmann::json* {
    auto it = j.is_object() ? j.find(key) : j.end();
    return j.is_object() && it != j.end() ? &*it : nullptr;
  };
  const nlohmann::json* ok = field("ok");
  if (!ok || !ok->is_boolean()) {
    out.malformed = true;
    out.code = kInternal;
    out.message = "the reply is no envelope ({\"ok\": true|false, ...})";
    return out;
  }
  out.ok = ok->get<bool>();
  if (const nlohmann::json* r = field("result"); r && r->is_object()) out.result = *r;
  if (const nlohmann::json* e = field("error"); e && e->is_object()) {
    auto text = [&](const char* key) {
      auto it = e->find(key);
      return it != e->end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    out.code = text("code");
    out.message = std::string(cut_text(text("message"), kMaxDetailLength));
  }
  if (!out.ok && out.code.empty()) out.code = kInternal;
  return out;
}

std::optional<Error> decode(std::string_view body, std::initializer_list<Field> fields, nlohmann::json* out,
                            size_t limit) {
  return decode_fields(body, std::span<const Field>(fields.begin(), fields.size()), out, limit);
}

std::optional<Error> decode_fields(std::string_view body, std::span<const Field> fields, nlohmann::json* out,
                                   size_t limit) {
  if (body.size() > limit) return Error{kBadValue, over_limit("the request", body.size(), limit)};
  nlohmann::json j = body.empty() ? nlohmann::json::object() : nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) return Error{kBadJson, "the request is not valid JSON"};
  if (!j.is_object()) return Error{kBadJson, "the request must be a JSON object"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    const Field* f = nullptr;
    for (const auto& candidate : fields)
      if (it.key() == candidate.name) f = &candidate;
    if (!f) {
      std::string known;
      for (const auto& candidate : fields) known += (known.empty() ? "" : ", ") + std::string(candidate.name);
      return Error{kUnknownField, "unknown field " + echo_value(it.key()) + " (this command takes: " + (known.empty() ? "nothing" : known) + ")"};
    }
    if (!has_type(it.value(), f->type))
      return Error{kBadType, "field \"" + it.key() + "\" must be " + type_name(f->type) + ", got " + it.value().type_name()};
  }
  for (const auto& f : fields)
    if (f.required && !j.contains(f.name)) return Error{kMissingField, "field \"" + std::string(f.name) + "\" is required"};
  *out = std::move(j);
  return std::nullopt;
}

std::optional<Error> page_after(const nlohmann::json& request, std::string* after) {
  after->clear();
  if (!request.contains("after")) return std::nullopt;
  if (!request["after"].is_string()) return Error{kBadType, "field \"after\" must be a string"};
  const auto& a = request["after"].get_ref<const std::string&>();
  if (a.size() > kMaxAfterBytes)
    return Error{kBadValue, "field \"after\" is " + std::to_string(a.size()) + " bytes; the limit is " +
                                std::to_string(kMaxAfterBytes) + " (send back the \"next\" of the page before)"};
  *after = a;
  return std::nullopt;
}

bool Page::add(const std::string& key, nlohmann::json item) {
  if (cut_) return false;
  size_t size = item.dump().size() + 1;
  if (!items_.empty() && bytes_ + size > limit_) {
    cut_ = true;
    return false;
  }
  bytes_ += size;
  last_ = key;
  items_.push_back(std::move(item));
  return true;
}

void Page::put(nlohmann::json* result, const char* list_key) && {
  (*result)[list_key] = std::move(items_);
  if (cut_) (*result)["next"] = last_;
}

}  // namespace nodeha::command
