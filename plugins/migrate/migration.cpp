#include "migration.h"

#include "disk_images.h"
#include "libvirt.h"
#include "uri.h"
#include "vm_ops.h"

#include <chrono>
#include <thread>

namespace nodeha::migrate {

using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kPollMs = 250;        // job statistics, for the limits
constexpr int64_t kPublishMs = 1000;    // progress handed out at most this often
constexpr int64_t kAbortRetryMs = 50;   // an abort before the job exists is tried again

// Typed parameters built with virTypedParamsAdd*, freed on scope exit.
struct TypedParams {
  virTypedParameterPtr params = nullptr;
  int count = 0;
  int capacity = 0;
  TypedParams() = default;
  TypedParams(const TypedParams&) = delete;
  TypedParams& operator=(const TypedParams&) = delete;
  ~TypedParams() { virTypedParamsFree(params, count); }
  bool add(const char* name, const std::string& value) {
    return virTypedParamsAddString(&params, &count, &capacity, name, value.c_str()) == 0;
  }
  bool add(const char* name, unsigned long long value) {
    return virTypedParamsAddULLong(&params, &count, &capacity, name, value) == 0;
  }
};

// The current job's counters (or, with VIR_DOMAIN_JOB_STATS_COMPLETED, the last finished job's);
// empty when there is no such job (yet) or libvirt did not answer. A counter libvirt leaves out
// reads 0; the time remaining stays unknown (libvirt 9.0's QEMU driver never sets it).
std::optional<JobSample> read_job(virDomainPtr dom, unsigned int flags = 0) {
  int type = VIR_DOMAIN_JOB_NONE;
  virTypedParameterPtr params = nullptr;
  int count = 0;
  if (virDomainGetJobStats(dom, &type, &params, &count, flags) < 0) return std::nullopt;
  JobSample s;
  const std::pair<const char*, uint64_t*> counters[] = {
      {VIR_DOMAIN_JOB_DATA_TOTAL, &s.data_total},         {VIR_DOMAIN_JOB_DATA_PROCESSED, &s.data_processed},
      {VIR_DOMAIN_JOB_DATA_REMAINING, &s.data_remaining}, {VIR_DOMAIN_JOB_MEMORY_TOTAL, &s.memory_total},
      {VIR_DOMAIN_JOB_MEMORY_PROCESSED, &s.memory_processed}, {VIR_DOMAIN_JOB_MEMORY_REMAINING, &s.memory_remaining},
      {VIR_DOMAIN_JOB_DISK_TOTAL, &s.disk_total},         {VIR_DOMAIN_JOB_DISK_PROCESSED, &s.disk_processed},
      {VIR_DOMAIN_JOB_DISK_REMAINING, &s.disk_remaining}};
  unsigned long long v = 0;
  for (const auto& [name, field] : counters)
    if (virTypedParamsGetULLong(params, count, name, &v) == 1) *field = v;
  if (virTypedParamsGetULLong(params, count, VIR_DOMAIN_JOB_TIME_REMAINING, &v) == 1 && v <= INT64_MAX)
    s.time_remaining_ms = static_cast<int64_t>(v);
  virTypedParamsFree(params, count);
  if (type == VIR_DOMAIN_JOB_NONE) return std::nullopt;
  return s;
}

// The finished migration's counters as the destination keeps them, for when the source cannot
// tell: the destination QEMU's own, without the NBD mirror's (completed_sample). Empty when it
// cannot be asked.
std::optional<JobSample> completed_at(const std::string& dest_uri, const std::string& uuid) {
  libvirt::Connection conn(virConnectOpen(dest_uri.c_str()));
  if (!conn) return std::nullopt;
  libvirt::Domain dom(virDomainLookupByUUIDString(conn.get(), uuid.c_str()));
  if (!dom) return std::nullopt;
  return read_job(dom.get(), VIR_DOMAIN_JOB_STATS_COMPLETED);
}

// The source's copy after a successful migration, shut off by it: undefined as libvirt's
// VIR_MIGRATE_UNDEFINE_SOURCE would, the definition only (NVRAM files stay, as libvirt leaves
// them). Not used: libvirt drops the finished job's figures with the domain, and a small disk's
// copy ends between two readings of the running job. Empty when done, else what was kept and why.
std::string undefine_left_copy(virDomainPtr dom) {
  int state = 0, reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) < 0)
    return "its definition here is kept: cannot read its state: " + libvirt::last_error();
  if (state != VIR_DOMAIN_SHUTOFF)
    return std::string("its definition here is kept: it is ") + libvirt::state_name(state) + " here";
  Status s = vm_ops::undefine(dom, vm_ops::Nvram::Keep);
  return s ? "" : "its shut-off definition here is kept: " + s.message();
}

int64_t since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

MigrationOutcome refused(const char* code, std::string message) {
  MigrationOutcome out;
  out.error = MigrationError{code, std::move(message)};
  return out;
}

// Whether the domain may be migrated live from here: it runs (or is paused by a person), and is
// not the paused copy of an incoming migration.
std::optional<std::string> not_migratable(virDomainPtr dom) {
  int state = 0, reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) < 0) return "cannot read its state: " + libvirt::last_error();
  if (state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_BLOCKED) return std::nullopt;
  if (state == VIR_DOMAIN_PAUSED && reason != VIR_DOMAIN_PAUSED_MIGRATION && reason != VIR_DOMAIN_PAUSED_STARTING_UP &&
      reason != VIR_DOMAIN_PAUSED_POSTCOPY && reason != VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)
    return std::nullopt;
  if (state == VIR_DOMAIN_PAUSED) return std::string("it is paused by a migration or while starting up");
  return std::string("it is not running (") + libvirt::state_name(state) + ")";
}

}  // namespace

// Watches one migration on its own thread until stopped: reads the job, hands out progress,
// aborts the job when a limit is passed or an abort was asked for.
class Monitor {
 public:
  Monitor(virDomainPtr dom, ActiveMigration& active, ProgressWatch& watch, const ProgressFn& on_progress,
          Clock::time_point start)
      : dom_(dom), active_(active), watch_(watch), on_progress_(on_progress), start_(start),
        thread_([this] { loop(); }) {}
  ~Monitor() { stop(); }
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  void stop() {
    {
      std::lock_guard lock(active_.mu_);
      active_.done_ = true;
    }
    active_.cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    int64_t next_poll = 0;
    int64_t last_published = -kPublishMs;
    bool abort_delivered = false;
    int64_t next_abort = 0;
    for (;;) {
      int64_t now = since(start_);
      if (now >= next_poll) {
        if (auto s = read_job(dom_)) {
          watch_.observe(now, *s);
          // Also while nothing is counted yet (the destination is starting): the migration lives.
          if (now - last_published >= kPublishMs) {
            if (on_progress_) on_progress_(*s, now);
            last_published = now;
          }
        }
        next_poll = now + kPollMs;
      }
      if (Verdict v = watch_.verdict(now); v != Verdict::Continue) active_.request_abort(verdict_name(v));
      std::string reason = active_.abort_reason();
      if (!reason.empty() && !abort_delivered && now >= next_abort) {
        // Before libvirt has started the job there is nothing to abort: try again shortly. Once
        // delivered, libvirt cancels also a migration that has not reached QEMU yet.
        abort_delivered = virDomainAbortJob(dom_) == 0;
        next_abort = now + kAbortRetryMs;
      }
      int64_t wake = std::min(next_poll, watch_.next_deadline_ms());
      if (!reason.empty() && !abort_delivered) wake = std::min(wake, next_abort);
      std::unique_lock lock(active_.mu_);
      active_.cv_.wait_until(lock, start_ + std::chrono::milliseconds(wake),
                             [&] { return active_.done_ || active_.reason_ != reason; });
      if (active_.done_) return;
    }
  }

  virDomainPtr dom_;
  ActiveMigration& active_;
  ProgressWatch& watch_;
  const ProgressFn& on_progress_;
  Clock::time_point start_;
  std::thread thread_;  // last: starts once everything it uses is set
};

bool ActiveMigration::request_abort(const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    if (!reason_.empty() || done_) return false;
    reason_ = reason;
  }
  cv_.notify_all();
  return true;
}

std::string ActiveMigration::abort_reason() const {
  std::lock_guard lock(mu_);
  return reason_;
}

std::shared_ptr<ActiveMigration> ActiveMigrations::begin(const std::string& uuid) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = active_.emplace(uuid, nullptr);
  if (!inserted) return nullptr;
  it->second = std::make_shared<ActiveMigration>();
  return it->second;
}

void ActiveMigrations::end(const std::string& uuid) {
  std::lock_guard lock(mu_);
  active_.erase(uuid);
}

std::shared_ptr<ActiveMigration> ActiveMigrations::find(const std::string& uuid) const {
  std::lock_guard lock(mu_);
  auto it = active_.find(uuid);
  return it == active_.end() ? nullptr : it->second;
}

void ActiveMigrations::abort_all(const std::string& reason) {
  std::lock_guard lock(mu_);
  for (auto& [uuid, a] : active_) a->request_abort(reason);
}

size_t ActiveMigrations::size() const {
  std::lock_guard lock(mu_);
  return active_.size();
}

const char* abort_code(const std::string& reason) {
  if (reason == "timeout") return kMigrationTimeout;
  if (reason == "stalled") return kMigrationStalled;
  return kMigrationAborted;
}

MigrationOutcome run_migration(const Host& host, const MigrationSpec& spec, ActiveMigration& active,
                               const ProgressFn& on_progress) {
  auto raw = host.libvirt_connect();
  if (!raw) return refused("unavailable", raw.status().message());
  libvirt::Connection conn(static_cast<virConnectPtr>(raw.value()));
  libvirt::Domain dom(virDomainLookupByUUIDString(conn.get(), spec.uuid.c_str()));
  if (!dom) return refused(kUnknownVm, "VM " + spec.uuid + " is not on this node");
  if (auto why = not_migratable(dom.get())) return refused("bad_value", "VM " + spec.uuid + " cannot migrate live: " + *why);

  char* xml = virDomainGetXMLDesc(dom.get(), 0);
  if (!xml) return refused(kMigrationFailed, "cannot read the definition of " + spec.uuid + ": " + libvirt::last_error());
  auto disks = vm_ops::parse_disks(xml);
  free(xml);
  auto local = vm_ops::local_disk_paths(disks, spec.shared_paths);
  if (!local.empty() && !spec.include_local_disk) {
    std::string paths;
    for (const auto& p : local) paths += (paths.empty() ? "" : ", ") + p;
    return refused("bad_value", "VM " + spec.uuid + " has local disks (" + paths +
                                    "); set include_local_disk to copy them to the destination");
  }
  auto plan = plan_copies(disks, spec.shared_paths);
  if (!plan) return refused("bad_value", "VM " + spec.uuid + ": " + plan.status().message());
  DiskImages images(spec.uuid, spec.dest_uri, std::move(plan.value()));
  if (auto s = images.prepare(dom.get()); !s) {
    std::string images_left = images.after_failure();
    return refused(kMigrationFailed, "VM " + spec.uuid + " was not migrated: " + s.message() + "; the guest is still here; " + images_left);
  }

  TypedParams params;
  // Not VIR_MIGRATE_UNDEFINE_SOURCE: the source's domain is undefined here once its finished job's
  // figures are read (undefine_left_copy); libvirt drops them with the domain.
  unsigned int flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST;
  bool built = params.add(VIR_MIGRATE_PARAM_URI, spec.migrate_uri);
  // The destination QEMU listens on every address unless told; the stream is meant for the
  // chosen network only.
  if (std::string h = uri_host(spec.migrate_uri); is_ip_address(h)) built = built && params.add(VIR_MIGRATE_PARAM_LISTEN_ADDRESS, h);
  if (spec.bandwidth_mib > 0) built = built && params.add(VIR_MIGRATE_PARAM_BANDWIDTH, static_cast<unsigned long long>(spec.bandwidth_mib));
  if (!images.copies().empty()) {
    // Only the top image of each local disk (a backing file is on shared storage), and only the
    // local disks: a disk on shared storage must never be copied onto itself.
    flags |= VIR_MIGRATE_NON_SHARED_INC;
    for (const auto& c : images.copies()) built = built && params.add(VIR_MIGRATE_PARAM_MIGRATE_DISKS, c.target);
  }
  if (!built) return refused("internal", "cannot build the migration parameters: " + libvirt::last_error());

  ProgressWatch watch(spec.timeout_ms, spec.stall_ms);
  auto start = Clock::now();
  int rc;
  std::string error;
  {
    Monitor monitor(dom.get(), active, watch, on_progress, start);
    rc = virDomainMigrateToURI3(dom.get(), spec.dest_uri.c_str(), params.params, params.count, flags);
    if (rc < 0) error = libvirt::last_error();
  }  // the monitor stops here; `watch` is ours again
  MigrationOutcome out;
  out.duration_ms = since(start);
  out.last = watch.last();
  out.disks = images.copies();
  if (rc == 0) {
    // The source's figures of the whole job, NBD mirror included; read before the domain goes.
    std::optional<JobSample> whole = read_job(dom.get(), VIR_DOMAIN_JOB_STATS_COMPLETED);
    if (!whole || whole->data_total == 0) whole = completed_at(spec.dest_uri, spec.uuid);
    out.last = completed_sample(out.last, whole.value_or(JobSample{}));
    std::string kept = undefine_left_copy(dom.get());
    if (!kept.empty()) host.warn("VM " + spec.uuid + " migrated, but " + kept);
    out.images = images.after_success(conn.get());
    if (!kept.empty()) out.images = kept + (out.images.empty() ? "" : "; " + out.images);
    return out;
  }
  out.images = images.after_failure();

  int state = 0, reason = 0;
  std::string where = virDomainGetState(dom.get(), &state, &reason, 0) == 0
                          ? std::string("; the guest is still here (") + libvirt::state_name(state) + ")"
                          : std::string("; the guest is no longer defined here");
  if (!out.images.empty()) where += "; " + out.images;
  std::string why = active.abort_reason();
  if (why == "timeout")
    out.error = MigrationError{kMigrationTimeout, "aborted after " + std::to_string(out.duration_ms) +
                                                      " ms: the migration took longer than " +
                                                      std::to_string(spec.timeout_ms) + " ms (" + error + ")" + where};
  else if (why == "stalled")
    out.error = MigrationError{kMigrationStalled, "aborted: data_remaining did not decrease for " +
                                                      std::to_string(spec.stall_ms) + " ms (" + error + ")" + where};
  else if (!why.empty())
    out.error = MigrationError{kMigrationAborted, "aborted (" + why + "): " + error + where};
  else
    out.error = MigrationError{kMigrationFailed, "migration to " + spec.dest_uri + " failed: " + error + where};
  return out;
}

}  // namespace nodeha::migrate
