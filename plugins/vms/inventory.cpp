#include "inventory.h"

#include "command.h"
#include "journal.h"
#include "record_desk.h"
#include "vm_record.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace nodeha::vms {
namespace {

nlohmann::json parse_record(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  return j.is_object() ? j : nlohmann::json();
}

}  // namespace

Result<bool> node_drained(const Host& host) {
  auto e = host.kv_get("nodes", host.node_id());
  if (!e) {
    if (e.status().code() == NODEHA_ERR_NOT_FOUND) return false;
    return e.status();
  }
  return text(parse_record(e->value), "management") == "drained";
}

Result<Domain> read_domain(virDomainPtr dom, const std::vector<std::string>& shared_paths) {
  auto f = vm_ops::facts(dom);
  if (!f) return f.status();
  auto xml = vm_ops::definition(dom);
  if (!xml) return xml.status();
  Domain d;
  d.uuid = f->uuid;
  d.name = f->name;
  d.state = f->state;
  d.reason = f->reason;
  d.vcpus = f->vcpus;
  d.memory_mib = f->memory_mib;
  d.persistent = f->persistent;
  int autostart = 0;
  d.autostart = virDomainGetAutostart(dom, &autostart) == 0 && autostart != 0;
  d.local_disks = vm_ops::local_disk_paths(vm_ops::parse_disks(xml.value()), shared_paths);
  d.xml = std::move(xml.value());
  return d;
}

Inventory::Inventory(const Host& host, Settings settings, Busy& busy, Held& held)
    : host_(host), settings_(std::move(settings)), busy_(busy), held_(held) {}

void Inventory::start() {
  const char* help = "inventory syncs by result (failed: libvirt or the vms bucket could not be read)";
  synced_ = host_.counter("nodeha_vms_syncs_total", help, {{"result", "ok"}});
  sync_failed_ = host_.counter("nodeha_vms_syncs_total", help, {{"result", "failed"}});
  stale_removed_ = host_.counter("nodeha_stale_copies_removed_total",
                                 "domains destroyed and undefined because their VM record names another node");
  restarts_ = host_.counter("nodeha_vm_restarts_total", "VMs started again by supervision after they stopped unasked");
  load_owned();
  running_ = host_.gauge("nodeha_node_vms", "domains on this node by state, as of the last inventory sync",
                         {{"node", host_.node_id()}, {"state", "running"}});
  auto w = host_.kv_watch(vm_record::kBucket, ">", [this](const KvEntry&) { ++bucket_changes_; });
  watching_ = static_cast<bool>(w);
  if (!watching_) host_.warn("the vms bucket cannot be watched (" + w.status().message() + "): every sync reads it whole");
}

void Inventory::sync() {
  busy_.new_round();
  auto domains = read_domains();
  if (!domains) {
    if (!libvirt_failed_) host_.warn("inventory sync: " + domains.status().message());
    libvirt_failed_ = true;
    sync_failed_.inc();
    return;
  }
  libvirt_failed_ = false;
  auto fail = [&](const Status& s) {
    if (!bucket_failed_) host_.warn("out of sync with the vms bucket, serving no operation: " + s.message());
    bucket_failed_ = true;
    in_sync_ = false;
    first_ = true;  // whatever changed meanwhile, the next sync looks at everything as after a start
    sync_failed_.inc();
  };
  bool fresh = false;
  auto records = this->records(false, &fresh);
  if (!records) return fail(records.status());
  bucket_failed_ = false;
  auto drained = node_drained(host_);
  auto plan_with = [&](std::map<std::string, nlohmann::json> records, SyncInput& in) {
    in.node = host_.node_id();
    in.first = first_;
    in.domains = domains.value();
    in.records = std::move(records);
    in.owned = owned_;
    in.seen = first_ ? std::set<std::string>{} : seen_;
    in.supervise = settings_.supervise;
    in.may_start = drained && !drained.value();
    ask_owners(in);
    return plan_sync(in);
  };
  SyncInput in;
  SyncPlan plan = plan_with(std::move(records.value()), in);
  auto acts = [](const SyncPlan& p) {
    return !p.stale.empty() || !p.claim.empty() || !p.create.empty() || !p.update.empty() || !p.missing.empty() ||
           !p.autostart_off.empty() || !p.restart.empty();
  };
  if (acts(plan) && !fresh) {
    // Whatever it does is decided on the bucket as it is now, as when nothing was kept.
    records = this->records(true, &fresh);
    if (!records) return fail(records.status());
    in = SyncInput{};
    plan = plan_with(std::move(records.value()), in);
  }
  reread_ = acts(plan);  // what it writes is read back at the next sync

  for (const auto& uuid : plan.stale) remove_stale(uuid);
  for (const auto& uuid : plan.claim) claim(uuid, text(in.records[uuid], "node"));
  for (const auto& uuid : plan.create)
    if (!busy_.touched(uuid)) create(in.domains[uuid]);
  for (const auto& uuid : plan.update)
    if (!busy_.touched(uuid)) update(in.domains[uuid]);
  for (const auto& uuid : plan.missing)
    if (!busy_.touched(uuid)) mark_missing(uuid);
  for (const auto& uuid : plan.autostart_off) autostart_off(uuid);
  release_held();
  for (const auto& uuid : plan.restart)
    if (!busy_.touched(uuid) && !held_.contains(uuid)) restart(uuid);

  int running = 0;
  for (const auto& [uuid, d] : in.domains) running += runs_here(d) && plan.mine.count(uuid);
  running_.set(running);
  for (const auto& uuid : plan.unverified)
    if (unverified_.insert(uuid).second)
      host_.warn("VM " + uuid + " is defined here but recorded on " + text(in.records[uuid], "node") +
                 ", which cannot tell yet whether it has it: left alone until it can");
  std::erase_if(unverified_, [&](const std::string& u) {
    return std::find(plan.unverified.begin(), plan.unverified.end(), u) == plan.unverified.end();
  });
  for (const auto& uuid : plan.contested)
    if (contested_.insert(uuid).second) {
      std::string claimer = text(in.records[uuid], "node");
      host_.error("VM " + uuid + " runs here, but " + claimer +
                  " claimed it while this node could not answer and says it has it too: left alone, neither copy "
                  "is touched; check both nodes and stop the copy that must not run");
      publish(uuid, {{"event", "claim_contested"}, {"node", host_.node_id()}, {"claimed_by", claimer}});
    }
  std::erase_if(contested_, [&](const std::string& u) {
    return std::find(plan.contested.begin(), plan.contested.end(), u) == plan.contested.end();
  });
  if (plan.mine != owned_) save_owned(plan.mine);
  owned_ = std::move(plan.mine);
  seen_.clear();
  for (const auto& [uuid, d] : in.domains) seen_.insert(uuid);
  if (!in_sync_) host_.info("in sync: " + std::to_string(in.domains.size()) + " domain(s) here");
  first_ = false;
  in_sync_ = true;
  synced_.inc();
  if (auto reported = journal::report(host_); !reported)
    host_.debug("journal not reported yet: " + reported.status().message());
  else if (reported.value() > 0)
    host_.info("reported " + std::to_string(reported.value()) + " local task(s)");
}

// Asks each node named by the record of a domain this node never owned what it has of it.
void Inventory::ask_owners(SyncInput& in) {
  std::map<std::string, std::vector<std::string>> by_owner;
  for (const auto& uuid : needs_owner_view(in)) by_owner[text(in.records[uuid], "node")].push_back(uuid);
  for (const auto& [owner, uuids] : by_owner) {
    std::map<std::string, std::string> states;  // uuid -> state on the owner
    bool answered = false;
    auto r = host_.request(host_.subject("agent." + owner + ".vm.list"), "{}", Millis(1000));
    if (r) {
      auto reply = command::parse_envelope(r.value());
      if (reply.ok) {
        answered = true;
        states = vm_record::listed_states(reply.result);
      }
    }
    for (const auto& uuid : uuids) {
      auto it = states.find(uuid);
      in.owners[uuid] = !answered              ? OwnerView::Unknown
                        : it == states.end()   ? OwnerView::Absent
                        : it->second == "running" || it->second == "blocked" ? OwnerView::Runs
                                                                              : OwnerView::Defined;
    }
  }
}

std::string Inventory::owned_path() const { return host_.state_dir() + "/owned.json"; }

// The domains this node owns, kept across restarts: a returning agent knows which of its domains
// were moved away while it was down, without asking anyone.
void Inventory::load_owned() {
  std::ifstream in(owned_path());
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_array()) return;
  for (const auto& u : j)
    if (u.is_string()) owned_.insert(u.get<std::string>());
}

void Inventory::save_owned(const std::set<std::string>& owned) const {
  std::string tmp = owned_path() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << nlohmann::json(owned).dump();
    if (!out) {
      host_.warn("cannot write " + tmp + ": a restart will ask the owners of moved VMs instead");
      return;
    }
  }
  std::rename(tmp.c_str(), owned_path().c_str());
}

Result<std::map<std::string, Domain>> Inventory::read_domains() {
  auto conn = vm_ops::connect(host_);
  if (!conn) return conn.status();
  auto all = vm_ops::list_all(conn.value().get());
  if (!all) return all.status();
  std::map<std::string, Domain> out;
  for (const auto& dom : all.value()) {
    auto d = read_domain(dom.get(), settings_.shared_paths);
    if (!d && d.status().code() == NODEHA_ERR_NOT_FOUND) continue;  // undefined while we looked: gone
    if (!d) return d.status();  // unreadable is not gone: marking it missing would be wrong
    auto& sized = disk_gib_[d->uuid];
    if (sized.first != d->xml) sized = {d->xml, vm_ops::disk_gib(dom.get(), vm_ops::parse_disks(d->xml))};
    d.value().disk_gib = sized.second;
    out.emplace(d->uuid, std::move(d.value()));
  }
  std::erase_if(disk_gib_, [&](const auto& e) { return !out.count(e.first); });
  return out;
}

// Reading the whole bucket every sync was most of what an idle agent spent (docs/performance.md,
// "The agent's weight"). The last read stands unless its watch delivered a change since (ours
// included), the last sync wrote, the bus connection was made again, or kRereadEvery passed (in
// case a watch missed something). The bus must answer a round trip either way: a sync while it
// does not fails, as a read would.
Result<std::map<std::string, nlohmann::json>> Inventory::records(bool force, bool* fresh) {
  constexpr auto kRereadEvery = std::chrono::seconds(30);
  constexpr Millis kProbe(2000);
  uint64_t changes = bucket_changes_.load();  // before the read: a change during it reads again
  auto now = std::chrono::steady_clock::now();
  uint64_t connects = 0;
  if (auto bus = host_.bus_status(kProbe, &connects); !bus) return bus;
  *fresh = force || !watching_ || reread_ || changes != read_changes_ || connects != read_connects_ ||
           now - read_at_ >= kRereadEvery;
  if (!*fresh) return records_;
  auto r = read_records();
  if (!r) {
    reread_ = true;
    return r;
  }
  records_ = r.value();
  read_changes_ = changes;
  read_connects_ = connects;
  read_at_ = now;
  reread_ = false;
  return r;
}

Result<std::map<std::string, nlohmann::json>> Inventory::read_records() {
  auto entries = host_.kv_list(vm_record::kBucket);
  if (!entries) return entries.status();
  std::map<std::string, nlohmann::json> out;
  for (const auto& e : entries.value()) out[e.key] = parse_record(e.value);
  return out;
}

void Inventory::remove_stale(const std::string& uuid) {
  // Read again: only a record that still names another node condemns the copy here.
  auto rec = host_.kv_get(vm_record::kBucket, uuid);
  if (!rec) return;
  nlohmann::json record = parse_record(rec->value);
  std::string owner = text(record, "node");
  if (owner.empty() || owner == host_.node_id()) return;
  const bool contested = claimed_unanswered_from(record, host_.node_id());
  auto fail = [&](const Status& s) {
    host_.error("the stale copy of VM " + uuid + " (owned by " + owner + ") could not be removed: " + s.message());
  };
  auto conn = vm_ops::connect(host_);
  if (!conn) return fail(conn.status());
  auto dom = vm_ops::lookup(conn.value().get(), uuid);
  if (!dom && dom.status().code() == NODEHA_ERR_NOT_FOUND) return;  // gone already
  auto f = dom ? vm_ops::facts(dom.value().get()) : Result<vm_ops::Facts>(dom.status());
  if (!f) return fail(f.status());
  if (vm_ops::arriving(f->state, f->reason, f->persistent) || vm_ops::has_job(dom.value().get()))
    return;  // the migration decides
  if (contested && f->state != VIR_DOMAIN_SHUTOFF) return;  // claimed while we could not answer: next sync asks
  Status s = vm_ops::destroy(dom.value().get());
  if (s) s = vm_ops::undefine(dom.value().get());
  if (!s) return fail(s);
  stale_removed_.inc();
  host_.warn("removed the stale copy of VM " + uuid + " (" + f->name + "): its record names " + owner);
  publish(uuid, {{"event", "stale_copy_removed"},
                 {"node", host_.node_id()},
                 {"owner", owner},
                 {"generation", record.value("generation", nlohmann::json())},
                 {"reason", "its record names " + owner + " (generation " + record.value("generation", nlohmann::json()).dump() +
                                "): this copy was stale, destroyed and undefined"}});
}

void Inventory::claim(const std::string& uuid, const std::string& from) {
  auto moved = vm_record::move(host_, uuid, host_.node_id());
  if (!moved) {
    host_.warn("could not claim VM " + uuid + ": " + moved.status().message());
    return;
  }
  host_.info("claimed VM " + uuid + " from " + from + ": it arrived here and runs");
  publish(uuid, {{"event", "claimed"},
                 {"node", host_.node_id()},
                 {"from", from},
                 {"generation", moved->value("generation", nlohmann::json())},
                 {"reason", "it arrived here from " + from + " and runs: record moved to " + host_.node_id() + " generation " +
                                moved->value("generation", nlohmann::json()).dump()}});
}

void Inventory::create(const Domain& d) {
  auto r = vm_record::modify(host_, d.uuid, [&](nlohmann::json& record) {
    if (!record.is_null()) return false;  // recorded meanwhile: the next sync looks at it
    record = new_record(d, host_.node_id(), vm_record::unix_ms());
    return true;
  });
  if (!r) host_.warn("could not record VM " + d.uuid + ": " + r.status().message());
}

void Inventory::update(const Domain& d) {
  auto r = vm_record::modify(host_, d.uuid, [&](nlohmann::json& record) {
    if (text(record, "node") != host_.node_id()) return false;  // moved meanwhile: not ours to write
    auto changes = owner_changes(record, d);
    if (changes.empty()) return false;
    record.update(changes);
    record["updated"] = vm_record::unix_ms();
    return true;
  });
  if (!r) host_.warn("could not update the record of VM " + d.uuid + ": " + r.status().message());
}

void Inventory::mark_missing(const std::string& uuid) {
  bool marked = false;
  auto r = vm_record::modify(host_, uuid, [&](nlohmann::json& record) {
    marked = text(record, "node") == host_.node_id() && text(record, "state") != "missing";
    if (!marked) return false;
    record["state"] = "missing";
    record["updated"] = vm_record::unix_ms();
    return true;
  });
  if (!r)
    host_.warn("could not mark VM " + uuid + " missing: " + r.status().message());
  else if (marked)
    host_.warn("VM " + uuid + " is recorded here but libvirt has no such domain: marked missing");
}

void Inventory::autostart_off(const std::string& uuid) {
  auto conn = vm_ops::connect(host_);
  auto dom = conn ? vm_ops::lookup(conn.value().get(), uuid) : Result<libvirt::Domain>(conn.status());
  if (dom && virDomainSetAutostart(dom.value().get(), 0) == 0) {
    host_.info("turned autostart off for VM " + uuid +
               ": nodeha starts this node's VMs, once its agent has checked that they belong here");
    return;
  }
  Status why = dom ? vm_ops::last_error("autostart of " + uuid) : dom.status();
  if (autostart_failed_.insert(uuid).second)
    host_.warn("could not turn autostart off for VM " + uuid + ": " + why.message());
}

void Inventory::release_held() {
  for (const auto& uuid : held_.all()) {
    auto r = vm_record::modify(host_, uuid, [&](nlohmann::json& record) {
      if (text(record, "node") != host_.node_id() || text(record, "desired") == "stopped") return false;
      record["desired"] = "stopped";
      record["updated"] = vm_record::unix_ms();
      return true;
    });
    if (r && !held_.remove(uuid)) host_.warn("could not write the held VMs' file under " + host_.state_dir());
  }
}

void Inventory::restart(const std::string& uuid) {
  // Read again: a drain or a vm.stop may have come since the snapshot the plan was made from.
  auto drained = node_drained(host_);
  auto rec = host_.kv_get(vm_record::kBucket, uuid);
  if (!drained || drained.value() || !rec) return;
  nlohmann::json record = parse_record(rec->value);
  if (text(record, "node") != host_.node_id()) return;
  auto conn = vm_ops::connect(host_);
  if (!conn) return;
  auto dom = vm_ops::lookup(conn.value().get(), uuid);
  if (!dom) return;
  auto f = vm_ops::facts(dom.value().get());
  if (!f) return;
  Domain now;
  now.state = f->state;
  now.reason = f->reason;
  if (!needs_restart(record, now)) return;
  std::string reason = f->state == VIR_DOMAIN_CRASHED ? "crashed" : vm_ops::reason_name(f->state, f->reason);
  Status s = f->state == VIR_DOMAIN_CRASHED ? vm_ops::destroy(dom.value().get()) : Status::ok();
  if (s) s = vm_ops::start(dom.value().get());
  if (!s) {
    if (restart_failed_.insert(uuid).second)
      host_.error("could not restart VM " + uuid + " (" + f->name + "): " + s.message());
    return;
  }
  restart_failed_.erase(uuid);
  restarts_.inc();
  host_.warn("restarted VM " + uuid + " (" + f->name + "): it was " + libvirt::state_name(f->state) + " (" + reason +
             ")");
  publish(uuid, {{"event", "restarted"}, {"node", host_.node_id()}, {"reason", reason}});
}

void Inventory::publish(const std::string& uuid, nlohmann::json event) const {
  event["vm"] = uuid;
  desk::publish(host_, uuid, std::move(event));  // relayed by the controller on evt.vm.<uuid>
}

}  // namespace nodeha::vms
