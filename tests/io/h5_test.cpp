// HDF5 token and logit files: round trips, integer types other tools write, and bad files.
#include "compress/io/h5.h"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <numeric>

#include "tests/test_util.h"

namespace slmc {
namespace {

using testing::expect_error;
using testing::TempDir;
using testing::write_bytes;

// Writes dataset `name` of file type `ftype` and shape `dims` from `data` (memory type `mtype`)
// with the raw C API, the way h5py or another tool would.
void write_dataset(const std::string& path, const char* name, hid_t ftype, hid_t mtype,
                   std::vector<hsize_t> dims, const void* data, bool truncate = true) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t file = truncate ? H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)
                              : H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hid_t space = dims.empty()
                          ? H5Screate(H5S_SCALAR)
                          : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t dset = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(dset, 0);
  if (data != nullptr) {
    ASSERT_GE(H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
  }
  H5Dclose(dset);
  H5Sclose(space);
  ASSERT_GE(H5Fclose(file), 0);
}

TEST(H5Tokens, RoundTrip1DAnd2DWithAttributes) {
  TempDir dir;
  TokenData stream;
  stream.tokens = {1, 5, 9, 2, 511, 0, 2147483647, -3};
  stream.tokenizer = "stories260K/tok512.model";
  stream.bos_id = 1;
  const std::string p1 = dir.file("stream.h5");
  write_tokens_h5(p1, stream);
  EXPECT_TRUE(is_hdf5_file(p1));
  const TokenData a = read_tokens_h5(p1);
  EXPECT_EQ(a.tokens, stream.tokens);
  EXPECT_EQ(a.rows, 0);
  EXPECT_EQ(a.tokenizer, stream.tokenizer);
  EXPECT_EQ(a.bos_id, 1);

  TokenData rows;
  rows.tokens.resize(12);
  std::iota(rows.tokens.begin(), rows.tokens.end(), 100);
  rows.rows = 3;
  rows.cols = 4;
  const std::string p2 = dir.file("rows.h5");
  write_tokens_h5(p2, rows);
  const TokenData b = read_tokens_h5(p2);
  EXPECT_EQ(b.tokens, rows.tokens);
  EXPECT_EQ(b.rows, 3);
  EXPECT_EQ(b.cols, 4);
  EXPECT_EQ(b.tokenizer, "");
  EXPECT_EQ(b.bos_id, -1);
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(H5Tokens, AcceptsOtherIntegerTypes) {
  TempDir dir;
  const std::string path = dir.file("foreign.h5");
  const std::vector<int64_t> i64 = {3, -1, 2000000000, 7};
  write_dataset(path, "tokens", H5T_STD_I64BE, H5T_NATIVE_INT64, {2, 2}, i64.data());
  TokenData t = read_tokens_h5(path);
  EXPECT_EQ(t.tokens, (std::vector<int32_t>{3, -1, 2000000000, 7}));
  EXPECT_EQ(t.rows, 2);

  const std::vector<uint8_t> u8 = {0, 1, 255};
  write_dataset(path, "tokens", H5T_STD_U8LE, H5T_NATIVE_UINT8, {3}, u8.data());
  EXPECT_EQ(read_tokens_h5(path).tokens, (std::vector<int32_t>{0, 1, 255}));

  const std::vector<uint32_t> u32 = {65535, 2147483647u};
  write_dataset(path, "tokens", H5T_STD_U32LE, H5T_NATIVE_UINT32, {2}, u32.data());
  EXPECT_EQ(read_tokens_h5(path).tokens, (std::vector<int32_t>{65535, 2147483647}));
}

TEST(H5Tokens, FixedLengthAttributesOnTheRootGroup) {
  TempDir dir;
  const std::string path = dir.file("root_attrs.h5");
  const std::vector<int16_t> v = {4, 5, 6};
  write_dataset(path, "tokens", H5T_STD_I16LE, H5T_NATIVE_INT16, {3}, v.data());
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hid_t scalar = H5Screate(H5S_SCALAR);
  const hid_t str = H5Tcopy(H5T_C_S1);
  H5Tset_size(str, 9);
  H5Tset_strpad(str, H5T_STR_NULLPAD);  // exactly 9 bytes, no terminator
  const hid_t a = H5Acreate2(file, "tokenizer", str, scalar, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(H5Awrite(a, str, "tok.model"), 0);
  const int16_t bos = 7;
  const hid_t b = H5Acreate2(file, "bos_id", H5T_STD_I16BE, scalar, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(H5Awrite(b, H5T_NATIVE_INT16, &bos), 0);
  H5Aclose(a);
  H5Aclose(b);
  H5Tclose(str);
  H5Sclose(scalar);
  H5Fclose(file);
  const TokenData t = read_tokens_h5(path);
  EXPECT_EQ(t.tokens, (std::vector<int32_t>{4, 5, 6}));
  EXPECT_EQ(t.tokenizer, "tok.model");
  EXPECT_EQ(t.bos_id, 7);
}

TEST(H5Tokens, ValueBeyondInt32IsAnError) {
  TempDir dir;
  const std::string path = dir.file("big.h5");
  const std::vector<uint64_t> u64 = {1, 2, 18446744073709551615ull};
  write_dataset(path, "tokens", H5T_STD_U64LE, H5T_NATIVE_UINT64, {3}, u64.data());
  expect_error([&] { read_tokens_h5(path); },
               {path, "'tokens'", "18446744073709551615", "index 2", "int32"});
  const std::vector<int64_t> i64 = {-2147483649LL};
  write_dataset(path, "tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, {1}, i64.data());
  expect_error([&] { read_tokens_h5(path); }, {path, "-2147483649", "int32"});
  const std::vector<uint32_t> u32 = {2147483648u};
  write_dataset(path, "tokens", H5T_STD_U32LE, H5T_NATIVE_UINT32, {1}, u32.data());
  expect_error([&] { read_tokens_h5(path); }, {path, "2147483648", "int32"});
}

TEST(H5Tokens, FileWithoutTokens) {
  TempDir dir;
  const std::string path = dir.file("other.h5");
  const std::vector<int32_t> v = {1, 2, 3};
  write_dataset(path, "ids", H5T_STD_I32LE, H5T_NATIVE_INT32, {3}, v.data());
  expect_error([&] { read_tokens_h5(path); }, {path, "no dataset 'tokens'"});
}

TEST(H5Tokens, ThreeDimensionalTokens) {
  TempDir dir;
  const std::string path = dir.file("cube.h5");
  const std::vector<int32_t> v(24, 1);
  write_dataset(path, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, {2, 3, 4}, v.data());
  expect_error([&] { read_tokens_h5(path); }, {path, "'tokens'", "rank 3", "[2, 3, 4]"});
  const int32_t scalar = 5;
  write_dataset(path, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, {}, &scalar);
  expect_error([&] { read_tokens_h5(path); }, {path, "'tokens'", "rank 0"});
}

TEST(H5Tokens, FloatTokensAndEmptyTokens) {
  TempDir dir;
  const std::string path = dir.file("f.h5");
  const std::vector<float> f = {1.0f, 2.0f};
  write_dataset(path, "tokens", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {2}, f.data());
  expect_error([&] { read_tokens_h5(path); }, {path, "'tokens'", "float", "integer"});
  write_dataset(path, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, {0}, nullptr);
  expect_error([&] { read_tokens_h5(path); }, {path, "'tokens'", "empty"});
}

TEST(H5Tokens, DeclaredShapeFarBeyondStoredBytes) {
  // A chunked dataset of 2^36 tokens with nothing written: reading it would allocate 256 GiB of
  // fill values.
  TempDir dir;
  const std::string path = dir.file("hollow.h5");
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t dims[1] = {hsize_t{1} << 36}, chunk[1] = {1024};
  const hid_t space = H5Screate_simple(1, dims, nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, chunk);
  const hid_t dset =
      H5Dcreate2(file, "tokens", H5T_STD_I32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(dset, 0);
  H5Dclose(dset);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(file);
  expect_error([&] { read_tokens_h5(path); }, {path, "'tokens'", "68719476736", "stores only"});
}

TEST(H5Tokens, NotHdf5OrMissing) {
  TempDir dir;
  const std::string text = dir.file("tokens.txt");
  write_bytes(text, "1 2 3\n");
  EXPECT_FALSE(is_hdf5_file(text));
  EXPECT_FALSE(is_hdf5_file(dir.file("absent.h5")));
  expect_error([&] { read_tokens_h5(text); }, {text, "not an HDF5 file"});
  expect_error([&] { read_tokens_h5(dir.file("absent.h5")); }, {dir.file("absent.h5"), "no such"});
  // A file with the signature but a garbage body: HDF5's own failure, one line.
  const std::string fake = dir.file("fake.h5");
  write_bytes(fake, std::string("\x89HDF\r\n\x1a\n", 8) + std::string(200, '\x7f'));
  expect_error([&] { read_tokens_h5(fake); }, {fake});
}

TEST(H5Tokens, WriterRejectsInconsistentShape) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  TokenData t;
  t.tokens = {1, 2, 3};
  t.rows = 2;
  t.cols = 2;
  expect_error([&] { write_tokens_h5(path, t); }, {path, "rows 2", "cols 2", "3 tokens"});
  expect_error([&] { write_tokens_h5(path, TokenData{}); }, {path, "no tokens"});
  EXPECT_FALSE(std::filesystem::exists(path));
}

// ---- logits ----

TEST(H5Logits, WriteInBatchesCommitRead) {
  TempDir dir;
  const std::string path = dir.file("logits.h5");
  const int64_t vocab = 37, n = 301;
  std::vector<float> logits(static_cast<size_t>(n * vocab));
  std::vector<int32_t> targets(static_cast<size_t>(n));
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(i) * 0.5f - 7.25f;
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<int32_t>(i % vocab);
  {
    LogitWriter w(path, vocab);
    int64_t done = 0;
    for (int64_t batch : {1, 0, 64, 200, 36}) {
      w.append(logits.data() + done * vocab, targets.data() + done, batch);
      done += batch;
    }
    ASSERT_EQ(done, n);
    EXPECT_FALSE(std::filesystem::exists(path)) << "nothing at the target before commit";
    w.commit();
    expect_error([&] { w.append(logits.data(), targets.data(), 1); }, {path, "after commit"});
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  LogitReader r(path);
  EXPECT_EQ(r.n_positions(), n);
  EXPECT_EQ(r.vocab(), vocab);
  std::vector<float> out(static_cast<size_t>(n * vocab));
  std::vector<int32_t> tout(static_cast<size_t>(n));
  r.read(0, n, out.data(), tout.data());
  EXPECT_EQ(out, logits);
  EXPECT_EQ(tout, targets);
  std::vector<float> mid(static_cast<size_t>(5 * vocab));
  std::vector<int32_t> tmid(5);
  r.read(100, 5, mid.data(), tmid.data());
  EXPECT_EQ(mid, std::vector<float>(logits.begin() + 100 * vocab, logits.begin() + 105 * vocab));
  EXPECT_EQ(tmid, std::vector<int32_t>(targets.begin() + 100, targets.begin() + 105));
  expect_error([&] { r.read(300, 2, mid.data(), tmid.data()); }, {path, "[300, 302)", "301"});
  expect_error([&] { r.read(-1, 1, mid.data(), tmid.data()); }, {path});
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(H5Logits, AbandonedWriterLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("logits.h5");
  {
    LogitWriter w(path, 8);
    std::vector<float> row(8, 1.0f);
    int32_t t = 3;
    w.append(row.data(), &t, 1);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  expect_error([&] { LogitWriter w(path, 0); }, {path, "vocab", "got 0"});
}

TEST(H5Logits, ReaderRejectsMismatchedFiles) {
  TempDir dir;
  const std::string path = dir.file("bad_logits.h5");
  const std::vector<float> l(6, 0.0f);
  const std::vector<int32_t> t = {1, 2, 3};
  write_dataset(path, "logits", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {2, 3}, l.data());
  write_dataset(path, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, {3}, t.data(), false);
  expect_error([&] { LogitReader r(path); }, {path, "'tokens'", "[3]", "[2, 3]"});
  write_dataset(path, "logits", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {6}, l.data());
  expect_error([&] { LogitReader r(path); }, {path, "'logits'", "[6]"});
  write_dataset(path, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, {3}, t.data());
  expect_error([&] { LogitReader r(path); }, {path, "no dataset 'logits'"});
}

}  // namespace
}  // namespace slmc
