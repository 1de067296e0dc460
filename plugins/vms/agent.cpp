#include "agent.h"

#include "vm_ops.h"
#include "vm_record.h"

#include <algorithm>

namespace nodeha::vms {
namespace {

using command::Type;

constexpr int kMaxParallel = 256;

Answer failed(const Status& s) { return {{}, command::Error{vm_ops::error_code(s), s.message()}}; }
Answer failed(std::string code, std::string message) {
  return {{}, command::Error{std::move(code), std::move(message)}};
}

std::vector<std::string> read_shared_paths(const nlohmann::json& c) {
  auto paths = c.at("shared_paths").get<std::vector<std::string>>();
  for (const auto& p : paths)
    if (p.empty() || p.front() != '/') throw ConfigError("shared_paths: \"" + p + "\" is not an absolute path");
  return paths;
}

}  // namespace

AgentSide::AgentSide(const Host& host)
    : host_(host),
      shared_paths_(read_shared_paths(host.config())),
      policy_(read_domain_policy(host.config())),
      sync_every_(host.duration("sync_every")),
      stop_timeout_(host.duration("stop_timeout")),
      drain_parallel_(static_cast<int>(host.config().at("drain_parallel").get<int64_t>())),
      held_(host.state_dir() + "/held.json"),
      inventory_(host, {shared_paths_, host.config().at("supervise").get<bool>()}, busy_, held_),
      stopper_(host, busy_, held_) {
  if (sync_every_.count() <= 0) throw ConfigError("sync_every must be longer than 0");
  if (stop_timeout_.count() < 0) throw ConfigError("stop_timeout must not be negative");
  if (drain_parallel_ < 1 || drain_parallel_ > kMaxParallel)
    throw ConfigError("drain_parallel must be between 1 and " + std::to_string(kMaxParallel));
}

Status AgentSide::start() {
  inventory_.start();
  const std::string base = "agent." + host_.node_id() + ".";
  const std::pair<const char*, void (AgentSide::*)(const Message&)> ops[] = {
      {"vm.list", &AgentSide::on_list}, {"vm.define", &AgentSide::on_define},     {"vm.start", &AgentSide::on_start},
      {"vm.stop", &AgentSide::on_stop}, {"vm.undefine", &AgentSide::on_undefine}, {"drain", &AgentSide::on_drain}};
  for (const auto& [op, fn] : ops) {
    auto id = host_.subscribe(host_.subject(base + op), [this, fn = fn](const Message& m) { (this->*fn)(m); });
    if (!id) return id.status();
  }
  auto local = host_.subscribe(
      host_.subject("local.drain"), [this](const Message& m) { on_local_drain(m); }, {}, NODEHA_SUB_LOCAL_ONLY);
  if (!local) return local.status();
  auto t = host_.timer(Millis(0), sync_every_, [this] { tick(); });
  if (!t) return t.status();
  if (policy_.emulators.empty()) {
    auto e = host_.timer(Millis(0), Millis(10 * 60 * 1000), [this] { (void)host_.spawn([this] { refresh_emulators(); }); });
    if (!e) return e.status();
  }
  return Status::ok();
}

void AgentSide::tick() {
  if (syncing_) return;  // a slow libvirt or bus: never queue syncs behind one another
  syncing_ = true;
  Status s = host_.spawn([this] {
    try {
      inventory_.sync();
    } catch (const std::exception& e) {
      host_.error(std::string("inventory sync failed: ") + e.what());
    }
    (void)host_.post([this] { syncing_ = false; });
  });
  if (!s) syncing_ = false;
}

bool AgentSide::accept(const Message& m, std::initializer_list<command::Field> fields, nlohmann::json* req) {
  if (!inventory_.in_sync()) {
    host_.respond(m.reply,
                  command::fail(command::kUnavailable, "agent is syncing its inventory; try again in a moment"));
    return false;
  }
  bool carries_xml = std::any_of(fields.begin(), fields.end(), [](const auto& f) { return std::string_view(f.name) == "xml"; });
  auto e = command::decode(m.data, fields, req, carries_xml ? kMaxDomainCommandBytes : kMaxCommandBytes);
  // A uuid reaches libvirt and the vms bucket only as a VmUuid (kept in lower case).
  std::optional<VmUuid> uuid;
  if (!e && req->contains("uuid") && !(e = command::parse_id("uuid", (*req)["uuid"], &uuid))) (*req)["uuid"] = uuid->str();
  if (e) {
    host_.respond(m.reply, command::fail(*e));
    return false;
  }
  return true;
}

void AgentSide::answer(const Message& m, std::function<Answer()> work) {
  Status s = host_.spawn([this, reply = m.reply, work = std::move(work)] {
    Answer a = work();
    host_.respond(reply, a.error ? command::fail(*a.error) : command::ok(a.result));
  });
  if (!s) host_.respond(m.reply, command::fail(command::kUnavailable, s.message()));
}

void AgentSide::on_list(const Message& m) {
  nlohmann::json req;
  if (accept(m, {}, &req)) answer(m, [this] { return list(); });
}

void AgentSide::on_define(const Message& m) {
  nlohmann::json req;
  if (!accept(m, {{"xml", Type::String, true}}, &req)) return;
  std::string xml = req["xml"];
  if (xml.empty())
    return (void)host_.respond(m.reply, command::fail(command::kBadValue, "field \"xml\" must not be empty"));
  answer(m, [this, xml] { return define(xml); });
}

void AgentSide::on_start(const Message& m) {
  nlohmann::json req;
  if (!accept(m, {{"uuid", Type::String, true}}, &req)) return;
  answer(m, [this, uuid = req["uuid"].get<std::string>()] { return start_vm(uuid); });
}

void AgentSide::on_stop(const Message& m) {
  nlohmann::json req;
  if (!accept(m, {{"uuid", Type::String, true}, {"timeout_ms", Type::Integer}, {"force", Type::Bool}}, &req)) return;
  StopOrder order{req["uuid"], Millis(req.value("timeout_ms", int64_t{stop_timeout_.count()}))};
  if (order.timeout.count() < 0)
    return (void)host_.respond(m.reply, command::fail(command::kBadValue, "timeout_ms must not be negative"));
  if (req.value("force", false)) order.timeout = Millis(0);
  stopper_.stop(order, [this, reply = m.reply](StopResult r) {
    if (r.error) return (void)host_.respond(reply, command::fail(*r.error));
    host_.respond(reply, command::ok({{"uuid", r.uuid}, {"state", r.state}, {"forced", r.forced}}));
  });
}

void AgentSide::on_undefine(const Message& m) {
  nlohmann::json req;
  if (!accept(m, {{"uuid", Type::String, true}}, &req)) return;
  answer(m, [this, uuid = req["uuid"].get<std::string>()] { return undefine(uuid); });
}

Answer AgentSide::list() const {
  auto conn = vm_ops::connect(host_);
  if (!conn) return failed(conn.status());
  auto all = vm_ops::list_all(conn.value().get());
  if (!all) return failed(all.status());
  nlohmann::json vms = nlohmann::json::array();
  for (const auto& dom : all.value()) {
    auto d = read_domain(dom.get(), shared_paths_);
    if (!d && d.status().code() == NODEHA_ERR_NOT_FOUND) continue;  // undefined while we looked
    if (!d) return failed(d.status());
    vms.push_back({{"uuid", d->uuid},
                   {"name", d->name},
                   {"state", libvirt::state_name(d->state)},
                   {"reason", vm_ops::reason_name(d->state, d->reason)},
                   {"vcpus", d->vcpus},
                   {"memory_mib", d->memory_mib},
                   {"local_disk", !d->local_disks.empty()}});
  }
  std::sort(vms.begin(), vms.end(), [](const auto& a, const auto& b) { return a["name"] < b["name"]; });
  return {{{"vms", vms}}, std::nullopt};
}

std::vector<std::string> AgentSide::emulators(virConnectPtr conn) const {
  {
    std::lock_guard lock(emulators_mu_);
    if (!emulators_.empty()) return emulators_;
  }
  auto found = libvirt_emulators(conn);
  if (!found || found->empty()) return {};  // admit_domain asks again and says why
  std::lock_guard lock(emulators_mu_);
  emulators_ = found.value();
  return emulators_;
}

void AgentSide::refresh_emulators() const {
  auto conn = vm_ops::connect(host_);
  auto found = conn ? libvirt_emulators(conn.value().get()) : Result<std::vector<std::string>>(conn.status());
  if (!found || found->empty()) return;  // kept as it was; a define asks again while unknown
  std::lock_guard lock(emulators_mu_);
  emulators_ = std::move(found.value());
}

Answer AgentSide::define(const std::string& xml) const {
  auto conn = vm_ops::connect(host_);
  if (!conn) return failed(conn.status());
  DomainPolicy policy = policy_;
  if (policy.emulators.empty()) policy.emulators = emulators(conn.value().get());
  if (auto refused = admit_domain(conn.value().get(), xml, policy)) {
    host_.warn("vm.define: " + refused->message);
    return {{}, refused};
  }
  auto uuid = vm_ops::define(conn.value().get(), xml);
  if (!uuid) return failed(uuid.status());
  host_.info("defined VM " + uuid.value());
  return {{{"uuid", uuid.value()}}, std::nullopt};
}

Answer AgentSide::start_vm(const std::string& uuid) {
  auto busy = busy_.hold(uuid);
  std::string node = host_.node_id();
  auto drained = node_drained(host_);
  if (!drained)
    return failed(command::kUnavailable,
                  "cannot read " + node + "'s record to check that it is not drained: " + drained.status().message());
  if (drained.value())
    return failed("node_drained",
                  node + " is drained and starts no VM; enable it first (`nodeha node enable " + node + "`)");
  auto conn = vm_ops::connect(host_);
  if (!conn) return failed(conn.status());
  auto dom = vm_ops::lookup(conn.value().get(), uuid);
  if (!dom) return failed(dom.status());
  auto f = vm_ops::facts(dom.value().get());
  if (!f) return failed(f.status());
  if (!vm_ops::active(f->state)) {
    if (Status s = vm_ops::start(dom.value().get()); !s) return failed(s);
    host_.info("started VM " + uuid + " (" + f->name + ")");
    f = vm_ops::facts(dom.value().get());
    if (!f) return failed(f.status());
  }
  // Asked to run, so supervision keeps it running from now on (when it is recorded here).
  auto r = vm_record::modify(host_, uuid, [&](nlohmann::json& record) {
    if (text(record, "node") != node || text(record, "desired") == "running") return false;
    record["desired"] = "running";
    record["updated"] = vm_record::unix_ms();
    return true;
  });
  if (!r) host_.warn("VM " + uuid + " runs, but its record could not say so: " + r.status().message());
  return {{{"uuid", uuid}, {"state", libvirt::state_name(f->state)}}, std::nullopt};
}

Answer AgentSide::undefine(const std::string& uuid) {
  auto busy = busy_.hold(uuid);
  auto conn = vm_ops::connect(host_);
  if (!conn) return failed(conn.status());
  auto dom = vm_ops::lookup(conn.value().get(), uuid);
  if (!dom && dom.status().code() != NODEHA_ERR_NOT_FOUND) return failed(dom.status());
  if (dom) {
    auto f = vm_ops::facts(dom.value().get());
    if (!f) return failed(f.status());
    if (vm_ops::active(f->state))
      return failed(command::kBadValue, "VM " + uuid + " (" + f->name + ") is " + libvirt::state_name(f->state) +
                                            "; stop it first (vm.stop)");
    if (Status s = vm_ops::undefine(dom.value().get()); !s) return failed(s);
    host_.info("undefined VM " + uuid + " (" + f->name + ")");
  }
  // The record goes with the definition, unless it names another node: the VM lives there.
  if (Status s = vm_record::remove_own(host_, uuid); !s)
    host_.warn("VM " + uuid + " is undefined, but its record stays (it will show as missing): " + s.message());
  return {{{"uuid", uuid}}, std::nullopt};
}

}  // namespace nodeha::vms
