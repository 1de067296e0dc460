#include "stopper.h"

#include "sync_plan.h"
#include "vm_ops.h"
#include "vm_record.h"

#include <chrono>

namespace nodeha::vms {
namespace {

using Clock = std::chrono::steady_clock;

constexpr Millis kLookEvery{100};  // how often a guest that is shutting down is looked at

command::Error error_of(const Status& s) { return {vm_ops::error_code(s), s.message()}; }

}  // namespace

struct Stopper::Job {
  StopOrder order;
  Done done;
  StopResult result;
  Clock::time_point deadline;
  std::unique_ptr<Busy::Guard> busy;
};

struct Stopper::Batch {
  std::vector<StopOrder> orders;
  std::vector<StopResult> results;
  size_t next = 0;
  size_t finished = 0;
  int running = 0;
  int parallel = 1;
  AllDone done;
};

void Stopper::stop(const StopOrder& order, Done done) {
  auto job = std::make_shared<Job>();
  job->order = order;
  job->done = std::move(done);
  job->result.uuid = order.uuid;
  job->result.started = vm_record::unix_ms();
  job->busy = busy_.hold(order.uuid);
  if (Status s = host_.spawn([this, job] { begin(job); }); !s) {
    job->result.error = command::Error{command::kUnavailable, s.message()};
    job->done(job->result);
  }
}

void Stopper::stop_all(std::vector<StopOrder> orders, int parallel, AllDone done) {
  auto batch = std::make_shared<Batch>();
  batch->results.resize(orders.size());
  batch->orders = std::move(orders);
  batch->parallel = std::max(1, parallel);
  batch->done = std::move(done);
  if (batch->orders.empty()) return batch->done({});
  launch(batch);
}

void Stopper::launch(const std::shared_ptr<Batch>& batch) {
  while (batch->running < batch->parallel && batch->next < batch->orders.size()) {
    size_t i = batch->next++;
    ++batch->running;
    stop(batch->orders[i], [this, batch, i](StopResult r) {
      batch->results[i] = std::move(r);
      --batch->running;
      if (++batch->finished == batch->orders.size())
        batch->done(std::move(batch->results));
      else
        launch(batch);
    });
  }
}

void Stopper::begin(const std::shared_ptr<Job>& job) {
  const std::string& uuid = job->order.uuid;
  // Recorded first: from then on supervision leaves the VM stopped, whoever looks.
  auto recorded = vm_record::modify(host_, uuid, [&](nlohmann::json& record) {
    if (text(record, "node") != host_.node_id() || text(record, "desired") == "stopped") return false;
    record["desired"] = "stopped";
    record["updated"] = vm_record::unix_ms();
    return true;
  });
  if (!recorded && !job->order.stop_without_record) {
    job->result.error =
        command::Error{command::kUnavailable, "could not record that VM " + uuid + " is to stay stopped (" +
                                                  recorded.status().message() + "); nothing was stopped"};
    return done(job);
  }
  if (!recorded && !held_.add(uuid)) host_.warn("could not write the held VMs' file under " + host_.state_dir());
  auto conn = vm_ops::connect(host_);
  if (!conn) {
    job->result.error = error_of(conn.status());
    return done(job);
  }
  auto dom = vm_ops::lookup(conn.value().get(), uuid);
  auto f = dom ? vm_ops::facts(dom.value().get()) : Result<vm_ops::Facts>(dom.status());
  if (!f) {
    job->result.error = error_of(f.status());
    return done(job);
  }
  job->result.name = f->name;
  job->result.state = libvirt::state_name(f->state);
  if (!vm_ops::active(f->state)) return done(job);
  if (job->order.timeout.count() <= 0) return finish(job);
  if (Status s = vm_ops::shutdown(dom.value().get()); !s) {
    host_.info("VM " + uuid + " refused a graceful shutdown (" + s.message() + "): destroying it");
    return finish(job);
  }
  job->deadline = Clock::now() + job->order.timeout;
  (void)host_.post([this, job] { wait(job); });
}

void Stopper::wait(const std::shared_ptr<Job>& job) {
  (void)host_.timer(kLookEvery, Millis(0), [this, job] { (void)host_.spawn([this, job] { look(job); }); });
}

void Stopper::look(const std::shared_ptr<Job>& job) {
  auto conn = vm_ops::connect(host_);
  if (!conn) {
    job->result.error = error_of(conn.status());
    return done(job);
  }
  auto dom = vm_ops::lookup(conn.value().get(), job->order.uuid);
  if (!dom && dom.status().code() == NODEHA_ERR_NOT_FOUND) {
    job->result.state = "shutoff";  // a transient domain is gone once it shut down
    return done(job);
  }
  auto f = dom ? vm_ops::facts(dom.value().get()) : Result<vm_ops::Facts>(dom.status());
  if (!f) {
    job->result.error = error_of(f.status());
    return done(job);
  }
  job->result.state = libvirt::state_name(f->state);
  if (!vm_ops::active(f->state)) return done(job);
  if (Clock::now() >= job->deadline) return finish(job);
  (void)host_.post([this, job] { wait(job); });
}

void Stopper::finish(const std::shared_ptr<Job>& job) {
  bool started = destroys_.start([this, job] {
    auto conn = vm_ops::connect_alone(host_);
    auto dom = conn ? vm_ops::lookup(conn.value().get(), job->order.uuid) : Result<libvirt::Domain>(conn.status());
    if (!dom && dom.status().code() == NODEHA_ERR_NOT_FOUND) {
      job->result.state = "shutoff";  // a transient domain is gone once it stopped
      return done(job);
    }
    Status s = dom ? vm_ops::destroy(dom.value().get()) : dom.status();
    if (!s) {
      job->result.error = error_of(s);
      return done(job);
    }
    job->result.forced = true;
    int state = VIR_DOMAIN_SHUTOFF, reason = 0;
    if (virDomainGetState(dom.value().get(), &state, &reason, 0) == 0) job->result.state = libvirt::state_name(state);
    done(job);
  });
  if (!started) {
    job->result.error = command::Error{command::kUnavailable, "the agent is stopping; VM " + job->order.uuid + " was not destroyed"};
    done(job);
  }
}

void Stopper::done(const std::shared_ptr<Job>& job) {
  job->result.finished = vm_record::unix_ms();
  job->busy.reset();
  (void)host_.post([job] { job->done(std::move(job->result)); });
}

}  // namespace nodeha::vms
