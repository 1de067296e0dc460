// The two drains of the agent: `agent.<node>.drain` (the controller's, over NATS) and
// `local.drain` (the node's administrator, over the local socket or NATS). Both stop every domain
// on the node, `drain_parallel` at a time, `desired: stopped` recorded first. The local one also
// works with the bus down: a record it cannot write does not fail the stop (the VM is held
// stopped instead, guards.h), and what it did is appended to the journal, reported into the
// tasks bucket once the agent is in sync again (inventory.cpp).
#include "agent.h"

#include "journal.h"
#include "task_record.h"
#include "vm_ops.h"
#include "vm_record.h"

namespace nodeha::vms {
namespace {

using command::Type;

struct Listed {
  std::string uuid;
  std::string name;
  bool active = false;
};

// Every domain on the node. Blocking.
Result<std::vector<Listed>> list_domains(const Host& host) {
  auto conn = vm_ops::connect(host);
  if (!conn) return conn.status();
  auto all = vm_ops::list_all(conn.value().get());
  if (!all) return all.status();
  std::vector<Listed> out;
  for (const auto& dom : all.value()) {
    auto f = vm_ops::facts(dom.get());
    if (f) out.push_back({f->uuid, f->name, vm_ops::active(f->state)});
  }
  return out;
}

std::vector<StopOrder> orders_for(const std::vector<Listed>& domains, Millis timeout, bool stop_without_record) {
  std::vector<StopOrder> out;
  for (const auto& d : domains) out.push_back({d.uuid, timeout, stop_without_record});
  return out;
}

// Reads the optional timeout_ms; replies the refusal itself.
std::optional<Millis> timeout_of(const Host& host, const Message& m, const nlohmann::json& req, Millis fallback) {
  Millis t(req.value("timeout_ms", int64_t{fallback.count()}));
  if (t.count() >= 0) return t;
  host.respond(m.reply, command::fail(command::kBadValue, "timeout_ms must not be negative"));
  return std::nullopt;
}

}  // namespace

void AgentSide::on_drain(const Message& m) {
  nlohmann::json req;
  if (!accept(m, {{"timeout_ms", Type::Integer}, {"parallel", Type::Integer}}, &req)) return;
  auto timeout = timeout_of(host_, m, req, stop_timeout_);
  if (!timeout) return;
  int64_t parallel = req.value("parallel", int64_t{drain_parallel_});
  if (parallel < 1 || parallel > 256)
    return (void)host_.respond(m.reply, command::fail(command::kBadValue, "parallel must be between 1 and 256"));
  if (Status s = host_.spawn([this, m, t = *timeout, parallel] { drain_domains(m, t, static_cast<int>(parallel)); });
      !s)
    host_.respond(m.reply, command::fail(command::kUnavailable, s.message()));
}

void AgentSide::drain_domains(const Message& m, Millis timeout, int parallel) {
  auto domains = list_domains(host_);
  if (!domains)
    return (void)host_.respond(m.reply,
                               command::fail(vm_ops::error_code(domains.status()), domains.status().message()));
  host_.info("draining " + std::to_string(domains->size()) + " domain(s), " + std::to_string(parallel) + " at a time");
  auto orders = orders_for(domains.value(), timeout, false);
  (void)host_.post([this, reply = m.reply, orders = std::move(orders), parallel]() mutable {
    stopper_.stop_all(std::move(orders), parallel, [this, reply](std::vector<StopResult> results) {
      nlohmann::json vms = nlohmann::json::array();
      for (const auto& r : results)
        vms.push_back({{"uuid", r.uuid},
                       {"name", r.name},
                       {"result", r.error ? "failed" : "stopped"},
                       {"forced", r.forced},
                       {"error", r.error ? r.error->message : ""}});
      host_.respond(reply, command::ok({{"vms", vms}}));
    });
  });
}

void AgentSide::on_local_drain(const Message& m) {
  // Served in and out of sync: stopping everything is safe whatever the bucket says.
  nlohmann::json req;
  if (auto e = command::decode(m.data, {{"confirm", Type::Bool}, {"timeout_ms", Type::Integer}}, &req))
    return (void)host_.respond(m.reply, command::fail(*e));
  auto timeout = timeout_of(host_, m, req, stop_timeout_);
  if (!timeout) return;
  bool confirm = req.value("confirm", false);
  if (Status s = host_.spawn([this, m, req, confirm, t = *timeout] { local_drain(m, req, confirm, t); }); !s)
    host_.respond(m.reply, command::fail(command::kUnavailable, s.message()));
}

void AgentSide::local_drain(const Message& m, const nlohmann::json& req, bool confirm, Millis timeout) {
  auto domains = list_domains(host_);
  if (!domains)
    return (void)host_.respond(m.reply,
                               command::fail(vm_ops::error_code(domains.status()), domains.status().message()));
  if (!confirm) {
    nlohmann::json plan = nlohmann::json::array();
    for (const auto& d : domains.value())
      plan.push_back({{"vm", d.uuid},
                      {"name", d.name},
                      {"target", nullptr},
                      {"action", "stop"},
                      {"reason", d.active ? "" : "not running; stays stopped"}});
    return (void)host_.respond(m.reply, command::ok({{"plan", plan}}));
  }
  std::string node = host_.node_id();
  host_.warn("local drain: stopping " + std::to_string(domains->size()) + " domain(s)");
  auto task = task_record::make(task_record::new_id(), "local-drain", node, req, node, vm_record::unix_ms());
  task["state"] = "running";
  task["started"] = task["created"];
  auto orders = orders_for(domains.value(), timeout, true);
  (void)host_.post([this, reply = m.reply, orders = std::move(orders), task]() mutable {
    stopper_.stop_all(std::move(orders), drain_parallel_, [this, reply, task](std::vector<StopResult> results) mutable {
      for (const auto& r : results) {
        auto step = task_record::make_step(r.uuid, r.name, nullptr);
        step["state"] = r.error ? "failed" : "succeeded";
        step["error"] = r.error ? r.error->message : "";
        step["started"] = r.started;
        step["finished"] = r.finished;
        task["steps"].push_back(std::move(step));
      }
      if (Status s = host_.spawn([this, reply, task] { journal_drain(reply, task); }); !s)
        host_.respond(reply, command::fail(command::kUnavailable, s.message()));
    });
  });
}

void AgentSide::journal_drain(const std::string& reply, nlohmann::json task) {
  task["state"] = task_record::final_state(task);
  task["finished"] = task["updated"] = vm_record::unix_ms();
  if (Status s = journal::append(host_.state_dir(), task); !s) {
    host_.error("local drain " + task["id"].get<std::string>() + " done but not journalled: " + s.message());
    return (void)host_.respond(reply,
                               command::fail(command::kInternal, "the drain ran (" + task["state"].get<std::string>() +
                                                                     ") but could not be written to the journal, so "
                                                                     "the controller will not hear of it: " +
                                                                     s.message()));
  }
  host_.info("local drain " + task["id"].get<std::string>() + ": " + task["state"].get<std::string>());
  host_.respond(reply, command::ok({{"task", task["id"]}, {"state", task["state"]}, {"steps", task["steps"]}}));
}

}  // namespace nodeha::vms
