#include "compress/core/json_util.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "compress/core/error.h"

namespace slmc {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CheckedJson, RefusesDeepNestingBeforeBuildingIt) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  const std::string e = error_of([&] { (void)checked_json::parse(deep, "deep.json"); });
  EXPECT_NE(e.find("deep.json: nesting deeper than 128"), std::string::npos) << e;
  const std::string ok = std::string(100, '[') + std::string(100, ']');
  EXPECT_NO_THROW((void)checked_json::parse(ok, "ok.json"));
}

TEST(CheckedJson, RefusesDuplicateKeysAtAnyDepth) {
  EXPECT_NE(error_of([] { (void)checked_json::parse(R"({"a": 1, "a": 2})", "f.json"); })
                .find("f.json: duplicate key \"a\""),
            std::string::npos);
  EXPECT_NE(error_of([] { (void)checked_json::parse(R"({"x": {"b": 1, "c": {}, "b": 2}})", "f"); })
                .find("duplicate key \"b\""),
            std::string::npos);
  // The same key in sibling objects is fine.
  EXPECT_NO_THROW((void)checked_json::parse(R"([{"a": 1}, {"a": 2}])", "f"));
  EXPECT_NE(error_of([] { (void)checked_json::parse("{\"a\": ", "t.json"); }).find("t.json: not valid JSON"),
            std::string::npos);
}

TEST(CheckedJson, IntegersAreCheckedBeforeConversion) {
  using nlohmann::json;
  EXPECT_EQ(checked_json::get_int(json(7), "k", 0, 10), 7);
  EXPECT_EQ(checked_json::get_int(json(4096.0), "k", 0, 10000), 4096);
  EXPECT_NE(error_of([] { (void)checked_json::get_int(json(9.2e19), "cfg: n", 0, 4096); })
                .find("cfg: n = 9.2e+19 is outside [0, 4096]"),
            std::string::npos);
  EXPECT_NE(error_of([] { (void)checked_json::get_int(json(2.5), "n", 0, 9); }).find("not an integer"),
            std::string::npos);
  EXPECT_NE(error_of([] { (void)checked_json::get_int(json(uint64_t{18446744073709551615u}), "n", 0, 9); })
                .find("outside"),
            std::string::npos);
  EXPECT_NE(error_of([] { (void)checked_json::get_int(json(-1), "n", 0, 9); }).find("n = -1 is outside"),
            std::string::npos);
  EXPECT_NE(error_of([] { (void)checked_json::get_int(json("3"), "n", 0, 9); }).find("must be an integer, got \"3\""),
            std::string::npos);
  EXPECT_NE(error_of([] { (void)checked_json::get_number(json(NAN), "x", 0, 1); }).find("x = "),
            std::string::npos);
}

TEST(CheckedJson, ExcerptsAreBounded) {
  nlohmann::json big = nlohmann::json::array();
  for (int i = 0; i < 1000; ++i) big.push_back(i);
  EXPECT_EQ(checked_json::excerpt(big), "[array of 1000]");
  EXPECT_EQ(checked_json::excerpt(nlohmann::json(std::string(500, 'x'))).size(), 63u);
  EXPECT_EQ(checked_json::excerpt(nlohmann::json::parse("[1,2]")), "[1,2]");
}

}  // namespace
}  // namespace slmc
