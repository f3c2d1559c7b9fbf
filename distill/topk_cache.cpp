#include "distill/topk_cache.h"

#include <H5Cpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "compress/core/error.h"
#include "compress/core/float16.h"

namespace slmc::distill {

namespace {

constexpr const char* kFormat = "slmc-topk-cache";
constexpr int64_t kVersion = 1;

// HDF5's own error printing is switched off: failures become one slmc::Error line.
void quiet() {
  static const bool once = [] {
    H5::Exception::dontPrint();
    return true;
  }();
  (void)once;
}

// IEEE binary16, little endian (the layout h5py and numpy use for float16).
H5::FloatType half_type() {
  H5::FloatType t(H5::PredType::IEEE_F32LE);
  t.setFields(15, 10, 5, 0, 10);
  t.setSize(2);
  t.setEbias(15);
  return t;
}

template <typename F>
auto h5(const std::string& path, const std::string& what, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const H5::Exception& e) {
    std::string msg = e.getDetailMsg();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    fail(path, ": ", what, ": ", msg.empty() ? "HDF5 error" : msg);
  }
}

void write_int_attr(H5::H5File& f, const char* name, int64_t v) {
  H5::Attribute a = f.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR));
  a.write(H5::PredType::NATIVE_INT64, &v);
}
void write_double_attr(H5::H5File& f, const char* name, double v) {
  H5::Attribute a = f.createAttribute(name, H5::PredType::IEEE_F64LE, H5::DataSpace(H5S_SCALAR));
  a.write(H5::PredType::NATIVE_DOUBLE, &v);
}
void write_string_attr(H5::H5File& f, const char* name, const std::string& v) {
  H5::StrType t(H5::PredType::C_S1, H5T_VARIABLE);
  H5::Attribute a = f.createAttribute(name, t, H5::DataSpace(H5S_SCALAR));
  a.write(t, v);
}

H5::Attribute open_scalar_attr(const H5::H5File& f, const std::string& path, const char* name,
                               H5T_class_t cls, const char* kind) {
  SLMC_CHECK(f.attrExists(name), path, ": no attribute '", name, "' (not an slmc top-k cache?)");
  H5::Attribute a = f.openAttribute(name);
  SLMC_CHECK(a.getTypeClass() == cls, path, ": attribute '", name, "' must be ", kind);
  SLMC_CHECK(a.getSpace().getSimpleExtentNpoints() == 1, path, ": attribute '", name,
             "' must hold one value");
  return a;
}
int64_t read_int_attr(const H5::H5File& f, const std::string& path, const char* name) {
  int64_t v = 0;
  open_scalar_attr(f, path, name, H5T_INTEGER, "an integer").read(H5::PredType::NATIVE_INT64, &v);
  return v;
}
double read_double_attr(const H5::H5File& f, const std::string& path, const char* name) {
  double v = 0;
  open_scalar_attr(f, path, name, H5T_FLOAT, "a number").read(H5::PredType::NATIVE_DOUBLE, &v);
  return v;
}
std::string read_string_attr(const H5::H5File& f, const std::string& path, const char* name) {
  H5::Attribute a = open_scalar_attr(f, path, name, H5T_STRING, "a string");
  H5::StrType t = a.getStrType();
  SLMC_CHECK(t.isVariableStr() || t.getSize() < (size_t{1} << 20), path, ": attribute '", name,
             "' is an implausibly long string");
  std::string s;
  a.read(t, s);
  SLMC_CHECK(s.size() < (size_t{1} << 20), path, ": attribute '", name,
             "' is an implausibly long string (", s.size(), " bytes)");
  return s;
}

std::vector<hsize_t> dims_of(const H5::DataSet& d) {
  H5::DataSpace s = d.getSpace();
  const int rank = s.getSimpleExtentNdims();
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  if (rank > 0) s.getSimpleExtentDims(dims.data());
  return dims;
}

std::string dims_str(const std::vector<hsize_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// Selects rows [row0, row0 + rows) of a (n, inner) dataset (inner 0 = rank 1).
void select_rows(H5::DataSpace& fs, hsize_t row0, hsize_t rows, hsize_t inner) {
  const hsize_t start[2] = {row0, 0}, count[2] = {rows, inner};
  fs.selectHyperslab(H5S_SELECT_SET, count, start);
}

}  // namespace

void validate_header(const TopKCacheHeader& h, const std::string& path) {
  SLMC_CHECK(h.vocab >= 1 && h.vocab <= kMaxCacheVocab, path, ": vocab ", h.vocab,
             " outside [1, ", kMaxCacheVocab, "]");
  SLMC_CHECK(h.k >= 1 && h.k <= h.vocab && h.k <= kMaxCacheK, path, ": k ", h.k,
             " outside [1, min(vocab ", h.vocab, ", ", kMaxCacheK, ")]");
  SLMC_CHECK(h.ctx >= 2 && h.ctx <= kMaxWindowValues / h.k, path, ": ctx ", h.ctx,
             " outside [2, ", kMaxWindowValues / h.k, "] for k ", h.k);
  SLMC_CHECK(h.n_windows >= 1 && h.n_windows <= (int64_t{1} << 40) / h.ctx, path, ": n_windows ",
             h.n_windows, " out of range");
  SLMC_CHECK(h.bos_id >= 0 && h.bos_id < h.vocab, path, ": bos_id ", h.bos_id,
             " outside the vocab [0, ", h.vocab, ")");
  SLMC_CHECK(std::isfinite(h.temperature) && h.temperature > 0 && h.temperature <= 1000, path,
             ": temperature ", h.temperature, " must be in (0, 1000]");
}

// ---- Writer ---------------------------------------------------------------------------------

struct TopKCacheWriter::Impl {
  std::string path, tmp;
  TopKCacheHeader h;
  std::unique_ptr<H5::H5File> file;
  H5::DataSet values, indices, rest;
  int64_t written = 0;
  bool committed = false;
  std::vector<uint16_t> half_buf;
  std::vector<int32_t> idx_buf;

  void discard() {
    try {
      rest.close();
      indices.close();
      values.close();
      if (file) file->close();
    } catch (const H5::Exception&) {
    }
    std::remove(tmp.c_str());
  }
};

TopKCacheWriter::TopKCacheWriter(const std::string& path, const TopKCacheHeader& header)
    : impl_(new Impl) {
  quiet();
  validate_header(header, path);
  Impl& m = *impl_;
  static std::atomic<int> counter{0};
  m.path = path;
  m.tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  m.h = header;
  const hsize_t rows = static_cast<hsize_t>(header.n_windows * header.ctx);
  const hsize_t k = static_cast<hsize_t>(header.k), ctx = static_cast<hsize_t>(header.ctx);
  try {
    h5(path, "cannot create " + m.tmp, [&] {
      m.file = std::make_unique<H5::H5File>(m.tmp, H5F_ACC_TRUNC);
      H5::H5File& f = *m.file;
      write_string_attr(f, "format", kFormat);
      write_int_attr(f, "version", kVersion);
      write_string_attr(f, "teacher_hash", header.teacher_hash);
      write_string_attr(f, "tokenizer_hash", header.tokenizer_hash);
      write_string_attr(f, "data_hash", header.data_hash);
      write_int_attr(f, "vocab", header.vocab);
      write_int_attr(f, "k", header.k);
      write_int_attr(f, "ctx", header.ctx);
      write_int_attr(f, "n_windows", header.n_windows);
      write_int_attr(f, "bos_id", header.bos_id);
      write_double_attr(f, "temperature", header.temperature);
      const hsize_t d2[2] = {rows, k}, c2[2] = {ctx, k};
      H5::DSetCreatPropList p2;
      p2.setChunk(2, c2);
      m.values = f.createDataSet("values",
                                      header.f16 ? static_cast<const H5::DataType&>(half_type())
                                                 : H5::PredType::IEEE_F32LE,
                                      H5::DataSpace(2, d2), p2);
      m.indices = f.createDataSet(
          "indices", header.vocab <= 65536 ? H5::PredType::STD_U16LE : H5::PredType::STD_I32LE,
          H5::DataSpace(2, d2), p2);
      const hsize_t d1[1] = {rows}, c1[1] = {ctx};
      H5::DSetCreatPropList p1;
      p1.setChunk(1, c1);
      m.rest = f.createDataSet("rest_lse", H5::PredType::IEEE_F32LE, H5::DataSpace(1, d1), p1);
    });
  } catch (...) {
    m.discard();
    throw;
  }
}

TopKCacheWriter::~TopKCacheWriter() {
  if (impl_ && !impl_->committed) impl_->discard();
}

int64_t TopKCacheWriter::windows_written() const { return impl_->written; }

void TopKCacheWriter::append(const TopKWindow& w) {
  Impl& m = *impl_;
  const int64_t n = m.h.ctx * m.h.k;
  SLMC_CHECK(!m.committed && m.written < m.h.n_windows, m.path, ": window ", m.written,
             " beyond the declared ", m.h.n_windows);
  SLMC_CHECK(static_cast<int64_t>(w.values.size()) == n &&
                 static_cast<int64_t>(w.indices.size()) == n &&
                 static_cast<int64_t>(w.rest_lse.size()) == m.h.ctx,
             m.path, ": window ", m.written, " has the wrong size");
  const hsize_t row0 = static_cast<hsize_t>(m.written * m.h.ctx);
  const hsize_t ctx = static_cast<hsize_t>(m.h.ctx), k = static_cast<hsize_t>(m.h.k);
  h5(m.path, "cannot write window " + std::to_string(m.written), [&] {
    const hsize_t c2[2] = {ctx, k}, c1[1] = {ctx};
    H5::DataSpace ms2(2, c2), ms1(1, c1);
    H5::DataSpace fs = m.values.getSpace();
    select_rows(fs, row0, ctx, k);
    if (m.h.f16) {
      m.half_buf.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) m.half_buf[static_cast<size_t>(i)] = f32_to_f16(w.values[static_cast<size_t>(i)]);
      m.values.write(m.half_buf.data(), half_type(), ms2, fs);
    } else {
      m.values.write(w.values.data(), H5::PredType::NATIVE_FLOAT, ms2, fs);
    }
    H5::DataSpace fi = m.indices.getSpace();
    select_rows(fi, row0, ctx, k);
    m.indices.write(w.indices.data(), H5::PredType::NATIVE_INT32, ms2, fi);
    H5::DataSpace fr = m.rest.getSpace();
    const hsize_t start[1] = {row0};
    fr.selectHyperslab(H5S_SELECT_SET, c1, start);
    m.rest.write(w.rest_lse.data(), H5::PredType::NATIVE_FLOAT, ms1, fr);
  });
  ++m.written;
}

void TopKCacheWriter::commit() {
  Impl& m = *impl_;
  SLMC_CHECK(!m.committed, m.path, ": commit called twice");
  SLMC_CHECK(m.written == m.h.n_windows, m.path, ": ", m.written, " of ", m.h.n_windows,
             " windows written");
  h5(m.path, "cannot finish writing " + m.tmp, [&] {
    m.rest.close();
    m.indices.close();
    m.values.close();
    m.file->close();
  });
  if (std::rename(m.tmp.c_str(), m.path.c_str()) != 0)
    fail(m.path, ": cannot rename ", m.tmp, " into place: ", std::strerror(errno));
  m.committed = true;
}

// ---- Reader ---------------------------------------------------------------------------------

struct TopKCacheReader::Impl {
  std::string path;
  TopKCacheHeader h;
  std::unique_ptr<H5::H5File> owner;
  H5::DataSet values, indices, rest;
};

TopKCacheReader::TopKCacheReader(const std::string& path) : impl_(new Impl) {
  quiet();
  Impl& m = *impl_;
  m.path = path;
  std::error_code ec;
  SLMC_CHECK(std::filesystem::is_regular_file(path, ec), path, ": no such file (expected a top-k cache)");
  SLMC_CHECK(H5::H5File::isHdf5(path), path, ": not an HDF5 file (expected a top-k cache)");
  h5(path, "cannot read the top-k cache", [&] {
    m.owner = std::make_unique<H5::H5File>(path, H5F_ACC_RDONLY);
    const H5::H5File& file = *m.owner;
    const std::string format = read_string_attr(file, path, "format");
    SLMC_CHECK(format == kFormat, path, ": format '", format.substr(0, 40), "', expected '",
               kFormat, "'");
    const int64_t version = read_int_attr(file, path, "version");
    SLMC_CHECK(version == kVersion, path, ": top-k cache version ", version,
               " (this slmc reads version ", kVersion, ")");
    TopKCacheHeader& h = m.h;
    h.teacher_hash = read_string_attr(file, path, "teacher_hash");
    h.tokenizer_hash = read_string_attr(file, path, "tokenizer_hash");
    h.data_hash = read_string_attr(file, path, "data_hash");
    h.vocab = read_int_attr(file, path, "vocab");
    h.k = read_int_attr(file, path, "k");
    h.ctx = read_int_attr(file, path, "ctx");
    h.n_windows = read_int_attr(file, path, "n_windows");
    h.bos_id = read_int_attr(file, path, "bos_id");
    h.temperature = read_double_attr(file, path, "temperature");
    validate_header(h, path);
    const std::vector<hsize_t> d2 = {static_cast<hsize_t>(h.n_windows * h.ctx),
                                     static_cast<hsize_t>(h.k)};
    const std::vector<hsize_t> d1 = {d2[0]};
    auto open = [&](const char* name, H5T_class_t cls, const char* kind,
                    const std::vector<hsize_t>& want) {
      SLMC_CHECK(file.nameExists(name), path, ": no dataset '", name, "'");
      H5::DataSet d = file.openDataSet(name);
      SLMC_CHECK(d.getTypeClass() == cls, path, ": dataset '", name, "' must hold ", kind);
      const std::vector<hsize_t> got = dims_of(d);
      SLMC_CHECK(got == want, path, ": dataset '", name, "' has shape ", dims_str(got),
                 ", the header implies ", dims_str(want));
      return d;
    };
    m.values = open("values", H5T_FLOAT, "floats", d2);
    m.indices = open("indices", H5T_INTEGER, "integers", d2);
    m.rest = open("rest_lse", H5T_FLOAT, "floats", d1);
    m.h.f16 = m.values.getDataType().getSize() == 2;
  });
}

TopKCacheReader::~TopKCacheReader() = default;
const TopKCacheHeader& TopKCacheReader::header() const { return impl_->h; }
const std::string& TopKCacheReader::path() const { return impl_->path; }

TopKWindow TopKCacheReader::read(int64_t w) const {
  const Impl& m = *impl_;
  const TopKCacheHeader& h = m.h;
  SLMC_CHECK(w >= 0 && w < h.n_windows, m.path, ": window ", w, " outside [0, ", h.n_windows, ")");
  const hsize_t ctx = static_cast<hsize_t>(h.ctx), k = static_cast<hsize_t>(h.k);
  const hsize_t row0 = static_cast<hsize_t>(w) * ctx;
  TopKWindow out;
  std::vector<int64_t> wide(ctx * k);
  out.values.resize(ctx * k);
  out.rest_lse.resize(ctx);
  h5(m.path, "cannot read window " + std::to_string(w), [&] {
    const hsize_t c2[2] = {ctx, k}, c1[1] = {ctx};
    H5::DataSpace ms2(2, c2), ms1(1, c1);
    H5::DataSpace fv = m.values.getSpace();
    select_rows(fv, row0, ctx, k);
    m.values.read(out.values.data(), H5::PredType::NATIVE_FLOAT, ms2, fv);
    H5::DataSpace fi = m.indices.getSpace();
    select_rows(fi, row0, ctx, k);
    m.indices.read(wide.data(), H5::PredType::NATIVE_INT64, ms2, fi);
    H5::DataSpace fr = m.rest.getSpace();
    const hsize_t start[1] = {row0};
    fr.selectHyperslab(H5S_SELECT_SET, c1, start);
    m.rest.read(out.rest_lse.data(), H5::PredType::NATIVE_FLOAT, ms1, fr);
  });
  out.indices.resize(ctx * k);
  std::vector<int32_t> row;
  for (hsize_t r = 0; r < ctx; ++r) {
    const int64_t pos = w * h.ctx + static_cast<int64_t>(r);
    for (hsize_t j = 0; j < k; ++j) {
      const int64_t id = wide[r * k + j];
      SLMC_CHECK(id >= 0 && id < h.vocab, m.path, ": indices row ", pos, " holds id ", id,
                 " outside the vocab [0, ", h.vocab, ")");
      const float v = out.values[r * k + j];
      SLMC_CHECK(std::isfinite(v), m.path, ": values row ", pos, " holds ", v);
      out.indices[r * k + j] = static_cast<int32_t>(id);
    }
    row.assign(out.indices.begin() + static_cast<std::ptrdiff_t>(r * k),
               out.indices.begin() + static_cast<std::ptrdiff_t>((r + 1) * k));
    std::sort(row.begin(), row.end());
    SLMC_CHECK(std::adjacent_find(row.begin(), row.end()) == row.end(), m.path, ": indices row ",
               pos, " repeats a token id");
    const float rest = out.rest_lse[r];
    SLMC_CHECK(!std::isnan(rest) && rest != std::numeric_limits<float>::infinity(), m.path,
               ": rest_lse row ", pos, " is ", rest);
    SLMC_CHECK(h.k < h.vocab || std::isinf(rest), m.path, ": rest_lse row ", pos, " is ", rest,
               " but k = vocab leaves no rest");
  }
  return out;
}

}  // namespace slmc::distill
