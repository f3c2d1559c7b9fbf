// The .slm container: a written file reads back byte for byte, and every corruption of a field
// the header comment of slm_format.h lists is refused with one slmc::Error line naming the file
// and the field, before any tensor byte is touched (run under ASan/UBSan with -DSLMC_SANITIZE=ON).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/slm_format.h"
#include "quantize/codec/formats.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace slmc::format {
namespace {

using slmc::testing::TempDir;

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

// A small but complete model: every tensor of a 1-layer llama spec, with matrices in several
// formats so that the table exercises each block geometry.
ModelSpec tiny_spec() {
  ModelSpec s = make_uniform_spec(Family::kLlama, /*vocab=*/64, /*d_model=*/32, /*n_layer=*/1,
                                  /*n_head=*/2, /*n_kv_head=*/1, /*ffn_dim=*/64, /*max_seq=*/64);
  s.tied_embeddings = false;
  return s;
}

codec::Format tiny_format(const TensorDecl& d) {
  if (d.shape.size() == 1) return codec::Format::kF32;
  if (d.name == names::kTokenEmbd) return codec::Format::kQ4_0;
  if (d.name == names::kOutput) return codec::Format::kQ8_0;
  if (d.name.find("attn_q") != std::string::npos) return codec::Format::kF16;
  if (d.name.find("attn_k") != std::string::npos) return codec::Format::kBF16;
  if (d.name.find("ffn_down") != std::string::npos) return codec::Format::kQ4_G64;
  return codec::Format::kF32;
}

struct Added {
  std::string name;
  codec::Format format;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Any bytes: the container does not parse them (NUL and newline included on purpose).
const std::string kTokBytes("\x07not really a tokenizer\n\0 but bytes", 35);

// Writes the tiny model to `path` and returns what was added.
std::vector<Added> write_tiny(const std::string& path) {
  const ModelSpec spec = tiny_spec();
  SlmWriter w;
  w.set_spec_json(spec.to_json());
  w.set_tokenizer("llama2c", kTokBytes);
  std::vector<Added> added;
  uint32_t state = 7;
  for (const TensorDecl& d : expected_tensors(spec)) {
    std::vector<float> x(static_cast<size_t>(shape_numel(d.shape)));
    for (float& v : x) {
      state = state * 1664525u + 1013904223u;
      v = (static_cast<float>(state >> 8) / 16777216.0f - 0.5f) * 0.2f;
    }
    const int64_t cols = d.shape.back();
    const codec::Format f = tiny_format(d);
    Added a{d.name, f, d.shape,
            codec::quantize_ref(f, x.data(), shape_numel(d.shape) / cols, cols)};
    w.add_tensor(a.name, a.format, a.shape, a.bytes);
    added.push_back(std::move(a));
  }
  w.write(path);
  return added;
}

// Runs `fn`, which must throw slmc::Error: one line naming `path` and containing every string
// of `parts`.
void expect_error(const std::function<void()>& fn, const std::string& path,
                  std::initializer_list<std::string> parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind(path, 0), 0u) << "should start with the file: " << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    return;
  }
  ADD_FAILURE() << "no slmc::Error (expected one containing "
                << (parts.size() > 0 ? *parts.begin() : std::string()) << ")";
}

// Offsets of one table record's fields in the file.
struct Record {
  uint64_t name_len, name, format, n_dims, dims, offset, n_bytes;
  std::string name_str;
  uint32_t n_dims_value;
};

template <typename T>
T get(const std::string& b, uint64_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

template <typename T>
void put(std::string* b, uint64_t off, T v) {
  std::memcpy(b->data() + off, &v, sizeof v);
}

SlmHeader header_of(const std::string& b) { return get<SlmHeader>(b, 0); }

std::vector<Record> records_of(const std::string& b) {
  const SlmHeader h = header_of(b);
  std::vector<Record> out;
  uint64_t pos = h.table_offset;
  for (uint64_t i = 0; i < h.n_tensors; ++i) {
    Record r;
    r.name_len = pos;
    const uint32_t len = get<uint32_t>(b, pos);
    r.name = pos + 4;
    r.name_str = b.substr(r.name, len);
    r.format = r.name + len;
    r.n_dims = r.format + 4;
    r.n_dims_value = get<uint32_t>(b, r.n_dims);
    r.dims = r.n_dims + 4;
    r.offset = r.dims + 8 * r.n_dims_value;
    r.n_bytes = r.offset + 8;
    pos = r.n_bytes + 8;
    out.push_back(r);
  }
  return out;
}

const Record& record_named(const std::vector<Record>& rs, const std::string& name) {
  for (const Record& r : rs)
    if (r.name_str == name) return r;
  throw std::runtime_error("no record " + name);
}

// A fixture with a valid file's bytes; each test corrupts a copy and expects the reader to say so.
class SlmCorruption : public ::testing::Test {
 protected:
  void SetUp() override {
    good_path_ = dir_.file("good.slm");
    write_tiny(good_path_);
    good_ = read_bytes(good_path_);
    recs_ = records_of(good_);
    bad_path_ = dir_.file("bad.slm");
  }

  // Writes `bytes` to bad.slm and expects SlmFile to refuse it with `parts` in the message.
  void expect_bad(const std::string& bytes, std::initializer_list<std::string> parts) {
    write_bytes(bad_path_, bytes);
    expect_error([&] { SlmFile f(bad_path_); }, bad_path_, parts);
  }

  template <typename T>
  void expect_bad_field(uint64_t off, T v, std::initializer_list<std::string> parts) {
    std::string b = good_;
    put(&b, off, v);
    expect_bad(b, parts);
  }

  TempDir dir_;
  std::string good_path_, bad_path_, good_;
  std::vector<Record> recs_;
};

#define HOFF(field) offsetof(SlmHeader, field)

// ---- Round trip ----------------------------------------------------------------------------

TEST(SlmFormat, RoundTripIsExactAndAligned) {
  TempDir dir;
  const std::string path = dir.file("m.slm");
  const std::vector<Added> added = write_tiny(path);
  ASSERT_TRUE(is_slm_file(path));
  const SlmFile f(path);
  EXPECT_EQ(f.spec_json(), tiny_spec().to_json());
  EXPECT_EQ(f.spec().to_json(), tiny_spec().to_json());
  EXPECT_EQ(f.tokenizer_kind(), "llama2c");
  ASSERT_EQ(f.tokenizer_bytes(), kTokBytes.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.tokenizer_data()), f.tokenizer_bytes()),
            kTokBytes);
  EXPECT_EQ(f.file_bytes(), fs::file_size(path));
  ASSERT_EQ(f.tensors().size(), added.size());
  for (size_t i = 0; i < added.size(); ++i) {
    const SlmTensor& t = f.tensors()[i];
    EXPECT_EQ(t.name, added[i].name);  // table order is the order added
    EXPECT_EQ(t.format, added[i].format) << t.name;
    EXPECT_EQ(t.shape, added[i].shape) << t.name;
    EXPECT_EQ(t.offset % kSlmAlign, 0u) << t.name;
    ASSERT_EQ(t.n_bytes, added[i].bytes.size()) << t.name;
    EXPECT_EQ(std::memcmp(f.data(t), added[i].bytes.data(), t.n_bytes), 0) << t.name;
    EXPECT_EQ(f.find(t.name), &t);
  }
  EXPECT_EQ(f.find("nope"), nullptr);

  // Layout: sections back to back after the header, zero gaps, file ends at the last tensor.
  const std::string b = read_bytes(path);
  const SlmHeader h = header_of(b);
  EXPECT_EQ(h.spec_offset, sizeof(SlmHeader));
  EXPECT_EQ(h.tokenizer_offset, h.spec_offset + h.spec_bytes);
  EXPECT_EQ(h.table_offset, h.tokenizer_offset + h.tokenizer_bytes);
  EXPECT_EQ(h.data_offset % kSlmAlign, 0u);
  uint64_t pos = h.table_offset + h.table_bytes;
  for (const SlmTensor& t : f.tensors()) {
    for (; pos < t.offset; ++pos) ASSERT_EQ(b[pos], '\0') << "padding at " << pos;
    pos = t.offset + t.n_bytes;
  }
  EXPECT_EQ(pos, b.size());
}

TEST(SlmFormat, WriterIsDeterministic) {
  TempDir dir;
  write_tiny(dir.file("a.slm"));
  write_tiny(dir.file("b.slm"));
  EXPECT_EQ(read_bytes(dir.file("a.slm")), read_bytes(dir.file("b.slm")));
  // Nothing but the two outputs: the temporary files were renamed away.
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) n += e.is_regular_file();
  EXPECT_EQ(n, 2);
}

TEST(SlmFormat, NoTokenizerAndBuiltInByteTokenizer) {
  TempDir dir;
  for (const std::string kind : {"", "byte"}) {
    const ModelSpec spec = tiny_spec();
    SlmWriter w;
    w.set_spec_json(spec.to_json());
    w.set_tokenizer(kind, "");
    for (const TensorDecl& d : expected_tensors(spec)) {
      std::vector<float> x(static_cast<size_t>(shape_numel(d.shape)), 0.5f);
      const int64_t cols = d.shape.back();
      w.add_tensor(
          d.name, codec::Format::kF32, d.shape,
          codec::quantize_ref(codec::Format::kF32, x.data(), shape_numel(d.shape) / cols, cols));
    }
    const std::string path = dir.file("k" + kind + ".slm");
    w.write(path);
    const SlmFile f(path);
    EXPECT_EQ(f.tokenizer_kind(), kind);
    EXPECT_EQ(f.tokenizer_bytes(), 0u);
    EXPECT_EQ(f.tokenizer_data(), nullptr);
  }
}

TEST(SlmFormat, IsSlmFile) {
  TempDir dir;
  EXPECT_FALSE(is_slm_file(dir.file("missing")));
  EXPECT_FALSE(is_slm_file(dir.path().string()));
  write_bytes(dir.file("short"), "SLMC");
  EXPECT_FALSE(is_slm_file(dir.file("short")));
  write_bytes(dir.file("other"), std::string("GGUF\3\0\0\0", 8));
  EXPECT_FALSE(is_slm_file(dir.file("other")));
  write_bytes(dir.file("magic"), std::string(kSlmMagic, 8));
  EXPECT_TRUE(is_slm_file(dir.file("magic")));  // detection only; SlmFile validates
}

TEST(SlmFormat, TokenizerKindsMatchTheTokenizerLibrary) {
  std::vector<std::string> a(std::begin(kSlmTokenizerKinds), std::end(kSlmTokenizerKinds));
  std::vector<std::string> b(std::begin(kTokenizerKinds), std::end(kTokenizerKinds));
  EXPECT_EQ(a, b);
  for (const std::string& k : a) {
    EXPECT_TRUE(slm_tokenizer_kind_known(k));
    EXPECT_LT(k.size(), sizeof(SlmHeader::tokenizer_kind));
  }
  EXPECT_FALSE(slm_tokenizer_kind_known(""));
  EXPECT_FALSE(slm_tokenizer_kind_known("tiktoken"));
}

// ---- Header --------------------------------------------------------------------------------

TEST_F(SlmCorruption, EveryTruncationIsRefused) {
  // Every prefix, shortening one file in place: the size check comes first, so no prefix is
  // ever parsed further (ASan would see it).
  write_bytes(bad_path_, good_);
  for (uint64_t n = good_.size(); n-- > 0;) {
    fs::resize_file(bad_path_, n);
    if (n < sizeof(SlmHeader)) {
      expect_error([&] { SlmFile f(bad_path_); }, bad_path_, {"too short", "header"});
    } else {
      expect_error([&] { SlmFile f(bad_path_); }, bad_path_,
                   {"file_bytes " + std::to_string(good_.size()), std::to_string(n) + " bytes"});
    }
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "at prefix length " << n;
      break;
    }
  }
}

TEST_F(SlmCorruption, AppendedBytes) { expect_bad(good_ + "x", {"file_bytes", "appended"}); }

TEST_F(SlmCorruption, WrongMagic) {
  std::string b = good_;
  b[0] = 'X';
  b[7] = '\n';
  expect_bad(b, {"not an .slm file", "magic", "\\x0a", "SLMCMODL"});
}

TEST_F(SlmCorruption, FutureVersion) {
  expect_bad_field<uint32_t>(HOFF(version), 7, {"version 7 is newer than this slmc (reads 1)"});
  expect_bad_field<uint32_t>(HOFF(version), 0, {"version 0"});
}

TEST_F(SlmCorruption, HeaderBytes) {
  expect_bad_field<uint32_t>(HOFF(header_bytes), 64, {"header_bytes is 64", "128"});
  expect_bad_field<uint32_t>(HOFF(header_bytes), 256, {"header_bytes is 256"});
}

TEST_F(SlmCorruption, FileBytesField) {
  expect_bad_field<uint64_t>(HOFF(file_bytes), good_.size() + 1,
                             {"file_bytes " + std::to_string(good_.size() + 1)});
  expect_bad_field<uint64_t>(HOFF(file_bytes), ~0ull, {"file_bytes"});
}

TEST_F(SlmCorruption, ReservedAndKind) {
  expect_bad_field<uint8_t>(HOFF(reserved) + 3, 1, {"reserved header byte 3"});
  expect_bad_field<char>(HOFF(tokenizer_kind), 'x', {"unknown tokenizer_kind", "xlama2c"});
  expect_bad_field<char>(HOFF(tokenizer_kind) + 10, 'x', {"tokenizer_kind", "after its NUL"});
  std::string b = good_;
  std::memset(b.data() + HOFF(tokenizer_kind), 'a', 16);
  expect_bad(b, {"tokenizer_kind is not NUL-terminated"});
  b = good_;
  std::memset(b.data() + HOFF(tokenizer_kind), 0, 16);  // no tokenizer, but bytes
  expect_bad(b,
             {"tokenizer_kind is empty", "tokenizer_bytes is " + std::to_string(kTokBytes.size())});
  expect_bad_field<uint64_t>(HOFF(tokenizer_bytes), 0,
                             {"tokenizer_kind \"llama2c\"", "tokenizer_bytes 0"});
}

TEST_F(SlmCorruption, SectionsBeyondTheFile) {
  const uint64_t size = good_.size();
  expect_bad_field<uint64_t>(HOFF(spec_offset), size + 100, {"spec section", "beyond the file"});
  expect_bad_field<uint64_t>(HOFF(spec_bytes), size, {"spec section", "beyond the file"});
  expect_bad_field<uint64_t>(HOFF(tokenizer_offset), ~0ull - 3, {"tokenizer section", "beyond"});
  expect_bad_field<uint64_t>(HOFF(table_offset), size - 1, {"table section", "beyond the file"});
  expect_bad_field<uint64_t>(HOFF(table_bytes), ~0ull, {"table section", "beyond the file"});
  expect_bad_field<uint64_t>(HOFF(data_offset), size + 64 - size % 64, {"data_offset", "outside"});
}

TEST_F(SlmCorruption, SectionsOverlap) {
  const SlmHeader h = header_of(good_);
  expect_bad_field<uint64_t>(HOFF(spec_offset), 0, {"spec_offset 0 overlaps the 128-byte header"});
  expect_bad_field<uint64_t>(HOFF(table_offset), 100, {"table_offset 100 overlaps", "header"});
  expect_bad_field<uint64_t>(HOFF(table_offset), h.spec_offset,
                             {"spec section", "overlaps table section"});
  expect_bad_field<uint64_t>(HOFF(data_offset), h.data_offset - 64, {"overlaps the tensor data"});
  expect_bad_field<uint64_t>(HOFF(data_offset), h.data_offset + 1,
                             {"data_offset", "multiple of 64"});
  expect_bad_field<uint64_t>(HOFF(data_offset), 64, {"data_offset 64 is outside"});
}

TEST_F(SlmCorruption, BadSpecJson) {
  const SlmHeader h = header_of(good_);
  std::string b = good_;
  b[h.spec_offset] = '#';
  expect_bad(b, {"spec", "not valid JSON"});
  expect_bad_field<uint64_t>(HOFF(spec_bytes), 0, {"spec_bytes is 0"});
  expect_bad_field<uint64_t>(HOFF(spec_bytes), h.spec_bytes - 1, {"spec", "JSON"});
  // Valid JSON, impossible spec: ModelSpec::validate's message gets the file name.
  b = good_;
  const size_t at = b.find("\"vocab\":64", h.spec_offset);
  ASSERT_NE(at, std::string::npos);
  b.replace(at, 10, "\"vocab\":-4");
  expect_bad(b, {"spec", "'vocab' = -4 is outside [1, 16777216]"});
  b = good_;
  const size_t fam = b.find("\"llama\"", h.spec_offset);
  ASSERT_NE(fam, std::string::npos);
  b.replace(fam, 7, "\"lemur\"");
  expect_bad(b, {"spec", "'family'", "unknown family \"lemur\""});
}

// ---- Tensor table --------------------------------------------------------------------------

TEST_F(SlmCorruption, NTensors) {
  const SlmHeader h = header_of(good_);
  expect_bad_field<uint64_t>(HOFF(n_tensors), ~0ull, {"n_tensors", "cannot fit"});
  expect_bad_field<uint64_t>(HOFF(n_tensors), h.n_tensors - 1, {"bytes after its", "records"});
  expect_bad_field<uint64_t>(HOFF(table_bytes), h.table_bytes - 1, {"runs past the table's end"});
}

TEST_F(SlmCorruption, NameLen) {
  expect_bad_field<uint32_t>(recs_[0].name_len, 0, {"record 0", "name_len 0 is outside"});
  expect_bad_field<uint32_t>(recs_[0].name_len, 100000, {"record 0", "name_len 100000"});
  expect_bad_field<uint32_t>(recs_[0].name_len, ~0u, {"record 0", "name_len 4294967295"});
  // Within the name limit but past the end of the table.
  const size_t last = recs_.size() - 1;
  expect_bad_field<uint32_t>(recs_[last].name_len, 250,
                             {"record " + std::to_string(last), "runs past the table's end"});
}

TEST_F(SlmCorruption, NameBytes) {
  const Record& v = record_named(recs_, "blk.0.attn_v.weight");
  std::string b = good_;
  b.replace(v.name, v.name_str.size(), "blk.0.attn_k.weight");
  expect_bad(b, {"blk.0.attn_k.weight appears twice"});
  b = good_;
  b.replace(v.name, v.name_str.size(), "blk.0.attn_x.weight");
  expect_bad(b, {"lacks blk.0.attn_v.weight"});
  b = good_;
  b[v.name + 3] = '\n';
  expect_bad(b, {"control byte", "blk\\x0a0"});
}

TEST_F(SlmCorruption, NDims) {
  expect_bad_field<uint32_t>(recs_[1].n_dims, 0, {recs_[1].name_str, "n_dims 0 is outside [1, 4]"});
  expect_bad_field<uint32_t>(recs_[1].n_dims, 9, {recs_[1].name_str, "n_dims 9 is outside [1, 4]"});
  // A plausible n_dims that changes the record's length: the table no longer adds up.
  expect_bad_field<uint32_t>(recs_[0].n_dims, 3, {});
}

TEST_F(SlmCorruption, Dims) {
  const Record& q = record_named(recs_, "blk.0.attn_q.weight");
  expect_bad_field<int64_t>(q.dims, -5, {"blk.0.attn_q.weight", "dims[0] is -5"});
  expect_bad_field<int64_t>(q.dims + 8, 0, {"dims[1] is 0"});
  std::string b = good_;
  put<int64_t>(&b, q.dims, int64_t{1} << 40);
  put<int64_t>(&b, q.dims + 8, int64_t{1} << 40);
  expect_bad(b, {"blk.0.attn_q.weight", "overflows"});
  b = good_;
  put<int64_t>(&b, q.dims, int64_t{1} << 62);
  put<int64_t>(&b, q.dims + 8, 2);  // 2^63 fits uint64 but not int64
  expect_bad(b, {"overflows 2^63 weights"});
}

TEST_F(SlmCorruption, ShapeInconsistentWithNBytes) {
  const Record& q = record_named(recs_, "blk.0.attn_q.weight");  // f16 (32, 32)
  expect_bad_field<int64_t>(q.dims, 33,
                            {"blk.0.attn_q.weight", "n_bytes is 2048", "[33, 32]", "takes 2112"});
  expect_bad_field<uint64_t>(q.n_bytes, 2046, {"n_bytes is 2046"});
  const Record& o = record_named(recs_, "output.weight");  // q8_0 (64, 32)
  expect_bad_field<int64_t>(o.dims + 8, 33, {"output.weight", "q8_0", "multiple of 32", "33"});
  // The right bytes for a shape the spec does not have.
  std::string b = good_;
  put<int64_t>(&b, q.dims, 16);
  put<uint64_t>(&b, q.n_bytes, 1024);
  expect_bad(b, {"blk.0.attn_q.weight has shape [16, 32], the spec implies [32, 32]"});
}

TEST_F(SlmCorruption, UnknownFormatId) {
  expect_bad_field<uint32_t>(recs_[0].format, 77,
                             {recs_[0].name_str, "unknown format id 77", "q4_0 2"});
  expect_bad_field<uint32_t>(recs_[0].format, 0xffffffffu, {"unknown format id 4294967295"});
}

TEST_F(SlmCorruption, OffsetsMisalignedOutsideOrOverlapping) {
  const SlmHeader h = header_of(good_);
  const uint64_t off1 = get<uint64_t>(good_, recs_[1].offset);
  expect_bad_field<uint64_t>(recs_[1].offset, off1 + 1, {recs_[1].name_str, "multiple of 64"});
  expect_bad_field<uint64_t>(recs_[1].offset, h.data_offset - 64, {"outside the data section"});
  expect_bad_field<uint64_t>(recs_[1].offset, good_.size() / 64 * 64 + 64 * 4,
                             {"outside the data section"});
  expect_bad_field<uint64_t>(recs_[1].offset, ~0ull / 64 * 64, {"outside the data section"});
  const uint64_t off0 = get<uint64_t>(good_, recs_[0].offset);
  expect_bad_field<uint64_t>(recs_[1].offset, off0, {"overlaps tensor"});
  // The last tensor moved onto the one before it, both still inside the file.
  const size_t n = recs_.size();
  const uint64_t prev = get<uint64_t>(good_, recs_[n - 2].offset);
  expect_bad_field<uint64_t>(recs_[n - 1].offset, prev, {"overlaps tensor"});
}

// ---- Writer --------------------------------------------------------------------------------

TEST(SlmWriterChecks, RefusesWhatTheReaderWould) {
  TempDir dir;
  const ModelSpec spec = tiny_spec();
  SlmWriter w;
  std::vector<uint8_t> bytes(32 * 4);
  EXPECT_THROW(w.add_tensor("a", codec::Format::kF32, {32}, std::vector<uint8_t>(7)), Error);
  EXPECT_THROW(w.add_tensor("a", codec::Format::kQ8_0, {2, 33}, std::vector<uint8_t>(68)), Error);
  EXPECT_THROW(w.add_tensor("a", codec::Format::kF32, {0}, {}), Error);
  EXPECT_THROW(w.add_tensor("", codec::Format::kF32, {32}, bytes), Error);
  EXPECT_THROW(w.add_tensor("a\nb", codec::Format::kF32, {32}, bytes), Error);
  EXPECT_THROW(w.add_tensor("a", codec::Format::kF32, {1, 1, 1, 1, 32}, bytes), Error);
  EXPECT_THROW(w.set_tokenizer("tiktoken", "x"), Error);
  EXPECT_THROW(w.set_tokenizer("", "x"), Error);
  EXPECT_THROW(w.set_tokenizer("sentencepiece", ""), Error);
  w.add_tensor(names::kOutputNorm, codec::Format::kF32, {32}, bytes);
  EXPECT_THROW(w.add_tensor(names::kOutputNorm, codec::Format::kF32, {32}, bytes), Error);

  const std::string out = dir.file("w.slm");
  expect_error([&] { w.write(out); }, out, {"no model spec"});
  w.set_spec_json(spec.to_json());
  expect_error([&] { w.write(out); }, out, {"lacks", names::kTokenEmbd});
  EXPECT_FALSE(fs::exists(out));
  const std::string nodir = dir.file("no/such/dir/w.slm");
  write_tiny(dir.file("ok.slm"));
  EXPECT_THROW(write_tiny(nodir), Error);
  EXPECT_FALSE(fs::exists(nodir));
}

// ---- Hostile specs and weights (issue 18) --------------------------------------------------

// A file whose spec is `spec_json`, with no tokenizer and an empty tensor table: what an attacker
// writes to make a reader build a huge table from a small file.
std::string file_with_spec(const std::string& spec_json) {
  SlmHeader h{};
  std::memcpy(h.magic, kSlmMagic, sizeof h.magic);
  h.version = kSlmVersion;
  h.header_bytes = sizeof(SlmHeader);
  h.spec_offset = sizeof(SlmHeader);
  h.spec_bytes = spec_json.size();
  h.tokenizer_offset = h.spec_offset + h.spec_bytes;
  h.table_offset = h.tokenizer_offset;
  h.data_offset = (h.table_offset + kSlmAlign - 1) / kSlmAlign * kSlmAlign;
  h.file_bytes = h.data_offset;
  std::string b(reinterpret_cast<const char*>(&h), sizeof h);
  b += spec_json;
  b.resize(h.data_offset, '\0');
  return b;
}

std::string moe_spec_json(int64_t n_layer, int64_t n_expert) {
  ModelSpec s = make_uniform_spec(Family::kMixtral, 64, 32, n_layer, 2, 1, 64, 64);
  for (LayerSpec& l : s.layers) {
    l.n_expert = n_expert;
    l.n_expert_used = 2;
  }
  return s.to_json();
}

using slmc::testing::peak_rss_kb;

TEST(SlmHostile, SpecDeclaringMillionsOfTensorsIsRefusedBeforeTheTable) {
  TempDir dir;
  const std::string path = dir.file("moe.slm");
  // 1500 layers x 4096 experts: a ~300 KB file whose table would take 4 GB.
  const std::string big = file_with_spec(moe_spec_json(1500, 4096));
  EXPECT_LT(big.size(), 400000u);
  write_bytes(path, big);
  const long rss0 = peak_rss_kb();
  const auto t0 = std::chrono::steady_clock::now();
  expect_error([&] { SlmFile f(path); }, path, {"key 'layers' holds 1500 layers", "n_expert up to 4096", "at most 1048576"});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Building the table would take minutes and 4 GB; the refusal takes well under a second (a
  // generous bound: sanitizer builds on a loaded host are slow). The memory bound is the real check.
  EXPECT_LT(s, 30.0);
  EXPECT_LT(peak_rss_kb() - rss0, 200 * 1024) << "the refusal must not allocate the table";
  // Within the spec limits but beyond what this file's table holds: refused by the table bound.
  write_bytes(path, file_with_spec(moe_spec_json(4096, 64)));
  expect_error([&] { SlmFile f(path); }, path,
               {"spec key 'layers' (4096 layers, n_expert 64)", "at least 540674 tensors",
                "n_tensors 0"});
  EXPECT_LT(peak_rss_kb() - rss0, 200 * 1024);
}

TEST(SlmHostile, SpecIntegersPastInt64AreRefusedByKey) {
  TempDir dir;
  const std::string path = dir.file("s.slm");
  std::string spec = tiny_spec().to_json();
  const size_t at = spec.find("\"vocab\":64");
  ASSERT_NE(at, std::string::npos);
  spec.replace(at, 10, "\"vocab\":9.2e19");
  write_bytes(path, file_with_spec(spec));
  expect_error([&] { SlmFile f(path); }, path, {"'vocab' = 9.2e+19 is outside"});
  spec = tiny_spec().to_json();
  const size_t l = spec.find("\"n_head\":2");
  ASSERT_NE(l, std::string::npos);
  spec.replace(l, 10, "\"n_head\":18446744073709551615");
  write_bytes(path, file_with_spec(spec));
  expect_error([&] { SlmFile f(path); }, path, {"'layers[0].n_head'", "outside"});
}

// NaN or Inf in any format: check_finite names the tensor, the index and the value.
TEST(SlmHostile, NonFiniteWeightsAreRefusedNamingTheTensor) {
  TempDir dir;
  const std::string good = dir.file("good.slm");
  write_tiny(good);
  const std::string bytes = read_bytes(good);
  const SlmFile g(good);
  for (const SlmTensor& t : g.tensors()) EXPECT_NO_THROW(check_finite(g, t)) << t.name;
  struct Case {
    const char* tensor;
    uint64_t byte;      // offset inside the tensor's bytes
    std::string value;  // little-endian bytes written there
    const char* expect;
  };
  const std::string f32_nan("\x00\x00\xc0\x7f", 4), f16_inf("\x00\x7c", 2), f16_nan("\x00\x7e", 2);
  const std::string bf16_ninf("\x80\xff", 2);
  const Case cases[] = {
      {"blk.0.attn_norm.weight", 4 * 5, f32_nan, "holds nan at flat index 5"},
      {"blk.0.attn_q.weight", 2 * 7, f16_inf, "holds inf at flat index 7"},
      {"blk.0.attn_k.weight", 2 * 3, bf16_ninf, "holds -inf at flat index 3"},
      {"token_embd.weight", 18 * 3, f16_nan, "flat index 96 (the block's scale)"},
      {"output.weight", 34 * 2, f16_inf, "flat index 64 (the block's scale)"},
      {"blk.0.ffn_down.weight", 36 * 1 + 2, f16_inf, "flat index 64 (the block's zero point)"},
  };
  for (const Case& c : cases) {
    const SlmTensor* t = g.find(c.tensor);
    ASSERT_NE(t, nullptr) << c.tensor;
    std::string b = bytes;
    b.replace(t->offset + c.byte, c.value.size(), c.value);
    const std::string path = dir.file("bad.slm");
    write_bytes(path, b);
    const SlmFile f(path);  // the container itself is valid
    expect_error(
        [&] {
          for (const SlmTensor& u : f.tensors()) check_finite(f, u);
        },
        path, {std::string("tensor ") + c.tensor, c.expect, "weights must be finite"});
  }
}

}  // namespace
}  // namespace slmc::format
