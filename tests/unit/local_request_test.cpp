// The node-local socket's request, apart from the socket: where the line ends, and what it says.
#include "local_request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::host {
namespace {

using ::testing::HasSubstr;

TEST(LocalRequest, FramingWaitsForTheLineOrEof) {
  EXPECT_EQ(frame_local_request("", false).state, LocalFraming::kMore);
  EXPECT_EQ(frame_local_request("", true).state, LocalFraming::kMore);
  EXPECT_EQ(frame_local_request("{\"subj", false).state, LocalFraming::kMore);
  auto at_eof = frame_local_request("{}", true);
  EXPECT_EQ(at_eof.state, LocalFraming::kLine);
  EXPECT_EQ(at_eof.line, "{}");
  auto line = frame_local_request("{}\nmore\n", false);
  EXPECT_EQ(line.state, LocalFraming::kLine);
  EXPECT_EQ(line.line, "{}");
  EXPECT_EQ(frame_local_request("\n", false).line, "");
}

TEST(LocalRequest, FramingRefusesALineBeyondTheBound) {
  std::string big(kMaxLocalLine + 1, 'x');
  EXPECT_EQ(frame_local_request(big, false).state, LocalFraming::kTooLong);
  EXPECT_EQ(frame_local_request(big + "\n", false).state, LocalFraming::kTooLong);
  EXPECT_EQ(frame_local_request(big.substr(1) + "\n" + big, false).state, LocalFraming::kLine);
}

TEST(LocalRequest, ParsesSubjectAndData) {
  auto r = parse_local_request(R"({"subject":"local.drain","data":"{\"confirm\":true}"})");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->subject, "local.drain");
  EXPECT_EQ(r->data, R"({"confirm":true})");
  auto no_data = parse_local_request(R"({"subject":"local.status"})");
  ASSERT_TRUE(no_data.is_ok());
  EXPECT_EQ(no_data->data, "");
}

TEST(LocalRequest, RefusalsSayWhatIsWrong) {
  auto message = [](std::string_view line) {
    auto r = parse_local_request(line);
    EXPECT_FALSE(r.is_ok()) << line;
    EXPECT_EQ(r.status().code(), NODEHA_ERR_INVALID);
    return r.status().message();
  };
  EXPECT_EQ(message("not json"), "the request is not a JSON object");
  EXPECT_EQ(message("[1]"), "the request is not a JSON object");
  EXPECT_EQ(message("6e398"), "the request is not a JSON object");
  EXPECT_EQ(message(R"({"subject":"local.drain","x":1})"), R"(unknown field "x")");
  EXPECT_EQ(message(R"({"data":""})"), "'subject' must be a string");
  EXPECT_THAT(message(R"({"subject":"local.drain","data":{"confirm":true}})"), HasSubstr("'data' must be a string"));
}

}  // namespace
}  // namespace nodeha::host
