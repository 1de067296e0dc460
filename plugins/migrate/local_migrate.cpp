#include "local_migrate.h"

#include "agent.h"
#include "command.h"
#include "journal.h"
#include "libvirt.h"
#include "route.h"
#include "task_record.h"
#include "uri.h"
#include "vm_ops.h"
#include "vm_record.h"

#include <mutex>
#include <thread>

namespace nodeha::migrate {

namespace {

nlohmann::json plan_json(const std::vector<PlanEntry>& plan) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : plan)
    out.push_back({{"vm", e.vm}, {"name", e.name}, {"dest", e.dest}, {"action", e.action}, {"reason", e.reason}});
  return out;
}

}  // namespace

void LocalMigrate::on_request(const Message& m) {
  using command::Type;
  const Host& host = agent_.host();
  nlohmann::json req;
  if (auto e = command::decode(m.data,
                               {{"interface", Type::String, true},
                                {"dest", Type::String, true},
                                {"all", Type::Bool},
                                {"vms", Type::Array},
                                {"confirm", Type::Bool},
                                {"include_local_disk", Type::Bool}},
                               &req)) {
    host.respond(m.reply, command::fail(*e));
    return;
  }
  // Names as well as uuids are taken here (the node's own libvirt resolves them): bounded, not parsed.
  for (const auto& v : req.value("vms", nlohmann::json::array()))
    if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > kMaxNameLength) {
      host.respond(m.reply, command::fail(command::kBadType, "field \"vms\" must be an array of VM uuids or names (1-" +
                                                                  std::to_string(kMaxNameLength) + " bytes each)"));
      return;
    }
  for (const char* f : {"interface", "dest"})
    if (req[f].get<std::string>().size() > kMaxNameLength) {
      host.respond(m.reply, command::fail(command::kBadValue, "field \"" + std::string(f) + "\" is over " +
                                                                   std::to_string(kMaxNameLength) + " bytes"));
      return;
    }
  if (req["interface"].get<std::string>().empty()) {
    host.respond(m.reply, command::fail(command::kBadValue, "field \"interface\" must name a network interface"));
    return;
  }
  auto spawned = host.spawn([this, req, reply = m.reply] { handle(req, reply); });
  if (!spawned) host.respond(m.reply, command::fail(command::kUnavailable, spawned.message()));
}

Result<std::vector<LocalDomain>> LocalMigrate::list_domains() const {
  auto raw = agent_.host().libvirt_connect();
  if (!raw) return raw.status();
  libvirt::Connection conn(static_cast<virConnectPtr>(raw.value()));
  virDomainPtr* doms = nullptr;
  int n = virConnectListAllDomains(conn.get(), &doms, 0);
  if (n < 0) return Status(NODEHA_ERR_UNAVAILABLE, "list domains: " + libvirt::last_error());
  std::vector<LocalDomain> out;
  for (int i = 0; i < n; ++i) {
    libvirt::Domain d(doms[i]);
    LocalDomain ld;
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    virDomainGetUUIDString(d.get(), uuid);
    ld.uuid = uuid;
    const char* name = virDomainGetName(d.get());
    ld.name = name ? name : "";
    int state = 0, reason = 0;
    if (virDomainGetState(d.get(), &state, &reason, 0) < 0) continue;  // vanished while we looked
    ld.state = libvirt::state_name(state);
    if (char* xml = virDomainGetXMLDesc(d.get(), 0)) {
      ld.local_disks = vm_ops::local_disk_paths(vm_ops::parse_disks(xml), agent_.config().shared_paths);
      free(xml);
    }
    ld.migrating = agent_.active().contains(ld.uuid);
    out.push_back(std::move(ld));
  }
  free(doms);
  return out;
}

std::string LocalMigrate::node_at(const std::string& address) const {
  const Host& host = agent_.host();
  auto nodes = host.kv_list("nodes");
  if (!nodes) return {};
  std::string found;
  for (const auto& e : nodes.value()) {
    if (e.key == host.node_id()) continue;
    auto record = nlohmann::json::parse(e.value, nullptr, false);
    if (!record.is_object() || !record.contains("addresses") || !record["addresses"].is_object()) continue;
    for (const auto& [network, a] : record["addresses"].items()) {
      if (a != address) continue;
      if (!found.empty() && found != e.key) return {};  // ambiguous: leave it to the claim
      found = e.key;
    }
  }
  return found;
}

void LocalMigrate::handle(const nlohmann::json& req, const std::string& reply) {
  const Host& host = agent_.host();
  LocalRequest request;
  request.all = req.value("all", false);
  request.vms = req.value("vms", std::vector<std::string>{});
  request.include_local_disk = req.value("include_local_disk", false);
  request.dest = req["dest"];
  std::string interface = req["interface"];
  if (auto why = route_mismatch(interface, request.dest)) {
    host.respond(reply, command::fail(command::kBadValue, *why));
    return;
  }
  auto domains = list_domains();
  if (!domains) {
    host.respond(reply, command::fail(command::kUnavailable, domains.status().message()));
    return;
  }
  std::vector<PlanEntry> plan;
  if (auto e = build_local_plan(domains.value(), request, &plan)) {
    host.respond(reply, command::fail(e->code, e->message));
    return;
  }
  if (!req.value("confirm", false)) {
    host.respond(reply, command::ok({{"plan", plan_json(plan)}, {"confirmed", false}}));
    return;
  }
  if (agent_.stopping()) {
    host.respond(reply, command::fail(command::kUnavailable, "the agent is stopping"));
    return;
  }
  const std::string node = host.node_id();
  int64_t now = vm_record::unix_ms();
  nlohmann::json task = task_record::make(task_record::new_id(), "local-migrate", node, req, "local:" + node, now);
  task["state"] = "running";
  task["started"] = now;
  std::string dest_node = node_at(request.dest);  // empty with the bus down: the destination claims
  nlohmann::json results = execute(plan, request, dest_node, task);
  now = vm_record::unix_ms();
  task["finished"] = now;
  task["updated"] = now;
  task["state"] = task_record::final_state(task);
  std::string journalled = "appended";
  if (Status s = journal::append(host.state_dir(), task); s) {
    agent_.report_journal();
  } else {
    journalled = s.message();
    host.error("local migrate task " + task["id"].get<std::string>() + " not journalled: " + s.message());
  }
  host.info("local migrate task " + task["id"].get<std::string>() + " " + task["state"].get<std::string>());
  host.respond(reply, command::ok({{"task", task["id"]},
                                   {"state", task["state"]},
                                   {"confirmed", true},
                                   {"dest_node", dest_node},
                                   {"plan", plan_json(plan)},
                                   {"results", results},
                                   {"steps", task["steps"]},
                                   {"journal", journalled}}));
}

nlohmann::json LocalMigrate::execute(const std::vector<PlanEntry>& plan, const LocalRequest& request,
                                     const std::string& dest_node, nlohmann::json& task) {
  const AgentConfig& cfg = agent_.config();
  nlohmann::json target = dest_node.empty() ? nlohmann::json(request.dest) : nlohmann::json(dest_node);
  nlohmann::json results = nlohmann::json::array();
  std::vector<size_t> todo;
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto& e = plan[i];
    task["steps"].push_back(task_record::make_step(e.vm, e.name, target, e.action == "skip" ? e.reason : ""));
    results.push_back({{"vm", e.vm}, {"name", e.name}, {"dest", e.dest}, {"result", e.action == "skip" ? "skipped" : "pending"},
                       {"reason", e.reason}});
    if (e.action == "migrate") todo.push_back(i);
  }
  std::mutex mu;  // guards task, results and next
  size_t next = 0;
  auto lane = [&] {
    for (;;) {
      size_t i;
      {
        std::lock_guard lock(mu);
        if (next >= todo.size()) return;
        i = todo[next++];
      }
      const PlanEntry& e = plan[i];
      auto set_step = [&](const char* state, const std::string& error) {
        std::lock_guard lock(mu);
        auto& step = task["steps"][i];
        step["state"] = state;
        step["error"] = error;
        if (std::string(state) == "running") step["started"] = vm_record::unix_ms();
        else step["finished"] = vm_record::unix_ms();
        results[i]["result"] = std::string(state) == "succeeded" ? "migrated" : state;
        if (!error.empty()) results[i]["error"] = error;
      };
      if (agent_.stopping()) {
        set_step("cancelled", "the agent stopped");
        continue;
      }
      auto active = agent_.active().begin(e.vm);
      if (!active) {
        set_step("failed", "already migrating");
        continue;
      }
      set_step("running", "");
      MigrationJob job;
      job.spec.uuid = e.vm;
      job.spec.dest_uri = expand_address(cfg.local_peer_uri, "dest", request.dest);
      job.spec.migrate_uri = expand_address(cfg.local_migrate_uri, "dest", request.dest);
      job.spec.include_local_disk = request.include_local_disk;
      job.spec.timeout_ms = cfg.timeout.count();
      job.spec.stall_ms = cfg.stall_timeout.count();
      job.spec.bandwidth_mib = cfg.bandwidth_mib;
      job.spec.shared_paths = cfg.shared_paths;
      job.task = task["id"];
      job.dest_node = dest_node;
      auto report = agent_.migrate_one(job, *active, [&](const JobSample& s, int64_t) {
        std::lock_guard lock(mu);
        task["steps"][i]["progress"] = to_json(s);
      });
      agent_.active().end(e.vm);
      const auto& out = report.outcome;
      set_step(out.error ? "failed" : "succeeded", out.error ? out.error->code + ": " + out.error->message : "");
      std::lock_guard lock(mu);
      results[i]["duration_ms"] = out.duration_ms;
      results[i]["data_total"] = out.last.data_total;
      results[i]["memory_total"] = out.last.memory_total;
      results[i]["disk_total"] = out.last.disk_total;
      results[i]["record"] = report.record;
      if (!out.disks.empty()) {
        results[i]["disks"] = copied_disks(out);
        results[i]["images"] = out.images;
      }
      if (!out.error) task["steps"][i]["progress"] = to_json(out.last);  // completed_sample: nothing remains
    }
  };
  // This worker is one lane; the others are threads of their own, so that the host's worker pool
  // is not drained by one request (and a pool of one worker still works).
  size_t lanes = std::min<size_t>(static_cast<size_t>(cfg.local_parallel), todo.size());
  std::vector<std::thread> others;
  for (size_t k = 1; k < lanes; ++k) others.emplace_back(lane);
  lane();
  for (auto& t : others) t.join();
  return results;
}

}  // namespace nodeha::migrate
