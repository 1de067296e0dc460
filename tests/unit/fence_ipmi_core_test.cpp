// The fence_ipmi plugin's pure parts: its bmc table, the argv it gives ipmitool, and how it reads
// ipmitool's answers (the stderr texts below are ipmitool 1.8.19's against ipmi_sim).
#include "bmc_table.h"
#include "fence_loop.h"
#include "fence_request.h"
#include "ipmitool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::fence_ipmi {
namespace {

using json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

json entry() { return {{"node", "node-a"}, {"address", "10.0.0.1"}, {"user", "admin"}, {"password_file", "/etc/pw"}}; }

std::string refusal(const json& table) {
  auto r = parse_bmcs(table);
  return r ? "accepted" : r.status().message();
}

TEST(BmcTable, DefaultsAndEveryField) {
  auto e = entry();
  auto r = parse_bmcs(json::array({e}));
  ASSERT_TRUE(r) << r.status().message();
  const Bmc& b = r->at("node-a");
  EXPECT_EQ(b.port, 623);
  EXPECT_EQ(b.interface, "lanplus");
  EXPECT_FALSE(b.cipher_suite);
  e["node"] = "node-b";
  e["port"] = 9001;
  e["interface"] = "lan";
  auto both = parse_bmcs(json::array({entry(), e}));
  ASSERT_TRUE(both);
  EXPECT_EQ(both->size(), 2u);
  EXPECT_EQ(both->at("node-b").port, 9001);
  EXPECT_TRUE(parse_bmcs(json::array()));
}

TEST(BmcTable, EachBadEntryIsNamedWithItsField) {
  auto with = [](const char* k, json v) {
    auto e = entry();
    if (v.is_null()) e.erase(k);
    else e[k] = v;
    auto other = entry();
    other["node"] = "node-z";
    return json::array({other, e});
  };
  EXPECT_EQ(refusal(json::object()), "bmc: must be an array of tables ([[plugin.bmc]] or bmc = [{...}])");
  EXPECT_THAT(refusal(json::array({1})), HasSubstr("bmc[0]: must be a table"));
  EXPECT_THAT(refusal(with("node", nullptr)), HasSubstr("bmc[1]: field \"node\" is missing"));
  EXPECT_THAT(refusal(with("node", "-bad-")), HasSubstr("bmc[1]: field \"node\": \"-bad-\" is not a node id"));
  EXPECT_THAT(refusal(with("node", 7)), HasSubstr("bmc[1]: field \"node\": must be a string, got 7"));
  EXPECT_THAT(refusal(with("port", 70000)), HasSubstr("bmc[1] (node-a): field \"port\": must be an integer from 1 to 65535, got 70000"));
  EXPECT_THAT(refusal(with("port", "623")), HasSubstr("field \"port\""));
  EXPECT_THAT(refusal(with("address", "-oProxy")), HasSubstr("field \"address\""));
  EXPECT_THAT(refusal(with("address", "a b")), HasSubstr("field \"address\""));
  EXPECT_THAT(refusal(with("user", "")), HasSubstr("field \"user\""));
  EXPECT_THAT(refusal(with("user", "seventeen-chars-x")), HasSubstr("field \"user\""));
  EXPECT_THAT(refusal(with("password_file", "pw")), HasSubstr("field \"password_file\": must be an absolute path"));
  EXPECT_THAT(refusal(with("interface", "serial")), HasSubstr("field \"interface\""));
  EXPECT_THAT(refusal(with("cipher_suite", 18)), HasSubstr("field \"cipher_suite\""));
  EXPECT_THAT(refusal(with("password", "secret")), HasSubstr("bmc[1] (node-a): unknown field \"password\""));
  EXPECT_THAT(refusal(json::array({entry(), entry()})), HasSubstr("bmc[1] (node-a): node node-a already has a BMC in bmc[0]"));
  auto lan = entry();
  lan["interface"] = "lan";
  lan["cipher_suite"] = 3;
  EXPECT_THAT(refusal(json::array({lan})), HasSubstr("only the lanplus interface takes one"));
}

TEST(Ipmitool, ArgvCarriesThePasswordFileNeverThePassword) {
  Bmc b{"node-a", "10.0.0.1", 6230, "admin", "/etc/pw", "lanplus", 3};
  EXPECT_THAT(ipmitool_argv("/usr/bin/ipmitool", b, "off"),
              ElementsAre("/usr/bin/ipmitool", "-I", "lanplus", "-C", "3", "-H", "10.0.0.1", "-p", "6230", "-U", "admin",
                          "-f", "/etc/pw", "-R", "1", "-N", "1", "-v", "chassis", "power", "off"));
  b.cipher_suite.reset();
  b.interface = "lan";
  auto argv = ipmitool_argv("ipmitool", b, "status");
  EXPECT_EQ(argv[2], "lan");
  EXPECT_EQ(argv[3], "-H");
  EXPECT_EQ(argv.back(), "status");
}

TEST(Ipmitool, ReadsThePowerState) {
  EXPECT_EQ(parse_power("Chassis Power is off\n"), Power::kOff);
  EXPECT_EQ(parse_power("Chassis Power is on\n"), Power::kOn);
  EXPECT_EQ(parse_power(""), Power::kUnknown);
  EXPECT_EQ(parse_power("Chassis Power Control: Down/Off\n"), Power::kUnknown);
}

TEST(Ipmitool, ToldARefusedLoginFromASilentBmc) {
  const char* wrong_password = "Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n";
  const char* wrong_user = "RAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2 / RMCP+ session\n";
  const char* wrong_suite = "Error in open session response message : invalid authentication algorithm\n"
                            "Error: Unable to establish IPMI v2 / RMCP+ session\n";
  const char* silent = "Loading IANA PEN Registry...\nGet Auth Capabilities error\nError issuing Get Channel Authentication "
                       "Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session\n";
  EXPECT_EQ(classify(wrong_password), Failure::kRefused);
  EXPECT_EQ(classify(wrong_user), Failure::kRefused);
  EXPECT_EQ(classify(wrong_suite), Failure::kRefused);
  EXPECT_EQ(classify(silent), Failure::kNoAnswer);
  EXPECT_EQ(classify("Invalid chassis power command: x"), Failure::kOther);
  EXPECT_EQ(trim_stderr(wrong_password), "RAKP 2 HMAC is invalid; Error: Unable to establish IPMI v2 / RMCP+ session");
  EXPECT_EQ(trim_stderr(std::string(1000, 'x'), 10), "xxxxxxxxxx...");
}

std::string refused_request(const std::string& body) {
  FenceRequest r;
  auto e = decode_fence_request(body, Millis(10000), &r);
  return e ? e->code : "accepted";
}

TEST(FenceRequest, StrictWithDefaults) {
  FenceRequest r;
  ASSERT_FALSE(decode_fence_request(R"({"node": "node-a"})", Millis(10000), &r));
  EXPECT_EQ(r.node->str(), "node-a");
  EXPECT_EQ(r.timeout, Millis(10000));
  ASSERT_FALSE(decode_fence_request(R"({"node": "node-a", "timeout_ms": 600000})", Millis(10000), &r));
  EXPECT_EQ(r.timeout, Millis(600000));
  EXPECT_EQ(refused_request(R"({"node": "node-a", "timeout_ms": 1})"), "accepted");
  EXPECT_EQ(refused_request("nope"), "bad_json");
  EXPECT_EQ(refused_request("{}"), "missing_field");
  EXPECT_EQ(refused_request(R"({"node": "node-a", "force": true})"), "unknown_field");
  EXPECT_EQ(refused_request(R"({"node": ["node-a"]})"), "bad_type");
  EXPECT_EQ(refused_request(R"({"node": "node a"})"), "bad_value");
  for (const char* t : {"0", "-1", "600001", "18446744073709551615", "9223372036854775808"}) {
    SCOPED_TRACE(t);
    EXPECT_EQ(refused_request(std::string(R"({"node": "node-a", "timeout_ms": )") + t + "}"), "bad_value");
  }
  EXPECT_EQ(refused_request(R"({"node": "node-a", "timeout_ms": 1e3})"), "bad_type");
}

// A BMC that answers from a script: each call takes the next answer; the deadline is a number of
// calls.
struct ScriptedBmc {
  std::vector<Try> answers;
  size_t budget = 100;  // calls before the deadline
  std::vector<std::string> calls;
  int pauses = 0;

  Outcome fence() {
    FenceSteps steps;
    steps.call = [&](const char* action) {
      calls.push_back(action);
      Try t = calls.size() <= answers.size() ? answers[calls.size() - 1] : answers.back();
      return t;
    };
    steps.time_left = [&] { return calls.size() < budget; };
    steps.pause = [&] { ++pauses; };
    return confirm_off(steps);
  }
};

Try answered(const char* out) { return {Try::kAnswered, out, ""}; }
Try silent() { return {Try::kNoAnswer, "", "did not answer"}; }

TEST(ConfirmOff, OffOnlyOnceTheStatusSaysOff) {
  ScriptedBmc bmc{{answered("Chassis Power Control: Down/Off\n"), answered("Chassis Power is on\n"),
                   answered("Chassis Power is off\n")}};
  auto out = bmc.fence();
  EXPECT_TRUE(out.off);
  EXPECT_EQ(out.detail, "Chassis Power Control: Down/Off; Chassis Power is off");
  EXPECT_THAT(bmc.calls, ElementsAre("off", "status", "status"));
  EXPECT_EQ(bmc.pauses, 1);  // none between off and the first look
}

TEST(ConfirmOff, StillOnAtTheDeadlineIsNotOff) {
  ScriptedBmc bmc{{answered("Chassis Power Control: Down/Off\n"), answered("Chassis Power is on\n")}, 5};
  auto out = bmc.fence();
  EXPECT_FALSE(out.off);
  EXPECT_THAT(out.why, HasSubstr("but the chassis still says on"));
  EXPECT_EQ(bmc.calls.size(), 5u);
}

TEST(ConfirmOff, ASilentBmcIsTriedAgainUntilTheDeadline) {
  ScriptedBmc bmc{{silent(), silent(), answered("Chassis Power Control: Down/Off\n"), answered("Chassis Power is off\n")}};
  EXPECT_TRUE(bmc.fence().off);
  EXPECT_THAT(bmc.calls, ElementsAre("off", "off", "off", "status"));

  ScriptedBmc never{{silent()}, 3};
  auto out = never.fence();
  EXPECT_FALSE(out.off);
  EXPECT_EQ(out.why, "did not answer");
  // The call the deadline cut short says less than the one before it.
  ScriptedBmc cut{{silent(), {Try::kNoAnswer, "", "cut short"}}, 2};
  EXPECT_EQ(cut.fence().why, "did not answer");
}

TEST(ConfirmOff, ARefusedLoginEndsAtOnce) {
  ScriptedBmc bmc{{{Try::kRefused, "", "RAKP 2 HMAC is invalid"}}};
  auto out = bmc.fence();
  EXPECT_FALSE(out.off);
  EXPECT_EQ(out.why, "RAKP 2 HMAC is invalid");
  EXPECT_EQ(bmc.calls.size(), 1u);
}

TEST(ConfirmOff, ARefusedPowerOffOfWhatIsOffIsOff) {
  ScriptedBmc bmc{{{Try::kFailed, "", "Unable to set Chassis Power Control to Down/Off"}, answered("Chassis Power is off\n")}};
  auto out = bmc.fence();
  EXPECT_TRUE(out.off);
  EXPECT_EQ(out.detail, "Chassis Power is off");
  // Refused while on: off again after the look, never a confirmation.
  Try refused{Try::kFailed, "", "refused"}, still_on = answered("Chassis Power is on\n");
  ScriptedBmc on{{refused, still_on, refused, still_on, refused, still_on}, 6};
  out = on.fence();
  EXPECT_FALSE(out.off);
  EXPECT_THAT(on.calls, ElementsAre("off", "status", "off", "status", "off", "status"));
}

TEST(ConfirmOff, NoTimeForAFirstTry) {
  ScriptedBmc bmc{{silent()}, 0};
  EXPECT_EQ(bmc.fence().why, "no time left for a first try");
  EXPECT_TRUE(bmc.calls.empty());
}

}  // namespace
}  // namespace nodeha::fence_ipmi
