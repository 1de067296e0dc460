#include "task_read.h"

#include "task_steps.h"

namespace nodeha::test {

nlohmann::json read_task(host::Bus& bus, const std::string& id) {
  auto t = task_steps::load(id, [&](const std::string& bucket, const std::string& key) { return bus.kv_get(bucket, key); });
  return t ? t.value() : nlohmann::json::object();
}

}  // namespace nodeha::test
