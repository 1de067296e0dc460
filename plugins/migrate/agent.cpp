#include "agent.h"

#include "command.h"
#include "journal.h"
#include "libvirt.h"
#include "local_migrate.h"
#include "record_desk.h"
#include "uri.h"
#include "vm_record.h"

namespace nodeha::migrate {

namespace {

constexpr Millis kReportRetry{2000};  // journal entries that met a bus down are tried again this often

const char* const kResults[] = {"succeeded", "failed", "timeout", "stalled", "aborted", "refused"};

std::string result_label(const MigrationOutcome& o) {
  if (!o.error) return "succeeded";
  const auto& c = o.error->code;
  if (c == kMigrationTimeout) return "timeout";
  if (c == kMigrationStalled) return "stalled";
  if (c == kMigrationAborted) return "aborted";
  if (c == kMigrationFailed) return "failed";
  return "refused";  // never started: unknown VM, local disks, not running, libvirt down
}

std::string error_reply(const MigrationError& e) { return command::fail(e.code, e.message); }

}  // namespace

nlohmann::json copied_disks(const MigrationOutcome& out) {
  nlohmann::json disks = nlohmann::json::array();
  for (const auto& d : out.disks)
    disks.push_back({{"target", d.target}, {"path", d.path}, {"format", d.format}, {"capacity", d.capacity}});
  return disks;
}

namespace {

// What a finished migration took and moved, for the reply of vm.migrate and the `migrated` event.
nlohmann::json finished_fields(const MigrationOutcome& out) {
  const JobSample& s = out.last;
  return {{"duration_ms", out.duration_ms},         {"disks", copied_disks(out)},
          {"images", out.images},                   {"data_total", s.data_total},
          {"data_processed", s.data_processed},     {"memory_total", s.memory_total},
          {"memory_processed", s.memory_processed}, {"disk_total", s.disk_total},
          {"disk_processed", s.disk_processed}};
}

}  // namespace

AgentConfig read_agent_config(const nlohmann::json& c) {
  AgentConfig cfg;
  cfg.peer_uri = c.at("peer_uri").get<std::string>();
  cfg.migrate_uri = c.at("migrate_uri").get<std::string>();
  for (auto it = c.at("addresses").begin(); it != c.at("addresses").end(); ++it) {
    if (!it.value().is_string() || it.value().get<std::string>().empty())
      throw ConfigError("addresses." + it.key() + " must be a non-empty string (this node's address on that network)");
    cfg.addresses[it.key()] = it.value().get<std::string>();
  }
  cfg.timeout = Millis(c.at("timeout").get<int64_t>());
  cfg.stall_timeout = Millis(c.at("stall_timeout").get<int64_t>());
  if (cfg.timeout.count() <= 0) throw ConfigError("timeout must be longer than 0");
  int64_t bandwidth = c.at("bandwidth_mib").get<int64_t>();
  if (bandwidth < 0) throw ConfigError("bandwidth_mib must be 0 (unlimited) or more");
  cfg.bandwidth_mib = static_cast<uint64_t>(bandwidth);
  cfg.local_peer_uri = c.at("local_peer_uri").get<std::string>();
  cfg.local_migrate_uri = c.at("local_migrate_uri").get<std::string>();
  cfg.shared_paths = c.at("shared_paths").get<std::vector<std::string>>();
  for (const auto& p : cfg.shared_paths)
    if (p.empty() || p.front() != '/') throw ConfigError("shared_paths: \"" + p + "\" is not an absolute path");
  int64_t parallel = c.at("local_parallel").get<int64_t>();
  if (parallel < 1 || parallel > 16) throw ConfigError("local_parallel must be between 1 and 16");
  cfg.local_parallel = static_cast<int>(parallel);
  for (const auto* key : {&cfg.peer_uri, &cfg.migrate_uri, &cfg.local_peer_uri, &cfg.local_migrate_uri})
    if (key->find("://") == std::string::npos) throw ConfigError("\"" + *key + "\" is not a URI (scheme://...)");
  return cfg;
}

AgentSide::AgentSide(const Host& host) : host_(host), config_(read_agent_config(host.config())), answers_(host) {
  local_ = std::make_unique<LocalMigrate>(*this);
}

AgentSide::~AgentSide() = default;

Status AgentSide::start() {
  for (const char* r : kResults)
    results_[r] = host_.counter("nodeha_migrate_migrations_total", "live migrations started from this node, by result",
                                {{"result", r}});
  duration_ = host_.histogram("nodeha_migrate_duration_seconds", "time a successful live migration took",
                              {0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600});
  running_ = host_.gauge("nodeha_migrate_running", "live migrations running from this node now");
  bytes_ = host_.counter("nodeha_migrate_bytes_total",
                         "bytes successful live migrations from this node moved (memory and copied disks)");
  const std::string base = "agent." + host_.node_id() + ".";
  struct Sub {
    std::string subject;
    void (AgentSide::*fn)(const Message&);
    uint32_t flags;
  };
  const Sub subs[] = {{base + "migrate.target", &AgentSide::on_target, 0},
                      {base + "vm.migrate", &AgentSide::on_migrate, 0},
                      {base + "vm.abort", &AgentSide::on_abort, 0}};
  for (const auto& s : subs) {
    auto id = host_.subscribe(host_.subject(s.subject), [this, fn = s.fn](const Message& m) { (this->*fn)(m); }, {}, s.flags);
    if (!id) return id.status();
  }
  auto local = host_.subscribe(host_.subject("local.migrate"), [this](const Message& m) { local_->on_request(m); }, {},
                               NODEHA_SUB_LOCAL_ONLY);
  if (!local) return local.status();
  // Entries journalled while the bus was down (this run or a previous one) go out once it is back.
  auto t = host_.timer(Millis(0), kReportRetry, [this] {
    if (report_pending_) report_journal();
  });
  return t ? Status::ok() : t.status();
}

void AgentSide::stop() {
  stopping_ = true;
  active_.abort_all("stopping");
}

void AgentSide::report_journal() {
  report_pending_ = true;
  if (reporting_.exchange(true)) return;  // one report at a time; the timer tries again
  host_.spawn([this] {
    auto r = journal::report(host_);
    if (r) {
      report_pending_ = false;
      if (r.value() > 0) host_.info("reported " + std::to_string(r.value()) + " local task(s) into the tasks bucket");
    } else {
      host_.debug("journal not reported yet: " + r.status().message());
    }
    reporting_ = false;
  });
}

void AgentSide::publish_event(const std::string& uuid, nlohmann::json event) const {
  desk::publish(host_, uuid, std::move(event));  // relayed by the controller on evt.vm.<uuid>
}

void AgentSide::on_target(const Message& m) {
  nlohmann::json req;
  if (auto e = command::decode(m.data, {{"network", command::Type::String, true}}, &req)) {
    host_.respond(m.reply, command::fail(*e));
    return;
  }
  std::string network = req["network"];
  auto it = config_.addresses.find(network);
  if (it == config_.addresses.end()) {
    host_.respond(m.reply, command::fail("unknown_network", "node " + host_.node_id() + " has no address on network " +
                                                                echo_value(network) + " (see the migrate plugin's addresses)"));
    return;
  }
  host_.respond(m.reply, command::ok({{"libvirt_uri", expand_address(config_.peer_uri, "address", it->second)},
                                      {"migrate_uri", expand_address(config_.migrate_uri, "address", it->second)},
                                      {"address", it->second}}));
}

void AgentSide::on_migrate(const Message& m) {
  using command::Type;
  nlohmann::json req;
  if (auto e = command::decode(m.data,
                               {{"uuid", Type::String, true},
                                {"task", Type::String},
                                {"dest_node", Type::String, true},
                                {"dest_uri", Type::String, true},
                                {"migrate_uri", Type::String, true},
                                {"include_local_disk", Type::Bool, true},
                                {"timeout_ms", Type::Integer},
                                {"stall_ms", Type::Integer}},
                               &req)) {
    host_.respond(m.reply, command::fail(*e));
    return;
  }
  std::optional<VmUuid> uuid;
  std::optional<NodeId> dest;
  std::optional<TaskId> task;
  auto e = command::parse_id("uuid", req["uuid"], &uuid);
  if (!e) e = command::parse_id("dest_node", req["dest_node"], &dest);
  if (!e && req.contains("task")) e = command::parse_id("task", req["task"], &task);
  if (e) {
    host_.respond(m.reply, command::fail(*e));
    return;
  }
  MigrationJob job;
  job.spec.uuid = uuid->str();
  job.task = task ? task->str() : "";
  job.dest_node = dest->str();
  job.spec.dest_uri = req["dest_uri"];
  job.spec.migrate_uri = req["migrate_uri"];
  job.spec.include_local_disk = req["include_local_disk"];
  job.spec.timeout_ms = req.value("timeout_ms", int64_t{config_.timeout.count()});
  job.spec.stall_ms = req.value("stall_ms", int64_t{config_.stall_timeout.count()});
  job.spec.bandwidth_mib = config_.bandwidth_mib;
  job.spec.shared_paths = config_.shared_paths;
  std::optional<command::Error> bad;
  if (job.dest_node == host_.node_id()) bad = command::Error{command::kBadValue, "dest_node is this node"};
  else if (job.spec.dest_uri.find("://") == std::string::npos)
    bad = command::Error{command::kBadValue, "dest_uri " + echo_value(job.spec.dest_uri) + " is not a libvirt URI"};
  else if (job.spec.migrate_uri.find("://") == std::string::npos)
    bad = command::Error{command::kBadValue, "migrate_uri " + echo_value(job.spec.migrate_uri) + " is not a URI (tcp://address[:port])"};
  else if (job.spec.timeout_ms <= 0) bad = command::Error{command::kBadValue, "timeout_ms must be more than 0"};
  else if (job.spec.stall_ms < 0) bad = command::Error{command::kBadValue, "stall_ms must be 0 (no limit) or more"};
  else if (stopping_) bad = command::Error{command::kUnavailable, "the agent is stopping"};
  if (bad) {
    host_.respond(m.reply, command::fail(*bad));
    return;
  }
  const std::string already = "VM " + job.spec.uuid + " is already migrating";
  if (!job.task.empty()) {
    // The controller asks again while it waits (answers.h): join the migration it asked for.
    auto ask = answers_.ask(job.spec.uuid, job.task, m.reply);
    if (ask == Answers::Ask::Joined || ask == Answers::Ask::Answered) return;
    if (ask == Answers::Ask::Busy) return (void)host_.respond(m.reply, command::fail(command::kBadValue, already));
  }
  // Every answer goes to whoever asked: the asks of the task, or this one request.
  auto answer = [this, task = job.task, uuid = job.spec.uuid, reply = m.reply](const std::string& body, bool ok) {
    if (task.empty()) (void)host_.respond(reply, body);
    else answers_.finish(uuid, body, ok);
  };
  auto active = active_.begin(job.spec.uuid);
  if (!active) return answer(command::fail(command::kBadValue, already), false);
  auto spawned = host_.spawn([this, job, active, answer] {
    auto report = migrate_one(job, *active);
    active_.end(job.spec.uuid);
    running_.set(static_cast<double>(active_.size()));
    if (report.outcome.error) return answer(error_reply(*report.outcome.error), false);
    nlohmann::json result = finished_fields(report.outcome);
    result.update({{"uuid", job.spec.uuid}, {"record", report.record}});
    answer(command::ok(result), true);
  });
  if (!spawned) {
    active_.end(job.spec.uuid);
    answer(command::fail(command::kUnavailable, spawned.message()), false);
  }
}

MigrationReport AgentSide::migrate_one(const MigrationJob& job, ActiveMigration& active, const ProgressFn& extra) {
  const std::string& uuid = job.spec.uuid;
  const std::string node = host_.node_id();
  running_.set(static_cast<double>(active_.size()));
  RemainingTime remaining;  // the monitor thread's alone
  auto on_progress = [&](const JobSample& reading, int64_t elapsed_ms) {
    JobSample s = reading;
    s.time_remaining_ms = remaining.observe(elapsed_ms, reading);
    nlohmann::json event = {{"event", "migration_progress"}, {"task", job.task}, {"node", node},
                            {"dest_node", job.dest_node},    {"elapsed_ms", elapsed_ms}};
    event.update(to_json(s));
    publish_event(uuid, std::move(event));
    if (extra) extra(s, elapsed_ms);
  };
  host_.debug("migrating VM " + uuid + " to " + (job.dest_node.empty() ? job.spec.dest_uri : job.dest_node) + " (" +
             job.spec.dest_uri + ", stream " + job.spec.migrate_uri + ")");
  MigrationReport report;
  report.outcome = run_migration(host_, job.spec, active, on_progress);
  const auto& out = report.outcome;
  results_.at(result_label(out)).inc();
  if (out.error) {
    // Refusals (not here, not running, local disks) are the caller's to report; failures are ours.
    bool refused = result_label(out) == "refused";
    host_.log(refused ? NODEHA_LOG_INFO : NODEHA_LOG_WARN,
              "migration of VM " + uuid + (refused ? " refused (" : " failed (") + out.error->code + "): " + out.error->message);
    if (!refused)
      publish_event(uuid, {{"event", "migration_failed"}, {"task", job.task}, {"node", node}, {"dest_node", job.dest_node},
                           {"code", out.error->code}, {"error", out.error->message}, {"duration_ms", out.duration_ms}});
    return report;
  }
  duration_.observe(static_cast<double>(out.duration_ms) / 1000.0);
  bytes_.add(static_cast<double>(out.last.data_processed));
  host_.info("migrated VM " + uuid + " in " + std::to_string(out.duration_ms) + " ms");
  nlohmann::json migrated = finished_fields(out);
  migrated.update({{"event", "migrated"}, {"task", job.task}, {"node", node}, {"dest_node", job.dest_node}});
  publish_event(uuid, std::move(migrated));
  // The guest runs on the destination now: say so in its record. Whoever moves it first wins
  // (the destination agent's claim, or this); a bus that is down leaves it to the claim.
  if (job.dest_node.empty()) {
    report.record = {{"moved", false}, {"error", "destination node unknown: left for its agent's claim"}};
  } else if (auto moved = vm_record::move(host_, uuid, job.dest_node); moved) {
    report.record = {{"moved", true}, {"node", moved.value().value("node", "")}, {"generation", moved.value().value("generation", 0)}};
  } else {
    host_.warn("VM " + uuid + " migrated, its record not moved: " + moved.status().message());
    report.record = {{"moved", false}, {"error", moved.status().message()}};
  }
  return report;
}

void AgentSide::on_abort(const Message& m) {
  nlohmann::json req;
  std::optional<VmUuid> id;
  auto e = command::decode(m.data, {{"uuid", command::Type::String, true}}, &req);
  if (!e) e = command::parse_id("uuid", req["uuid"], &id);
  if (e) {
    host_.respond(m.reply, command::fail(*e));
    return;
  }
  std::string uuid = id->str();
  auto spawned = host_.spawn([this, uuid, reply = m.reply] {
    auto raw = host_.libvirt_connect();
    if (!raw) {
      host_.respond(reply, command::fail(command::kUnavailable, raw.status().message()));
      return;
    }
    libvirt::Connection conn(static_cast<virConnectPtr>(raw.value()));
    libvirt::Domain dom(virDomainLookupByUUIDString(conn.get(), uuid.c_str()));
    if (!dom) {
      host_.respond(reply, command::fail(kUnknownVm, "VM " + uuid + " is not on this node"));
      return;
    }
    // A migration of ours is marked first, so that its reply says it was aborted on request and
    // its monitor repeats the abort should libvirt not have started the job yet.
    auto active = active_.find(uuid);
    bool marked = active && active->request_abort("aborted");
    bool aborted = virDomainAbortJob(dom.get()) == 0;
    if (!aborted && !marked) host_.info("vm.abort " + uuid + ": " + libvirt::last_error());
    host_.respond(reply, command::ok({{"uuid", uuid}, {"aborted", aborted || marked}}));
  });
  if (!spawned) host_.respond(m.reply, command::fail(command::kUnavailable, spawned.message()));
}

}  // namespace nodeha::migrate
