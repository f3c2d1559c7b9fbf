// The top-k cache file: round trips, and every malformed file refused with a one-line error naming
// the file and the field.
#include <H5Cpp.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "compress/core/float16.h"
#include "distill/topk_cache.h"
#include "tests/test_util.h"

namespace slmc::distill {
namespace {

using slmc::testing::expect_error;
using slmc::testing::TempDir;

TopKCacheHeader small_header(bool f16) {
  TopKCacheHeader h;
  h.teacher_hash = "t0";
  h.tokenizer_hash = "k0";
  h.data_hash = "d0";
  h.vocab = 300;
  h.k = 4;
  h.ctx = 3;
  h.n_windows = 2;
  h.bos_id = 1;
  h.temperature = 2;
  h.f16 = f16;
  return h;
}

TopKWindow window(int64_t w, const TopKCacheHeader& h) {
  TopKWindow x;
  for (int64_t r = 0; r < h.ctx; ++r) {
    for (int64_t j = 0; j < h.k; ++j) {
      x.values.push_back(static_cast<float>(10.0 - j - 0.123456789 * static_cast<double>(w + r)));
      x.indices.push_back(static_cast<int32_t>((w * 97 + r * 13 + j * 71) % h.vocab));
    }
    x.rest_lse.push_back(r == 0 ? -std::numeric_limits<float>::infinity() : 1.5f + static_cast<float>(r));
  }
  return x;
}

void write_cache(const std::string& path, const TopKCacheHeader& h) {
  TopKCacheWriter w(path, h);
  for (int64_t i = 0; i < h.n_windows; ++i) w.append(window(i, h));
  w.commit();
}

TEST(TopKCacheTest, RoundTripF32IsExact) {
  const TempDir d;
  const TopKCacheHeader h = small_header(false);
  write_cache(d.file("c.h5"), h);
  const TopKCacheReader r(d.file("c.h5"));
  EXPECT_EQ(r.header().teacher_hash, "t0");
  EXPECT_EQ(r.header().tokenizer_hash, "k0");
  EXPECT_EQ(r.header().data_hash, "d0");
  EXPECT_EQ(r.header().vocab, 300);
  EXPECT_EQ(r.header().k, 4);
  EXPECT_EQ(r.header().ctx, 3);
  EXPECT_EQ(r.header().n_windows, 2);
  EXPECT_EQ(r.header().bos_id, 1);
  EXPECT_EQ(r.header().temperature, 2.0);
  EXPECT_FALSE(r.header().f16);
  for (int64_t w = 0; w < 2; ++w) {
    const TopKWindow want = window(w, h), got = r.read(w);
    EXPECT_EQ(got.values, want.values);
    EXPECT_EQ(got.indices, want.indices);
    ASSERT_EQ(got.rest_lse.size(), want.rest_lse.size());
    for (size_t i = 0; i < got.rest_lse.size(); ++i) EXPECT_EQ(got.rest_lse[i], want.rest_lse[i]);
  }
}

TEST(TopKCacheTest, RoundTripF16RoundsToNearestHalf) {
  const TempDir d;
  const TopKCacheHeader h = small_header(true);
  write_cache(d.file("c.h5"), h);
  const TopKCacheReader r(d.file("c.h5"));
  EXPECT_TRUE(r.header().f16);
  const TopKWindow want = window(1, h), got = r.read(1);
  ASSERT_EQ(got.values.size(), want.values.size());
  for (size_t i = 0; i < got.values.size(); ++i)
    EXPECT_EQ(got.values[i], f16_to_f32(f32_to_f16(want.values[i])));  // exact RNE through HDF5
  EXPECT_EQ(got.indices, want.indices);
}

TEST(TopKCacheTest, WriterWithoutCommitLeavesNothing) {
  const TempDir d;
  {
    TopKCacheWriter w(d.file("c.h5"), small_header(true));
    w.append(window(0, small_header(true)));
  }
  EXPECT_FALSE(std::filesystem::exists(d.file("c.h5")));
  EXPECT_TRUE(std::filesystem::is_empty(d.path()));
}

// Writes a cache, then lets `edit` damage it through the HDF5 API.
void damaged(const std::string& path, const std::function<void(H5::H5File&)>& edit) {
  write_cache(path, small_header(false));
  H5::H5File f(path, H5F_ACC_RDWR);
  edit(f);
}

void set_int(H5::H5File& f, const char* name, int64_t v) {
  f.removeAttr(name);
  H5::Attribute a = f.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR));
  a.write(H5::PredType::NATIVE_INT64, &v);
}

void set_row(H5::H5File& f, const char* ds, hsize_t row, const void* data, const H5::PredType& t,
             hsize_t k) {
  H5::DataSet d = f.openDataSet(ds);
  H5::DataSpace fs = d.getSpace();
  const hsize_t start[2] = {row, 0}, count[2] = {1, k};
  fs.selectHyperslab(H5S_SELECT_SET, count, start);
  H5::DataSpace ms(2, count);
  d.write(data, t, ms, fs);
}

TEST(TopKCacheTest, MalformedFilesNameTheField) {
  const TempDir d;
  const std::string p = d.file("c.h5");
  slmc::testing::write_bytes(p, "not hdf5 at all");
  expect_error([&] { TopKCacheReader r(p); }, {p, "not an HDF5 file"});
  expect_error([&] { TopKCacheReader r(d.file("missing.h5")); }, {"missing.h5", "no such file"});

  damaged(p, [](H5::H5File& f) { f.removeAttr("vocab"); });
  expect_error([&] { TopKCacheReader r(p); }, {p, "no attribute 'vocab'"});
  damaged(p, [](H5::H5File& f) { set_int(f, "version", 7); });
  expect_error([&] { TopKCacheReader r(p); }, {p, "version 7"});
  damaged(p, [](H5::H5File& f) { set_int(f, "k", 301); });
  expect_error([&] { TopKCacheReader r(p); }, {p, "k 301"});
  damaged(p, [](H5::H5File& f) { set_int(f, "ctx", 4); });
  expect_error([&] { TopKCacheReader r(p); }, {p, "dataset 'values' has shape [6, 4]", "[8, 4]"});
  damaged(p, [](H5::H5File& f) { set_int(f, "bos_id", 300); });
  expect_error([&] { TopKCacheReader r(p); }, {p, "bos_id 300"});
  damaged(p, [](H5::H5File& f) { set_int(f, "n_windows", int64_t{1} << 50); });
  expect_error([&] { TopKCacheReader r(p); }, {p, "n_windows"});
  damaged(p, [](H5::H5File& f) { set_int(f, "temperature", 2); });
  expect_error([&] { TopKCacheReader r(p); }, {p, "attribute 'temperature' must be a number"});
  damaged(p, [](H5::H5File& f) { f.unlink("rest_lse"); });
  expect_error([&] { TopKCacheReader r(p); }, {p, "no dataset 'rest_lse'"});
  damaged(p, [](H5::H5File& f) {
    f.removeAttr("format");
    H5::StrType t(H5::PredType::C_S1, H5T_VARIABLE);
    f.createAttribute("format", t, H5::DataSpace(H5S_SCALAR)).write(t, std::string("gguf"));
  });
  expect_error([&] { TopKCacheReader r(p); }, {p, "format 'gguf'"});

  // Window contents: checked when read, naming the row.
  damaged(p, [](H5::H5File& f) {
    const int32_t bad[4] = {1, 2, 300, 4};
    set_row(f, "indices", 4, bad, H5::PredType::NATIVE_INT32, 4);
  });
  expect_error([&] { TopKCacheReader(p).read(1); }, {p, "indices row 4", "id 300"});
  damaged(p, [](H5::H5File& f) {
    const int32_t dup[4] = {7, 8, 7, 9};
    set_row(f, "indices", 2, dup, H5::PredType::NATIVE_INT32, 4);
  });
  expect_error([&] { TopKCacheReader(p).read(0); }, {p, "indices row 2", "repeats"});
  damaged(p, [](H5::H5File& f) {
    const float nan[4] = {1, std::nanf(""), 0, 0};
    set_row(f, "values", 5, nan, H5::PredType::NATIVE_FLOAT, 4);
  });
  expect_error([&] { TopKCacheReader(p).read(1); }, {p, "values row 5"});
  damaged(p, [](H5::H5File& f) {
    H5::DataSet d = f.openDataSet("rest_lse");
    H5::DataSpace fs = d.getSpace();
    const hsize_t start[1] = {1}, count[1] = {1};
    fs.selectHyperslab(H5S_SELECT_SET, count, start);
    const float inf = std::numeric_limits<float>::infinity();
    d.write(&inf, H5::PredType::NATIVE_FLOAT, H5::DataSpace(1, count), fs);
  });
  expect_error([&] { TopKCacheReader(p).read(0); }, {p, "rest_lse row 1"});
  expect_error([&] { TopKCacheReader(d.file("c.h5")).read(2); }, {"window 2", "[0, 2)"});
}

TEST(TopKCacheTest, WriterRefusesBadHeadersAndWindows) {
  const TempDir d;
  TopKCacheHeader h = small_header(true);
  h.k = 0;
  expect_error([&] { TopKCacheWriter w(d.file("c.h5"), h); }, {"k 0"});
  h = small_header(true);
  TopKCacheWriter w(d.file("c.h5"), h);
  TopKWindow x = window(0, h);
  x.rest_lse.pop_back();
  expect_error([&] { w.append(x); }, {"window 0 has the wrong size"});
  expect_error([&] { w.commit(); }, {"0 of 2 windows written"});
}

}  // namespace
}  // namespace slmc::distill
