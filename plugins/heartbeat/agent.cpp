#include "agent.h"

#include "command.h"
#include "libvirt.h"

#include <sys/statvfs.h>

#include <fstream>

namespace nodeha::heartbeat {

std::string read_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  in >> id;
  return id.empty() ? "unknown" : id;
}

Result<Inventory> read_inventory(const Host& host, const std::string& disk_path) {
  auto raw = host.libvirt_connect();
  if (!raw) return raw.status();
  libvirt::Connection conn(static_cast<virConnectPtr>(raw.value()));
  Inventory inv;
  virNodeInfo node{};
  if (virNodeGetInfo(conn.get(), &node) < 0) return Status(NODEHA_ERR_UNAVAILABLE, "virNodeGetInfo: " + libvirt::last_error());
  inv.capacity.vcpus = node.cpus;
  inv.capacity.memory_mib = node.memory / 1024;
  struct statvfs fs {};
  if (!disk_path.empty() && statvfs(disk_path.c_str(), &fs) == 0) {
    uint64_t gib = 1024ull * 1024 * 1024;
    inv.capacity.disk_gib = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize / gib;
    inv.use.disk_gib = static_cast<uint64_t>(fs.f_blocks - fs.f_bfree) * fs.f_frsize / gib;
  }
  virDomainPtr* doms = nullptr;
  int n = virConnectListAllDomains(conn.get(), &doms, 0);
  if (n < 0) return Status(NODEHA_ERR_UNAVAILABLE, "list domains: " + libvirt::last_error());
  for (int i = 0; i < n; ++i) {
    libvirt::Domain d(doms[i]);
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    virDomainGetUUIDString(d.get(), uuid);
    virDomainInfo info{};
    if (virDomainGetInfo(d.get(), &info) < 0) continue;  // vanished while we looked
    const char* name = virDomainGetName(d.get());
    inv.vms.push_back({uuid, name ? name : "", libvirt::state_name(info.state)});
    if (info.state != VIR_DOMAIN_SHUTOFF && info.state != VIR_DOMAIN_CRASHED && info.state != VIR_DOMAIN_NOSTATE) inv.active++;
    if (info.state == VIR_DOMAIN_RUNNING || info.state == VIR_DOMAIN_PAUSED || info.state == VIR_DOMAIN_BLOCKED) {
      inv.use.vcpus += info.nrVirtCpu;
      inv.use.memory_mib += info.memory / 1024;
      inv.use.vms_running++;
    }
  }
  free(doms);
  return inv;
}

AgentSide::AgentSide(const Host& host) : host_(host) {
  const auto& c = host_.config();
  interval_ = host_.duration("interval");
  disk_path_ = c.at("disk_path").get<std::string>();
  for (auto it = c.at("addresses").begin(); it != c.at("addresses").end(); ++it) {
    if (!it.value().is_string()) throw ConfigError("addresses." + it.key() + " must be a string (an address)");
    addresses_[it.key()] = it.value().get<std::string>();
  }
  boot_id_ = read_boot_id();
  max_wire_ = wire_setting(host_);
}

Status AgentSide::start() {
  sent_ = host_.counter("nodeha_heartbeats_sent_total", "heartbeats published by this agent");
  std::string node = host_.node_id();
  auto checks = host_.subscribe(host_.subject("check." + node + ".*"), [this, node](const Message& m) {
    auto verdict = decode_check_message(m.data);
    if (!verdict) return host_.warn("ignored a malformed check verdict on " + m.subject);
    // Anyone may publish here: a verdict counts only for the node and the check its subject names.
    if (verdict->node != node || m.subject != host_.subject("check." + node + "." + verdict->check.name))
      return host_.warn("ignored a check verdict on " + m.subject + " that names another node or check");
    checks_[verdict->check.name] = verdict->check;
  });
  if (!checks) return checks.status();
  auto ping = host_.subscribe(host_.subject("agent." + node + ".ping"), [this, node](const Message& m) {
    host_.respond(m.reply, command::ok({{"node", node}, {"boot_id", boot_id_}, {"time", unix_ms()}}));
    // The controller did not take our last heartbeats: perhaps it reads version 1 only.
    if (wire_ > 1) {
      wire_ = 1;
      host_.info("pinged back: heartbeats in wire version 1 (the whole VM list) until a controller asks for more");
    }
  });
  if (!ping) return ping.status();
  auto grant = host_.subscribe(host_.subject("agent." + node + ".hb.wire"), [this](const Message& m) { on_grant(m); });
  if (!grant) return grant.status();
  auto t = host_.timer(Millis(0), interval_, [this] { beat(); });
  if (!t) return t.status();
  // A VM that starts, stops or moves away is worth a heartbeat now rather than up to an interval
  // later. libvirt's events say so; while they do not come, the domains are counted every second.
  auto w = host_.libvirt_watch([this](nodeha_libvirt_event e, std::string_view) { on_libvirt(e); });
  if (!w) {
    host_.warn(w.status().message() + ": counting domains every second instead");
    return poll(true);
  }
  return Status::ok();
}

void AgentSide::on_libvirt(nodeha_libvirt_event e) {
  switch (e) {
    case NODEHA_LIBVIRT_DOMAIN_CHANGED:
      return soon();
    case NODEHA_LIBVIRT_EVENTS_FLOW:
      events_seen_ = true;
      host_.info("libvirt's domain events come: a VM's change goes out in a heartbeat at once");
      // A change while they did not come was seen by the count that reopened the connection.
      poll(false);
      return;
    case NODEHA_LIBVIRT_EVENTS_LOST:
      if (events_seen_) {
        host_.info("libvirt's domain events stopped: counting domains every second until they come");
        soon();  // the connection is gone: say so now (a failing `libvirt` check), not an interval later
      }
      poll(true);
      return;
  }
}

Status AgentSide::poll(bool on) {
  if (on == (count_timer_ != 0) || interval_ <= Millis(1000)) return Status::ok();  // every heartbeat counts
  if (!on) {
    host_.cancel_timer(count_timer_);
    count_timer_ = 0;
    return Status::ok();
  }
  auto c = host_.timer(Millis(1000), Millis(1000), [this] { count_domains(); });
  if (!c) return c.status();
  count_timer_ = c.value();
  return Status::ok();
}

void AgentSide::soon() {
  changed_at_ = SteadyClock::now();
  pending();
}

// A heartbeat read after the last change: none when one was read since (or is being read); else
// now, or a second after the last one, so at most one a second more than the interval.
void AgentSide::pending() {
  if (read_at_ >= changed_at_) return;
  if (in_flight_) {
    again_ = true;  // read before the change: once it is sent
    return;
  }
  auto since = SteadyClock::now() - last_beat_;
  if (since >= Millis(1000)) return beat();
  if (soon_timer_) return;  // one is due
  auto wait = std::chrono::duration_cast<Millis>(Millis(1000) - since) + Millis(1);
  if (auto t = host_.timer(wait, Millis(0), [this] {
        soon_timer_ = 0;
        pending();
      }))
    soon_timer_ = t.value();
}

void AgentSide::on_grant(const Message& m) {
  auto g = decode_wire_grant(m.data);
  if (!g) return host_.warn("ignored a heartbeat wire grant: " + g.status().message());
  uint32_t wire = std::min(g->wire, max_wire_);
  if (wire != wire_) {
    host_.info("heartbeats in wire version " + std::to_string(wire) + ", as the controller asks");
    full_ = true;
  }
  wire_ = wire;
  if (!g->full) return;
  full_ = true;
  soon();  // under the same bound as a VM's change: at most one a second more than the interval
}

// Without events, between heartbeats: a change in the number of active domains.
void AgentSide::count_domains() {
  if (counting_ || in_flight_) return;
  counting_ = true;
  host_.spawn([this] {
    int n = -1;
    if (auto raw = host_.libvirt_connect()) {
      libvirt::Connection conn(static_cast<virConnectPtr>(raw.value()));
      n = virConnectNumOfDomains(conn.get());
    }
    host_.post([this, n] {
      counting_ = false;
      if (n >= 0 && n != active_sent_) soon();
    });
  });
}

void AgentSide::beat() {
  if (in_flight_) return;  // libvirt is slow: never queue heartbeats behind one another
  in_flight_ = true;
  read_at_ = SteadyClock::now();
  host_.spawn([this] {
    auto inv = std::make_shared<Result<Inventory>>(read_inventory(host_, disk_path_));
    host_.post([this, inv] { send(*inv); });
  });
}

void AgentSide::send(const Result<Inventory>& inv) {
  in_flight_ = false;
  Heartbeat hb;
  hb.node = host_.node_id();
  hb.seq = ++seq_;
  hb.boot_id = boot_id_;
  hb.sent_at = unix_ms();
  hb.interval_ms = interval_.count();
  hb.addresses = addresses_;
  for (const auto& [name, c] : checks_) hb.checks.push_back(c);
  if (inv) {
    hb.capacity = inv->capacity;
    hb.use = inv->use;
    hb.vms = inv->vms;
  } else {
    // Without libvirt this node cannot run VMs: say so as a failing check, not by silence.
    hb.checks.push_back(Check{"libvirt", false, inv.status().message()});
  }
  if (wire_ >= 2) {
    hb.version = wire_;
    hb.vms_digest = vms_digest(hb.vms);
    hb.has_vms = full_ || hb.vms_digest != digest_sent_;
  }
  last_beat_ = SteadyClock::now();
  if (auto s = host_.publish(host_.subject("hb." + hb.node), encode_heartbeat(hb)); s) {
    sent_.inc();
    digest_sent_ = hb.vms_digest;
    full_ = false;
    active_sent_ = inv ? inv->active : -1;
  }
  if (again_) {
    again_ = false;
    pending();
  }
}

}  // namespace nodeha::heartbeat
