// A hostile client against a whole cluster (issue 13, point 7): a real nats-server, a controller
// with every shipped controller plugin, three agents on the libvirt test driver running three VMs
// each, and a NATS client the project did not write (cnats directly, raw_nats.h). With a fixed
// seed (printed; NODEHA_HOSTILE_SEED repeats a run) it sends the issue's request (a drain of a
// 5,000-character node) and 10,000 mutated requests on every cmd.* subject, garbage on hb.*, check.*, agent.<node>.* and the record and lease desks' ctl.<node>.*
// subjects, and requests whose reply subject is someone else's. Every message is invalid by construction, and none could act
// if it were accepted (hostile_inputs.h says why; the test asserts it first).
//
// Then: every command got an error envelope; the controller stayed connected (its
// nodeha_bus_connected sampled throughout) and still receives heartbeats and answers node.list;
// the nodes, vms and tasks buckets hold what they held (fields that move on their own aside); no
// event was published; every VM still runs; nothing was published on command subjects as a reply.
#include "bus.h"
#include "fence_lease.h"
#include "host_process.h"
#include "hostile_inputs.h"
#include "nats_server.h"
#include "raw_nats.h"
#include "record_desk.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

namespace nodeha::test {
namespace {

using json = nlohmann::json;
using hostile::Input;

constexpr uint64_t kDefaultSeed = 20261206;
constexpr int kCommandRequests = 10000;  // round-robin over every cmd.* subject, after the issue's own
constexpr int kAgentRequests = 1800;    // round-robin over every agent op of every agent
constexpr int kBusGarbage = 1200;       // on hb.*, check.* and agent.<node>.ping
constexpr int kDeskGarbage = 300;       // requests on ctl.<node>.vm.write, .task.report and .lease
constexpr int kForeignReplies = 600;
constexpr size_t kWindow = 64;  // requests in flight
constexpr int kNodes = 3, kVmsPerNode = 3;
constexpr size_t kShown = 4;  // failing inputs shown per category

uint64_t seed() {
  const char* s = std::getenv("NODEHA_HOSTILE_SEED");
  return s && *s ? std::strtoull(s, nullptr, 10) : kDefaultSeed;
}

std::string node_name(int i) { return "node-" + std::to_string(i); }
std::string vm_uuid(int node, int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08d-0000-4000-8000-%012d", node, i);
  return buf;
}
std::string vm_name(int node, int i) { return "vm-" + std::to_string(node) + "-" + std::to_string(i); }

// A test-driver node file: 8 CPUs, 16 GiB and the node's VMs, running.
std::string node_file(int node) {
  std::string x = "<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>"
                  "<threads>1</threads><active>8</active></cpu><memory>16777216</memory>\n";
  for (int i = 0; i < kVmsPerNode; ++i)
    x += "<domain type='test'><name>" + vm_name(node, i) + "</name><uuid>" + vm_uuid(node, i) +
         "</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>"
         "<disk type='network' device='disk'><source protocol='rbd' name='pool/" + vm_name(node, i) +
         "'><host name='10.0.0.1' port='6789'/></source><target dev='vda' bus='virtio'/></disk></devices></domain>\n";
  return x + "</node>\n";
}

// Why a reply is not the error envelope {"ok":false,"error":{"code","message"}}; "" when it is.
std::string not_refused(const RawReply& r) {
  if (r.kind != RawReply::Kind::Answer) return to_string(r.kind);
  auto j = json::parse(r.data, nullptr, false);
  if (!j.is_object() || !j.contains("ok")) return "not an envelope: " + hostile::preview(r.data, 80);
  if (j["ok"] == true) return "accepted: " + hostile::preview(r.data, 80);
  const json& e = j.value("error", json());
  if (!e.is_object() || !e.value("code", json()).is_string() || e["code"] == "" ||
      !e.value("message", json()).is_string() || e["message"] == "")
    return "refused without code and message: " + hostile::preview(r.data, 80);
  return "";
}

// Failures grouped by a category, the first few inputs of each shown.
class Findings {
 public:
  void add(const std::string& category, const std::string& what) {
    auto& c = by_category_[category];
    if (c.second.size() < kShown) c.second.push_back(what);
    ++c.first;
    ++total_;
  }
  int total() const { return total_; }
  std::string report() const {
    std::string out;
    for (const auto& [category, c] : by_category_) {
      out += "  " + category + ": " + std::to_string(c.first) + "\n";
      for (const auto& w : c.second) out += "      " + w + "\n";
    }
    return out;
  }

 private:
  std::map<std::string, std::pair<int, std::vector<std::string>>> by_category_;
  int total_ = 0;
};

std::string shown(const Input& in) { return in.subject + " [" + in.mutation + "] " + hostile::preview(in.body); }

class HostileClient : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = seed();
    std::cout << "hostile client seed " << seed_ << " (NODEHA_HOSTILE_SEED=" << seed_ << " repeats this run)\n";
    RecordProperty("seed", std::to_string(seed_));
    observer_ = nats_.client();
    ASSERT_TRUE(observer_);
    // With automatic recovery and its lease desk (ctl.<node>.lease), which are fed garbage too.
    controller_ = std::make_unique<HostProcess>(host_tables("controller", "ctl", nats_.url()) + controller_plugin_tables() +
                                                "[[plugin]]\nlibrary = \"recovery\"\nenabled = true\n"
                                                "[[plugin.fence]]\nmethod = \"lease\"\n[[plugin.fence]]\nmethod = \"ack\"\n");
    for (int n = 1; n <= kNodes; ++n) {
      std::string path = files_.write(node_name(n) + ".xml", node_file(n));
      agents_.push_back(std::make_unique<HostProcess>(
          host_tables("agent", node_name(n), nats_.url()) + "[libvirt]\nuri = \"test://" + path + "\"\n"
          "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\ndisk_path = \"/\"\n"
          "[[plugin]]\nlibrary = \"vms\"\nsync_every = \"300ms\"\nstop_timeout = \"0s\"\n"
          "[[plugin]]\nlibrary = \"migrate\"\n"));
      world_.nodes.push_back(node_name(n));
      for (int i = 0; i < kVmsPerNode; ++i) {
        world_.vms.push_back(vm_uuid(n, i));
        world_.vm_names.push_back(vm_name(n, i));
      }
    }
    ASSERT_TRUE(controller_->wait_ready()) << controller_->log();
    for (auto& a : agents_) ASSERT_TRUE(a->wait_ready()) << a->log();
    ASSERT_TRUE(wait_until([&] { return settled(); }, 30s)) << controller_->log();
    before_ = snapshot();
    ASSERT_TRUE(observer_->subscribe("nodeha.evt.>", "", [this](Message m) {
      std::lock_guard lock(mu_);
      events_.push_back(m.subject + " " + hostile::preview(m.data, 120));
    }).is_ok());
    sampler_ = std::thread([this] { sample(); });
    hostile_ = std::make_unique<RawNatsClient>(nats_.url());
    ASSERT_TRUE(hostile_->connected());
  }

  void TearDown() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (sampler_.joinable()) sampler_.join();
  }

  // Every node normal, every VM recorded on its node, every agent listing its VMs running.
  bool settled() {
    for (int n = 1; n <= kNodes; ++n) {
      auto rec = observer_->kv_get("nodes", node_name(n));
      if (!rec || json::parse(rec->value).value("monitor", "") != "normal") return false;
      auto doms = domains(node_name(n));
      for (int i = 0; i < kVmsPerNode; ++i) {
        auto vm = observer_->kv_get("vms", vm_uuid(n, i));
        if (!vm || json::parse(vm->value).value("node", "") != node_name(n) || doms[vm_uuid(n, i)] != "running")
          return false;
      }
    }
    return true;
  }

  // The agent's domains as it reports them (uuid -> state); the test driver's domains live in it.
  std::map<std::string, std::string> domains(const std::string& node) {
    std::map<std::string, std::string> out;
    auto r = observer_->request("nodeha.agent." + node + ".vm.list", "{}", 3s);
    if (!r) return out;
    auto j = json::parse(r.value(), nullptr, false);
    if (j.is_object() && j.value("ok", false))
      for (const auto& v : j["result"]["vms"]) out[v["uuid"]] = v["state"];
    return out;
  }

  // bucket -> key -> record, without what moves on its own: a node's last_heartbeat is refreshed
  // and its disk use follows the test machine's root file system (node_record.h).
  std::map<std::string, std::map<std::string, std::string>> snapshot() {
    std::map<std::string, std::map<std::string, std::string>> out;
    for (const char* bucket : {"nodes", "vms", "tasks"}) {
      auto all = observer_->kv_list(bucket);
      if (!all) {
        out[bucket]["<unreadable>"] = all.status().message();
        continue;
      }
      for (const auto& e : all.value()) {
        auto j = json::parse(e.value, nullptr, false);
        if (std::string(bucket) == "nodes" && j.is_object()) {
          j.erase("last_heartbeat");
          if (j.contains("use") && j["use"].is_object()) j["use"].erase("disk_gib");
        }
        out[bucket][e.key] = j.is_discarded() ? e.value : j.dump();
      }
    }
    return out;
  }

  // The controller's and agents' bus gauge, every 100 ms until the test ends.
  void sample() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      lock.unlock();
      std::vector<std::string> bad;
      auto check = [&](const std::string& who, const HostProcess& h) {
        double v = h.metric("nodeha_bus_connected");
        if (v != 1) bad.push_back(who + " nodeha_bus_connected=" + std::to_string(v));
      };
      check("controller", *controller_);
      for (size_t i = 0; i < agents_.size(); ++i) check(node_name(static_cast<int>(i) + 1), *agents_[i]);
      lock.lock();
      ++samples_;
      for (auto& b : bad)
        if (disconnects_.size() < kShown) disconnects_.push_back(std::move(b));
      cv_.wait_for(lock, 100ms, [this] { return stop_; });
    }
  }

  // Asserts that no message could act (the list is the test's own promise), then sends them.
  std::vector<RawReply> send_requests(const std::vector<Input>& inputs, const std::function<std::string(const Input&)>& could_act) {
    Findings unsafe;
    std::vector<RawRequest> requests;
    for (const auto& in : inputs) {
      if (auto why = could_act(in); !why.empty()) unsafe.add(in.subject, shown(in) + ": " + why);
      requests.push_back({"nodeha." + in.subject, in.body});
    }
    EXPECT_EQ(unsafe.total(), 0) << "the generator made messages that could act:\n" << unsafe.report();
    if (unsafe.total() > 0) return {};
    return hostile_->request_all(requests, kWindow, 5s);
  }

  // Every reply an error envelope; the failures by subject and by mutation.
  void expect_refused(const std::vector<Input>& inputs, const std::vector<RawReply>& replies, const std::string& what) {
    ASSERT_EQ(replies.size(), inputs.size());
    Findings by_subject, by_mutation;
    std::map<std::string, int> codes;
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto why = not_refused(replies[i]);
      if (why.empty()) {
        ++codes[json::parse(replies[i].data)["error"]["code"].get<std::string>()];
        continue;
      }
      by_subject.add(inputs[i].subject.substr(0, 60), shown(inputs[i]) + " -> " + why);
      std::string kind = why.substr(0, why.find(':'));
      by_mutation.add(kind + " / " + inputs[i].mutation, shown(inputs[i]));
    }
    // A responder that dies shows as the first unanswered request in send order; it and the
    // requests just before it (in flight with it) are the suspects.
    std::string suspects;
    for (size_t i = 0; i < inputs.size(); ++i)
      if (replies[i].kind != RawReply::Kind::Answer) {
        for (size_t j = i >= kWindow ? i - kWindow : 0; j <= i; ++j)
          if (inputs[j].body.size() > 4000 || inputs[j].mutation.find("hostile") != std::string::npos)
            suspects += "    #" + std::to_string(j) + " " + shown(inputs[j]) + "\n";
        suspects = "first unanswered: #" + std::to_string(i) + " " + shown(inputs[i]) + " (" + to_string(replies[i].kind) +
                   "); long or hostile ids sent in the window before it:\n" + suspects;
        break;
      }
    std::string tally;
    for (const auto& [code, n] : codes) tally += " " + code + "=" + std::to_string(n);
    std::cout << what << ": " << inputs.size() << " sent, refusals by code:" << tally << "\n";
    EXPECT_EQ(by_subject.total(), 0) << by_subject.total() << " of " << inputs.size() << " " << what
                                     << " got no error envelope.\nBy subject:\n" << by_subject.report()
                                     << "By reply and mutation:\n" << by_mutation.report() << suspects;
  }

  // What must hold after every attack, asserted one by one so a run names each broken promise.
  void expect_nothing_changed() {
    // Fresh heartbeats through the controller: at least one detection window (3 misses of 1 s)
    // has passed with the controller listening, so a node it lost sight of would show by now.
    double floor = controller_->metric("nodeha_heartbeats_received_total") + 5 * kNodes;
    EXPECT_TRUE(wait_until([&] { return controller_->metric("nodeha_heartbeats_received_total") >= floor; }, 15s))
        << "the controller stopped receiving heartbeats (bus_connected "
        << controller_->metric("nodeha_bus_connected") << ")\n" << tail(controller_->log());
    EXPECT_TRUE(controller_->process().running()) << tail(controller_->log());
    for (size_t i = 0; i < agents_.size(); ++i) EXPECT_TRUE(agents_[i]->process().running()) << tail(agents_[i]->log());
    {
      std::lock_guard lock(mu_);
      EXPECT_GT(samples_, 3) << "nodeha_bus_connected was hardly sampled";
      EXPECT_TRUE(disconnects_.empty()) << "a host lost its bus:\n" << testing::PrintToString(disconnects_);
      EXPECT_TRUE(events_.empty()) << events_.size() << " events, first: " << testing::PrintToString(
                                          std::vector<std::string>(events_.begin(), events_.begin() + std::min(events_.size(), kShown)));
    }
    EXPECT_EQ(hostile_->drops(), 0) << "the server dropped the hostile client: its traffic did not all arrive";

    auto list = hostile_->request_all({{"nodeha.cmd.node.list", "{}"}}, 1, 5s);
    auto nodes = json::parse(list[0].data, nullptr, false);
    ASSERT_TRUE(nodes.is_object() && nodes.value("ok", false)) << "node.list: " << to_string(list[0].kind) << " " << list[0].data;
    EXPECT_EQ(nodes["result"]["nodes"].size(), static_cast<size_t>(kNodes)) << hostile::preview(nodes.dump(), 400);
    for (const auto& n : nodes["result"]["nodes"])
      EXPECT_EQ(n.value("monitor", "") + "/" + n.value("management", ""), "normal/enabled")
          << hostile::preview(n.value("node", ""), 80) << ": " << hostile::preview(n.value("reason", ""), 120);

    auto after = snapshot();
    for (const auto& [bucket, records] : after)
      for (const auto& [key, value] : records) {
        auto was = before_[bucket].find(key);
        if (was == before_[bucket].end()) ADD_FAILURE() << bucket << ": new record " << hostile::preview(key, 80) << " = " << hostile::preview(value, 300);
        else EXPECT_EQ(value, was->second) << bucket << "/" << key << " changed";
      }
    for (const auto& [bucket, records] : before_)
      for (const auto& [key, value] : records)
        EXPECT_TRUE(after[bucket].count(key)) << bucket << "/" << key << " was removed";

    for (int n = 1; n <= kNodes; ++n) {
      auto doms = domains(node_name(n));
      for (int i = 0; i < kVmsPerNode; ++i) EXPECT_EQ(doms[vm_uuid(n, i)], "running") << vm_name(n, i) << " on " << node_name(n);
    }
  }

  static std::string tail(const std::string& log) { return log.size() > 3000 ? log.substr(log.size() - 3000) : log; }

  uint64_t seed_ = 0;
  NatsServer nats_;
  TempDir files_;
  std::unique_ptr<host::Bus> observer_;
  std::unique_ptr<HostProcess> controller_;
  std::vector<std::unique_ptr<HostProcess>> agents_;
  hostile::World world_;
  std::map<std::string, std::map<std::string, std::string>> before_;
  std::unique_ptr<RawNatsClient> hostile_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int samples_ = 0;
  std::vector<std::string> disconnects_, events_;
  std::thread sampler_;
};

TEST_F(HostileClient, MutatedCommandsAreAllRefusedAndChangeNothing) {
  hostile::Generator gen(seed_, world_);
  const auto& ops = hostile::command_ops();
  std::vector<Input> inputs;
  std::map<std::string, const hostile::Op*> op_of;
  // The request of issue 13 that once cut the controller off the bus, first, then 10,000 like it.
  for (const auto& op : ops)
    if (std::string(op.name) == "node.drain") {
      inputs.push_back({"cmd.node.drain", json{{"node", std::string(5000, 'x')}, {"dry_run", true}}.dump(), "issue 13"});
      op_of[inputs.back().subject] = &op;
    }
  ASSERT_EQ(inputs.size(), 1u);
  for (int i = 0; i < kCommandRequests; ++i) {
    const auto& op = ops[static_cast<size_t>(i) % ops.size()];
    inputs.push_back(gen.command(op));
    op_of[inputs.back().subject] = &op;
  }
  auto replies = send_requests(inputs, [&](const Input& in) { return hostile::could_act(*op_of[in.subject], in.body, world_); });
  ASSERT_NO_FATAL_FAILURE(expect_refused(inputs, replies, "command requests"));
  expect_nothing_changed();
}

// "hb.<node>" -> heartbeat_could_act, "check.<node>.<name>" -> check_could_act; pings take anything.
std::string bus_message_could_act(const Input& in) {
  if (in.subject.rfind("hb.", 0) == 0) return hostile::heartbeat_could_act(in.subject.substr(3), in.body);
  if (in.subject.rfind("check.", 0) == 0) {
    auto dot = in.subject.find('.', 6);
    return hostile::check_could_act(in.subject.substr(6, dot - 6), in.subject.substr(dot + 1), in.body);
  }
  return "";
}

TEST_F(HostileClient, GarbageOnHeartbeatCheckAndAgentSubjectsChangesNothing) {
  hostile::Generator gen(seed_ + 1, world_);
  std::vector<Input> garbage;
  for (int i = 0; i < kBusGarbage; ++i) {
    const std::string& node = world_.nodes[static_cast<size_t>(i) % world_.nodes.size()];
    switch (i % 6) {
      case 0: garbage.push_back(gen.heartbeat(node)); break;
      case 1: garbage.push_back(gen.heartbeat(i % 4 == 1 ? "ghost-" + std::to_string(i) : gen.hostile_token())); break;
      case 2: garbage.push_back(gen.check(node, i % 4 == 0 ? "netcheck" : "ghost-check")); break;
      case 3: garbage.push_back(gen.check(node, gen.hostile_token())); break;
      case 4: garbage.push_back(gen.check(gen.hostile_token(), "netcheck")); break;
      default: garbage.push_back(gen.garbage("agent." + node + ".ping")); break;
    }
  }
  Findings unsafe, unsent;
  int heartbeats = 0;
  for (const auto& in : garbage)
    if (auto why = bus_message_could_act(in); !why.empty()) unsafe.add(in.subject.substr(0, 40), shown(in) + ": " + why);
  ASSERT_EQ(unsafe.total(), 0) << "the generator made messages that could act:\n" << unsafe.report();
  double rejected = controller_->metric("nodeha_heartbeats_rejected_total");
  for (const auto& in : garbage) {
    natsStatus s = hostile_->publish("nodeha." + in.subject, in.body);
    if (s != NATS_OK) unsent.add(natsStatus_GetText(s), shown(in));
    heartbeats += s == NATS_OK && in.subject.rfind("hb.", 0) == 0;
  }
  ASSERT_TRUE(hostile_->flush());
  EXPECT_EQ(unsent.total(), 0) << "not sent:\n" << unsent.report();
  // Every garbage heartbeat is counted as refused; one that was taken leaves the count short.
  EXPECT_TRUE(wait_until([&] { return controller_->metric("nodeha_heartbeats_rejected_total") >= rejected + heartbeats; }, 10s))
      << "of " << heartbeats << " garbage heartbeats the controller refused "
      << controller_->metric("nodeha_heartbeats_rejected_total") - rejected << "\n" << tail(controller_->log());

  const auto& ops = hostile::agent_ops();
  std::vector<Input> inputs;
  std::map<std::string, const hostile::Op*> op_of;
  for (int i = 0; i < kAgentRequests; ++i) {
    const auto& op = ops[static_cast<size_t>(i / kNodes) % ops.size()];
    inputs.push_back(gen.agent(op, world_.nodes[static_cast<size_t>(i % kNodes)]));
    op_of[inputs.back().subject] = &op;
  }
  // The controller's record desks, where agents write (record_desk.h), and its lease desk
  // (fence_lease.h): garbage on each node's.
  for (int i = 0; i < kDeskGarbage; ++i) {
    const std::string& node = world_.nodes[static_cast<size_t>(i) % world_.nodes.size()];
    inputs.push_back(gen.garbage("ctl." + node + (i % 3 == 0 ? ".vm.write" : i % 3 == 1 ? ".task.report" : ".lease")));
  }
  auto desk_could_act = [](const Input& in) -> std::string {
    desk::VmWrite w;
    desk::TaskReport r;
    if (in.subject.ends_with(".lease")) return lease::decode_renewal(in.body) ? "decodes as a lease renewal" : "";
    bool writes = in.subject.ends_with(".vm.write");
    return (writes ? desk::decode(in.body, &w) : desk::decode(in.body, &r)) ? "" : "decodes as a desk request";
  };
  for (const auto& in : inputs) {
    if (!op_of.count(in.subject)) {
      ASSERT_EQ(desk_could_act(in), "") << shown(in);
    }
  }
  auto replies = send_requests(inputs, [&](const Input& in) {
    return op_of.count(in.subject) ? hostile::could_act(*op_of[in.subject], in.body, world_) : desk_could_act(in);
  });
  ASSERT_NO_FATAL_FAILURE(expect_refused(inputs, replies, "agent requests"));
  expect_nothing_changed();
}

TEST_F(HostileClient, ForeignReplySubjectsGetNoCommandPublished) {
  // A bystander listening on subjects where a reply must never land: commands that act.
  std::mutex seen_mu;
  std::vector<std::string> seen;
  RawNatsClient victim(nats_.url(), "victim");  // after what its handler uses: it goes first
  for (const char* s : {"nodeha.cmd.node.drain", "nodeha.cmd.node.enable", "nodeha.cmd.node.disable",
                        "nodeha.cmd.node.rebuild", "nodeha.cmd.node.migrate", "nodeha.cmd.node.maintenance", "nodeha.cmd.task.cancel",
                        "nodeha.cmd.sched.hold", "nodeha.agent.*.vm.stop", "nodeha.agent.*.vm.start",
                        "nodeha.agent.*.vm.define", "nodeha.agent.*.vm.undefine", "nodeha.agent.*.drain",
                        "nodeha.agent.*.vm.migrate", "nodeha.agent.*.vm.abort",
                        // A publish there is a KV write or a JetStream API call (delete a bucket); no
                        // host writes that task or deletes or purges a stream by itself. A reply
                        // written into node-1's record would show in expect_nothing_changed.
                        "$KV.tasks.0123456789abcdef", "$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>"})
    ASSERT_TRUE(victim.subscribe(s, [&](const std::string& subject, const std::string& data) {
      std::lock_guard lock(seen_mu);
      seen.push_back(subject + " <- " + hostile::preview(data, 100));
    }));
  const std::vector<std::string> reply_to = {
      "nodeha.cmd.node.drain", "nodeha.cmd.node.disable", "nodeha.cmd.task.cancel", "nodeha.agent.node-1.vm.stop",
      "nodeha.agent.node-2.drain", "nodeha.agent.node-3.vm.undefine", "nodeha.agent.*.vm.stop", "nodeha.agent.>",
      "nodeha.cmd.>", "_INBOX.>", "_INBOX.*", ">", "_INBOX.victim.1", "$KV.nodes.node-1", "$KV.tasks.0123456789abcdef",
      "$JS.API.STREAM.DELETE.KV_nodes", "$JS.API.STREAM.PURGE.KV_vms"};
  // Questions to responders that only read; their answers are what would land on the victims.
  std::vector<RawRequest> asks = {{"nodeha.cmd.node.list", "{}"},
                                  {"nodeha.cmd.node.show", R"({"node":"node-1"})"},
                                  {"nodeha.cmd.node.show", R"({"node":"ghost-1"})"},
                                  {"nodeha.cmd.vm.list", "{}"},
                                  {"nodeha.cmd.task.list", "{}"},
                                  {"nodeha.cmd.task.show", R"({"task":"0123456789abcdef"})"}};
  for (const auto& n : world_.nodes)
    for (const char* op : {"vm.list", "ping", "migrate.target"})
      asks.push_back({"nodeha.agent." + n + "." + op, std::string(op) == "migrate.target" ? R"({"network":"management"})" : "{}"});
  Findings unsent;
  for (int i = 0; i < kForeignReplies; ++i) {
    const auto& ask = asks[static_cast<size_t>(i) % asks.size()];
    const auto& reply = reply_to[(static_cast<size_t>(i) / asks.size()) % reply_to.size()];
    if (natsStatus s = hostile_->publish(ask.subject, ask.body, reply); s != NATS_OK)
      unsent.add(reply + ": " + natsStatus_GetText(s), ask.subject);
  }
  std::cout << "foreign reply subjects: " << kForeignReplies - unsent.total() << " of " << kForeignReplies
            << " sent; refused locally by cnats:\n" << unsent.report();
  // Each responder answers these last: once they are answered, the earlier ones were handled.
  auto sentinels = hostile_->request_all(asks, kWindow, 5s);
  for (size_t i = 0; i < asks.size(); ++i)
    EXPECT_EQ(sentinels[i].kind, RawReply::Kind::Answer) << asks[i].subject << ": " << to_string(sentinels[i].kind);
  ASSERT_TRUE(victim.flush());
  {
    std::lock_guard lock(seen_mu);
    EXPECT_TRUE(seen.empty()) << seen.size() << " replies were published on command subjects, first: "
                              << testing::PrintToString(std::vector<std::string>(seen.begin(), seen.begin() + std::min(seen.size(), kShown)));
  }
  expect_nothing_changed();
}

}  // namespace
}  // namespace nodeha::test
