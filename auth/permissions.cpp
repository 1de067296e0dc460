#include "permissions.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <regex>

namespace nodeha::auth {
namespace {

// Every KV bucket the plugins use (heartbeat/tasks: nodes, vms: vms, tasks: tasks and task_steps, the plans of
// dry runs: plans).
constexpr const char* kBuckets[] = {"nodes", "vms", "tasks", "task_steps", "plans"};

// JetStream API calls cnats makes to bind a bucket, get keys and watch (an ordered consumer
// with flow control; it finds the stream by name first), and only for bucket `b`.
void kv_read(Permissions& p, const std::string& b) {
  const std::string s = "KV_" + b;
  for (const auto& subject : {"$JS.API.STREAM.INFO." + s, "$JS.API.STREAM.MSG.GET." + s, "$JS.API.DIRECT.GET." + s,
                              "$JS.API.DIRECT.GET." + s + ".>", "$JS.API.CONSUMER.CREATE." + s,
                              "$JS.API.CONSUMER.CREATE." + s + ".>", "$JS.API.CONSUMER.INFO." + s + ".*",
                              "$JS.API.CONSUMER.DELETE." + s + ".*", "$JS.FC." + s + ".>", std::string("$JS.API.STREAM.NAMES")})
    if (std::find(p.publish.begin(), p.publish.end(), subject) == p.publish.end()) p.publish.push_back(subject);
}
void kv_write(Permissions& p, const std::string& b) { p.publish.push_back("$KV." + b + ".>"); }
std::string events_stream(const std::string& prefix) {
  std::string name = prefix;
  for (auto& c : name) c = (c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));  // as the host names it
  return name + "_EVENTS";
}

void kv_create(Permissions& p, const std::string& b) { p.publish.push_back("$JS.API.STREAM.CREATE.KV_" + b); }

std::string quoted_list(const std::vector<std::string>& items, const char* indent) {
  std::string out;
  for (const auto& i : items) out += fmt::format("{}\"{}\"\n", indent, i);
  return out;
}

}  // namespace

const char* role_name(Role r) {
  switch (r) {
    case Role::kAgent: return "agent";
    case Role::kController: return "controller";
    case Role::kAdmin: return "admin";
    case Role::kViewer: return "viewer";
  }
  return "?";
}

Status check_identity_name(const std::string& name) {
  static const std::regex kLabel("[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?");
  if (std::regex_match(name, kLabel)) return Status::ok();
  return Status(NODEHA_ERR_INVALID,
                fmt::format("bad identity name '{}': use a DNS label, [A-Za-z0-9]([A-Za-z0-9_-]{{0,61}}[A-Za-z0-9])?",
                            name.size() > 80 ? name.substr(0, 80) + "..." : name));
}

std::string inbox_prefix_for(const std::string& name) { return "_INBOX_" + name; }

Permissions permissions_for(const Identity& id, const std::string& prefix) {
  const std::string p = prefix + ".";
  const std::string& n = id.name;
  Permissions out;
  out.subscribe.push_back(inbox_prefix_for(n) + ".>");
  switch (id.role) {
    case Role::kAgent:
      // Its own heartbeats and checks; its own record desks (record_desk.h: the controller
      // writes the vms and tasks buckets for it, only what this node may, and relays its VM
      // events as said by this node); and the read-only vm.list of a VM's previous owner, which
      // the vms plugin asks before claiming a copy. It reads the buckets and writes none.
      out.publish = {p + "hb." + n, p + "check." + n + ".*", p + "ctl." + n + ".>", p + "agent.*.vm.list"};
      out.subscribe.insert(out.subscribe.end(), {p + "agent." + n + ".>", p + "check." + n + ".*"});
      kv_read(out, "nodes");
      kv_read(out, "vms");
      out.allow_responses = true;
      break;
    case Role::kController:
      out.publish = {p + "cmd.>", p + "agent.>", p + "evt.>"};
      out.subscribe.insert(out.subscribe.end(), {p + "cmd.>", p + "ctl.>", p + "hb.*", p + "check.*.*", p + "evt.>"});
      for (const char* b : kBuckets) {
        kv_read(out, b);
        kv_write(out, b);
        kv_create(out, b);
      }
      // The leader lease (host/src/lease.h): controllers only.
      kv_read(out, "controllers");
      kv_write(out, "controllers");
      kv_create(out, "controllers");
      // The audit stream of evt.> (host.cpp, keep_event_stream): <PREFIX>_EVENTS.
      for (const char* op : {"INFO", "CREATE"}) out.publish.push_back(fmt::format("$JS.API.STREAM.{}.{}", op, events_stream(prefix)));
      out.allow_responses = true;
      break;
    case Role::kAdmin:
    case Role::kViewer:
      if (id.role == Role::kAdmin)
        out.publish = {p + "cmd.>"};
      else
        out.publish = {p + "cmd.node.list", p + "cmd.node.show", p + "cmd.task.list", p + "cmd.task.show", p + "cmd.vm.list"};
      out.subscribe.push_back(p + "evt.>");
      // History (docs/operations.md): one event at a time from the events stream, answered to the
      // requester's own inbox. No consumer: its deliver subject would be the creator's to choose.
      for (const char* api : {"$JS.API.STREAM.MSG.GET.", "$JS.API.STREAM.INFO."}) out.publish.push_back(api + events_stream(prefix));
      for (const char* b : kBuckets) kv_read(out, b);
      kv_read(out, "controllers");  // who leads, under which epoch
      break;
  }
  return out;
}

std::string server_auth_config(const std::vector<UserEntry>& users, const std::string& prefix, const ServerTls& tls,
                               const WebsocketListener& websocket) {
  std::string out = fmt::format(
      "# nodeha bus authorization for subject prefix \"{}\", made by `nodeha auth init`.\n"
      "# Include it from the nats-server config (config/nats/nats-server.conf); docs/security.md says\n"
      "# what each identity may do. Only public keys here: the secrets are in the credential files.\n"
      "# Handshake and login time limits: generous, for a loaded hypervisor or a slow link.\n"
      "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 5\n}}\n\nauthorization {{\n  timeout: 5\n  users = [\n",
      prefix, tls.cert_file, tls.key_file);
  for (const auto& u : users) {
    Permissions p = permissions_for(u.identity, prefix);
    out += fmt::format("    # {} {}\n    {{\n      nkey: \"{}\"\n      permissions: {{\n", role_name(u.identity.role),
                       u.identity.name, u.public_key);
    out += "        publish: { allow: [\n" + quoted_list(p.publish, "          ") + "        ] }\n";
    out += "        subscribe: { allow: [\n" + quoted_list(p.subscribe, "          ") + "        ] }\n";
    if (p.allow_responses) out += "        allow_responses: true\n";
    out += "      }\n    }\n";
  }
  out += "  ]\n}\n";
  if (websocket.port > 0) {
    // Browsers: TLS always (no no_tls), the users above (no auth override in the block).
    out += fmt::format("\n# The web page's browsers (docs/security.md).\nwebsocket {{\n  port: {}\n"
                       "  tls {{\n    cert_file: \"{}\"\n    key_file: \"{}\"\n  }}\n  handshake_timeout: \"5s\"\n",
                       websocket.port, tls.cert_file, tls.key_file);
    if (!websocket.allowed_origins.empty())
      out += "  allowed_origins: [\n" + quoted_list(websocket.allowed_origins, "    ") + "  ]\n";
    out += "}\n";
  }
  return out;
}

}  // namespace nodeha::auth
