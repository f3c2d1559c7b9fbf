#include "compress/io/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "compress/core/float16.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using testing::append_pod;
using testing::expect_error;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

// A safetensors file assembled by hand from the published layout: u64 little-endian N, N bytes of
// JSON, the data section. `pad` adds spaces so the data starts 8-byte aligned.
std::string make_file(std::string header, const std::string& data, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  std::string out;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

std::string floats(std::initializer_list<float> v) {
  std::string s;
  for (float f : v) append_pod(&s, f);
  return s;
}

HostTensor tensor(std::vector<int64_t> shape, std::vector<float> data) {
  HostTensor t;
  t.shape = std::move(shape);
  t.data = std::move(data);
  return t;
}

// Values that exercise rounding, subnormals, overflow and signs in the 16-bit formats.
const std::vector<float> kAwkward = {0.0f,  -0.0f,    1.0f / 3.0f, -2.5f,       65504.0f, 70000.0f,
                                     1e-7f, 6.1e-5f,  -1e-40f,     3.14159265f, 1e30f,    -1e-3f,
                                     0.1f,  123.456f, -65519.0f,   2.0e-8f,     1.0e-45f, 7.0f};

TEST(Safetensors, RoundTripF32KeepsValuesShapesAndMetadata) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  TensorMap in;
  in["a.weight"] = tensor({2, 3}, {1, -2, 3.5f, 4e-38f, 5, 6});
  in["b"] = tensor({5}, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f});
  in["scalar"] = tensor({}, {42.0f});
  in["empty"] = tensor({0, 4}, {});
  write_safetensors(path, in, DType::kF32, {{"format", "pt"}, {"note", "x"}});

  SafetensorsFile f(path);
  EXPECT_EQ(f.entries().size(), 4u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "x");
  for (const auto& kv : in) {
    ASSERT_TRUE(f.has(kv.first)) << kv.first;
    const HostTensor t = f.read(kv.first);
    EXPECT_EQ(t.shape, kv.second.shape) << kv.first;
    EXPECT_EQ(t.data, kv.second.data) << kv.first;
    EXPECT_EQ(t.source_dtype, DType::kF32);
  }
}

void expect_half_round_trip(DType dtype) {
  TempDir dir;
  const std::string path = dir.file("h.safetensors");
  TensorMap in;
  in["w"] = tensor({static_cast<int64_t>(kAwkward.size())}, kAwkward);
  in["m"] = tensor({3, 2}, {1, 2, 3, 4, 5, 6});
  write_safetensors(path, in, dtype);
  SafetensorsFile f(path);
  const bool bf = dtype == DType::kBF16;
  for (const auto& kv : in) {
    const HostTensor t = f.read(kv.first);
    EXPECT_EQ(t.source_dtype, dtype);
    ASSERT_EQ(t.data.size(), kv.second.data.size());
    const uint8_t* raw = f.raw(kv.first);
    for (size_t i = 0; i < t.data.size(); ++i) {
      const float x = kv.second.data[i];
      const uint16_t bits = bf ? f32_to_bf16(x) : f32_to_f16(x);
      uint16_t stored;
      std::memcpy(&stored, raw + 2 * i, 2);
      EXPECT_EQ(stored, bits) << kv.first << "[" << i << "] = " << x;
      const float expected = bf ? bf16_to_f32(bits) : f16_to_f32(bits);
      EXPECT_EQ(f32_to_bits(t.data[i]), f32_to_bits(expected)) << kv.first << "[" << i << "]";
    }
  }
}

TEST(Safetensors, RoundTripF16MatchesExactConverter) { expect_half_round_trip(DType::kF16); }
TEST(Safetensors, RoundTripBF16MatchesExactConverter) { expect_half_round_trip(DType::kBF16); }

TEST(Safetensors, WrittenBytesFollowThePublishedLayout) {
  TempDir dir;
  const std::string path = dir.file("layout.safetensors");
  TensorMap in;
  in["x"] = tensor({2}, {1.5f, -2.0f});
  in["y"] = tensor({1, 3}, {3, 4, 5});
  write_safetensors(path, in, DType::kF32, {{"format", "pt"}});
  const std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  EXPECT_EQ((8 + n) % 8, 0u) << "data section must start 8-byte aligned";
  ASSERT_EQ(bytes.size(), 8 + n + 5 * sizeof(float));
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  const size_t last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}') << "padding must be spaces after the JSON";
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j.at("__metadata__").at("format"), "pt");
  EXPECT_EQ(j.at("x").at("dtype"), "F32");
  EXPECT_EQ(j.at("x").at("shape"), nlohmann::json::array({2}));
  EXPECT_EQ(j.at("x").at("data_offsets"), nlohmann::json::array({0, 8}));  // map order: x first
  EXPECT_EQ(j.at("y").at("data_offsets"), nlohmann::json::array({8, 20}));
  EXPECT_EQ(bytes.substr(8 + n), floats({1.5f, -2.0f, 3, 4, 5}));
}

TEST(Safetensors, ReadsHandWrittenUnalignedFile) {
  // Unpadded header (data section not aligned), F16/BF16 bit patterns written by hand, an I32
  // tensor that is readable raw but not as floats.
  TempDir dir;
  const std::string path = dir.file("hand.safetensors");
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},)"
      R"("a":{"dtype":"F16","shape":[1,2],"data_offsets":[4,8]},)"
      R"("i":{"dtype":"I32","shape":[1],"data_offsets":[8,12]},)"
      R"("f":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})";
  std::string data;
  append_pod(&data, uint16_t{0x3F80});  // bf16 1.0
  append_pod(&data, uint16_t{0xC040});  // bf16 -3.0
  append_pod(&data, uint16_t{0x3C00});  // f16 1.0
  append_pod(&data, uint16_t{0xC500});  // f16 -5.0
  append_pod(&data, int32_t{7});
  append_pod(&data, 0.25f);
  write_bytes(path, make_file(header, data, /*pad=*/false));
  ASSERT_NE((8 + header.size()) % 4, 0u) << "fixture meant to be unaligned";

  SafetensorsFile f(path);
  EXPECT_EQ(f.read("b").data, (std::vector<float>{1.0f, -3.0f}));
  EXPECT_EQ(f.read("b").source_dtype, DType::kBF16);
  const HostTensor a = f.read("a");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(a.data, (std::vector<float>{1.0f, -5.0f}));
  EXPECT_EQ(f.read("f").data, (std::vector<float>{0.25f}));
  int32_t i = 0;
  std::memcpy(&i, f.raw("i"), 4);
  EXPECT_EQ(i, 7);
  EXPECT_EQ(f.entries().at("i").dtype, DType::kI32);
  expect_error([&] { f.read("i"); }, {path, "\"i\"", "I32"});
  expect_error([&] { f.read("nope"); }, {path, "no tensor", "nope"});
}

// ---- malformed files: each must be a one-line slmc::Error naming the file and the problem ----

class SafetensorsBad : public ::testing::Test {
 protected:
  void expect_bad(const std::string& bytes, std::initializer_list<std::string> words) {
    write_bytes(path_, bytes);
    std::vector<std::string> parts(words);
    parts.push_back(path_);
    try {
      SafetensorsFile f(path_);
      ADD_FAILURE() << "expected slmc::Error for " << path_;
    } catch (const Error& e) {
      const std::string msg = e.what();
      for (const std::string& p : parts)
        EXPECT_NE(msg.find(p), std::string::npos) << "message lacks \"" << p << "\": " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  TempDir dir_;
  std::string path_ = dir_.file("bad.safetensors");
};

TEST_F(SafetensorsBad, TruncatedBeforeHeaderLength) {
  expect_bad(std::string("\x10\x00\x00", 3), {"truncated", "3 bytes"});
  expect_bad("", {"truncated"});
}

TEST_F(SafetensorsBad, HeaderLengthBeyondFile) {
  std::string bytes =
      make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", floats({1}));
  bytes[0] = static_cast<char>(0xe8);  // N = 1000
  bytes[1] = 0x03;
  expect_bad(bytes, {"header length", "1000"});
  std::string huge(16, '\xff');  // N = 2^64 - 1
  expect_bad(huge, {"header length", "18446744073709551615"});
}

TEST_F(SafetensorsBad, OffsetsOutOfRange) {
  expect_bad(
      make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", floats({1, 2})),
      {"\"w\"", "out of range", "[4, 12]", "8 bytes"});
}

TEST_F(SafetensorsBad, TruncatedDataSection) {
  std::string bytes =
      make_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", floats({1, 2, 3, 4}));
  bytes.resize(bytes.size() - 3);
  expect_bad(bytes, {"\"w\"", "out of range", "truncated"});
}

TEST_F(SafetensorsBad, OverlappingOffsets) {
  expect_bad(make_file(R"({"p":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("q":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       floats({1, 2, 3})),
             {"overlap", "\"p\"", "\"q\""});
  // Same range twice is an overlap too.
  expect_bad(make_file(R"({"p":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("q":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                       floats({1})),
             {"overlap"});
}

TEST_F(SafetensorsBad, UnknownDtype) {
  expect_bad(make_file(R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})",
                       std::string(4, '\0')),
             {"\"w\"", "unknown dtype", "F8_E4M3"});
}

TEST_F(SafetensorsBad, ShapeTimesDtypeDiffersFromBytes) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", floats({1, 2})),
             {"\"w\"", "[3]", "12 bytes", "8 bytes"});
  expect_bad(make_file(R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,4]}})", floats({1})),
             {"\"w\"", "bytes"});
}

TEST_F(SafetensorsBad, ShapeProductOverflows) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],)"
                       R"("data_offsets":[0,4]}})",
                       floats({1})),
             {"\"w\"", "overflows"});
  // numel fits but numel * 4 does not.
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[4611686018427387904],)"
                       R"("data_offsets":[0,4]}})",
                       floats({1})),
             {"\"w\"", "bytes"});
}

TEST_F(SafetensorsBad, MalformedEntries) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", floats({1})),
             {"\"w\"", "shape[0] = -1 is outside"});
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", floats({1})),
             {"\"w\"", "shape[0] = 1.5 is not an integer"});
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", floats({1})),
             {"\"w\"", "shape must be an array"});
  expect_bad(make_file(R"({"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})", floats({1})),
             {"\"w\"", "dtype must be a string"});
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[1]}})", floats({1})),
             {"\"w\"", "missing 'data_offsets'"});
  expect_bad(make_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", floats({1})),
             {"\"w\"", "missing 'dtype'"});
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", floats({1})),
             {"\"w\"", "data_offsets"});
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", floats({1})),
             {"\"w\"", "begin after end"});
  expect_bad(make_file(R"({"w":[1,2]})", floats({1})), {"\"w\"", "must be an object"});
  expect_bad(make_file(R"({"__metadata__":{"k":1}})", ""), {"__metadata__", "\"k\"", "string"});
}

TEST_F(SafetensorsBad, HeaderNotAJsonObject) {
  expect_bad(make_file(R"({"w":{"dtype":"F32",)", ""), {"not valid JSON"});
  expect_bad(make_file("[1,2]", ""), {"does not start with '{'"});
  expect_bad(make_file(std::string("{\"\xff\":1}"), ""), {"not valid JSON"});
}

TEST_F(SafetensorsBad, DuplicateTensorName) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                       floats({1, 2})),
             {"duplicate key \"w\""});
  // Duplicates are refused at every depth, __metadata__ included (the last would win).
  expect_bad(make_file(R"({"__metadata__":{"format":"pt","format":"np"}})", ""),
             {"duplicate key \"format\""});
}

// Untrusted input: whatever the bytes, the reader either loads the file or throws slmc::Error.
// (Run under -DSLMC_SANITIZE=ON to catch out-of-bounds reads too.)
TEST(Safetensors, CorruptedFilesOnlyEverThrowSlmcError) {
  TempDir dir;
  const std::string good = dir.file("good.safetensors");
  TensorMap in;
  in["a"] = tensor({2, 3}, {1, 2, 3, 4, 5, 6});
  in["b"] = tensor({4}, {7, 8, 9, 10});
  write_safetensors(good, in, DType::kBF16, {{"format", "pt"}});
  const std::string bytes = read_bytes(good);
  const std::string path = dir.file("corrupt.safetensors");
  int loaded = 0, rejected = 0;
  auto attempt = [&](const std::string& b) {
    write_bytes(path, b);
    try {
      SafetensorsFile f(path);
      for (const auto& kv : f.entries())
        if (kv.second.dtype == DType::kF32 || kv.second.dtype == DType::kF16 ||
            kv.second.dtype == DType::kBF16)
          f.read(kv.first);
      ++loaded;
    } catch (const Error& e) {
      ++rejected;
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  for (size_t n = 0; n < bytes.size(); ++n) attempt(bytes.substr(0, n));  // every truncation
  std::mt19937 rng(1234);
  const size_t header_end = bytes.size() - 10 * 2;
  for (int i = 0; i < 1500; ++i) {
    std::string b = bytes;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % header_end;
      const char* alphabet = "0123456789[]{},:\" -eE";
      b[pos] = rng() % 2 ? alphabet[rng() % std::strlen(alphabet)] : static_cast<char>(rng());
    }
    attempt(b);
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(loaded, 0);
}

TEST(Safetensors, MissingFileAndDirectoryAreErrors) {
  TempDir dir;
  expect_error([&] { SafetensorsFile f(dir.file("absent.safetensors")); },
               {dir.file("absent.safetensors"), "cannot open"});
  expect_error([&] { SafetensorsFile f(dir.str()); }, {dir.str(), "not a regular file"});
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  TensorMap in;
  in["w"] = tensor({2, 2}, {1, 2, 3});
  expect_error([&] { write_safetensors(path, in, DType::kF32); }, {path, "'w'", "3 values"});
  in["w"] = tensor({1}, {1});
  expect_error([&] { write_safetensors(path, in, DType::kI32); }, {path, "I32"});
  EXPECT_FALSE(std::filesystem::exists(path)) << "failed writes leave no file";
}

}  // namespace
}  // namespace slmc
