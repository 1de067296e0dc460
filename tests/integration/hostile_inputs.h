// Hostile inputs for hostile_client_test.cpp: mutated requests for every command and agent
// subject, garbage heartbeats and check verdicts. Each is invalid by construction: a correct
// product refuses it. Apart from the generator, `could_act` and its siblings say whether a message
// could change anything if a product accepted it, so a test can prove that it sent none that
// would (a drain of a real node, a complete domain, a well-formed heartbeat...).
//
// Pure: a seed and the cluster's ids in, messages out; the same seed gives the same messages.
#pragma once

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace nodeha::test::hostile {

// The cluster's real ids: what no acting request may name.
struct World {
  std::vector<std::string> nodes;     // node ids
  std::vector<std::string> vms;       // VM uuids
  std::vector<std::string> vm_names;  // domain names
};

struct Input {
  std::string subject;   // without the "nodeha." prefix
  std::string body;
  std::string mutation;  // what makes it invalid ("hostile id", "truncated json", ...)
};

enum class Kind { NodeId, VmUuid, TaskId, PlanId, Bool, DryRun, Int, Number, String, Array, Object, Xml };

struct Field {
  const char* name;
  Kind kind;
  bool required = false;
  double min = -std::numeric_limits<double>::infinity();  // numbers: the accepted range
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;
};

struct Op {
  const char* name;  // "node.drain" (cmd.<name>) or "vm.stop" (agent.<node>.<name>)
  std::vector<Field> fields;
  bool acts;            // a request it accepts may change something
  bool refuses_strays;  // the body of well-formed values naming nothing real is refused (unknown_node, ...)
};

// Every subject the controller serves under cmd.*, and every agent request subject but ping.
const std::vector<Op>& command_ops();
const std::vector<Op>& agent_ops();

// Whether `raw` (JSON text) is a value `f` takes by the strict rules (type, id form, range).
bool field_takes(const Field& f, const std::string& raw);

// The strict id forms of issue 13: a DNS label; a canonical (lower-case) uuid; 16 hex digits.
bool valid_node_id(const std::string& s);
bool valid_vm_uuid(const std::string& s);
bool valid_task_id(const std::string& s);
bool valid_plan_id(const std::string& s);  // 32 hex digits (plugins/tasks/plan_id.h)

class Generator {
 public:
  // At most `oversize` messages of ~900 KiB over the generator's life.
  Generator(uint64_t seed, World world, int oversize = 24);

  Input command(const Op& op);                                 // on cmd.<op>
  Input agent(const Op& op, const std::string& node);          // on agent.<node>.<op>
  Input heartbeat(const std::string& subject_node);            // on hb.<subject_node>
  Input check(const std::string& node, const std::string& name);  // on check.<node>.<name>
  // Garbage for a subject that takes anything (agent ping): random bytes, deep nesting, oversize.
  Input garbage(const std::string& subject);
  // A subject token nats-server routes but no node may be named: long, unicode, control chars.
  std::string hostile_token();
  std::mt19937_64& rng() { return rng_; }

 private:
  Input request(const Op& op, const std::string& subject, bool agent);
  std::string hostile_id();
  std::string stray(Kind k);
  std::string near_real();
  std::string deep(bool arrays);
  std::string wrong_type(const Field& f);
  std::string random_bytes(size_t n);
  bool take_oversize();
  size_t pick(size_t n);

  std::mt19937_64 rng_;
  World world_;
  int oversize_left_;
};

// Why `body` on `op` could change something if the product accepted it; "" when it could not:
// it does not parse as an object of the op's fields with the right types and ranges, or it is a
// dry run, and it names no real node, VM or domain.
std::string could_act(const Op& op, const std::string& body, const World& world);
// The same for a heartbeat on hb.<subject_node> (a well-formed one for that node could) and a
// verdict on check.<node>.<name> (one whose name and ok are readable, for that node and check).
std::string heartbeat_could_act(const std::string& subject_node, const std::string& body);
std::string check_could_act(const std::string& node, const std::string& name, const std::string& body);

// A request body as raw JSON text per key, so that numbers and nesting go out exactly as written.
using Body = std::vector<std::pair<std::string, std::string>>;
std::string render(const Body& body);
std::string quote(const std::string& s);  // a JSON string literal

// A printable, bounded rendering of a body for failure messages.
std::string preview(const std::string& body, size_t max = 160);

}  // namespace nodeha::test::hostile
