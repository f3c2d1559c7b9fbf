// HDF5 token and logit files through the HDF5 C API. Every call's status is checked and turned
// into slmc::Error naming the file, the dataset and HDF5's own reason; HDF5's automatic printing
// of its error stack is switched off so nothing but that one line reaches the user.
#include "compress/io/h5.h"

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <new>
#include <optional>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"

namespace slmc {

namespace {

namespace fs = std::filesystem;

constexpr const char* kTokens = "tokens";
constexpr const char* kLogits = "logits";
constexpr const char* kTokenizerAttr = "tokenizer";
constexpr const char* kBosAttr = "bos_id";
constexpr const char* kVocabAttr = "vocab";
constexpr hsize_t kReadBlockValues = hsize_t{1} << 20;  // values per block when range-checking
constexpr hsize_t kLogitChunkBytes = hsize_t{1} << 19;  // target chunk size of `logits`
constexpr hsize_t kTokenChunk = 4096;                   // chunk length of the logit file's tokens
constexpr int64_t kMaxVocab = int64_t{1} << 28;         // one row must fit an HDF5 chunk (4 GiB)
constexpr hsize_t kMaxTokenExpansion = 64;   // int32 tokens out per byte stored (see read)
constexpr hsize_t kSmallDatasetBytes = hsize_t{1} << 16;
constexpr hsize_t kMaxChunkBytes = hsize_t{64} << 20;  // h5py's automatic chunks are <= 1 MB

void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

herr_t collect_error(unsigned, const H5E_error2_t* err, void* data) {
  if (err != nullptr && err->desc != nullptr && err->desc[0] != '\0')
    static_cast<std::vector<std::string>*>(data)->push_back(err->desc);
  return 0;
}

// HDF5's reason for the last failure: the API-level message and the innermost one, on one line.
std::string hdf5_reason() {
  std::vector<std::string> msgs;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &msgs);
  H5Eclear2(H5E_DEFAULT);
  if (msgs.empty()) return "HDF5 error";
  std::string s = msgs.front();
  if (msgs.size() > 1 && msgs.back() != msgs.front()) s += " (" + msgs.back() + ")";
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// Owns one HDF5 identifier.
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  H5Id(H5Id&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = -1;
    }
    return *this;
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  ~H5Id() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: reads like the C API it wraps
  void reset() {
    if (id_ >= 0 && closer_ != nullptr) closer_(id_);
    id_ = -1;
  }
  // Closes now and reports failure (a file's close is where buffered data is written).
  herr_t close() {
    const herr_t r = id_ >= 0 && closer_ != nullptr ? closer_(id_) : 0;
    id_ = -1;
    return r;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

template <typename... Args>
H5Id checked(hid_t id, H5Id::Closer closer, Args&&... what) {
  if (id < 0) {
    const std::string reason = hdf5_reason();
    fail(std::forward<Args>(what)..., ": ", reason);
  }
  return H5Id(id, closer);
}

template <typename... Args>
void check(herr_t status, Args&&... what) {
  if (status < 0) {
    const std::string reason = hdf5_reason();
    fail(std::forward<Args>(what)..., ": ", reason);
  }
}

std::string dims_str(const std::vector<hsize_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

const char* class_name(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER:
      return "integer";
    case H5T_FLOAT:
      return "float";
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum";
    case H5T_ARRAY:
      return "array";
    case H5T_VLEN:
      return "variable-length";
    default:
      return "non-numeric";
  }
}

H5Id open_file_readonly(const std::string& path, const char* expected) {
  silence_hdf5();
  std::error_code ec;
  SLMC_CHECK(fs::exists(path, ec), path, ": no such file (expected ", expected, ")");
  SLMC_CHECK(fs::is_regular_file(path, ec), path, ": not a regular file (expected ", expected, ")");
  SLMC_CHECK(H5Fis_hdf5(path.c_str()) > 0, path, ": not an HDF5 file (expected ", expected, ")");
  return checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path,
                 ": cannot open HDF5 file");
}

H5Id open_dataset(hid_t file, const std::string& path, const char* name, const char* expected) {
  const htri_t exists = H5Lexists(file, name, H5P_DEFAULT);
  check(exists, path, ": cannot look up dataset '", name, "'");
  SLMC_CHECK(exists > 0, path, ": no dataset '", name, "' (expected ", expected, ")");
  return checked(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose, path, ": '", name,
                 "' is not a readable dataset");
}

// Shape of a dataset; rank 0 for a scalar.
std::vector<hsize_t> dataset_dims(hid_t dset, const std::string& path, const char* name) {
  H5Id space = checked(H5Dget_space(dset), H5Sclose, path, ": dataset '", name, "': no dataspace");
  const H5S_class_t cls = H5Sget_simple_extent_type(space);
  SLMC_CHECK(cls != H5S_NULL && cls != H5S_NO_CLASS, path, ": dataset '", name,
             "' has an empty (null) dataspace");
  const int rank = H5Sget_simple_extent_ndims(space);
  check(rank, path, ": dataset '", name, "': cannot read its rank");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0)
    check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), path, ": dataset '", name,
          "': cannot read its shape");
  return dims;
}

H5T_class_t type_class(hid_t dset, const std::string& path, const char* name, H5T_sign_t* sign,
                       size_t* size) {
  H5Id type = checked(H5Dget_type(dset), H5Tclose, path, ": dataset '", name, "': no datatype");
  const H5T_class_t cls = H5Tget_class(type);
  if (sign != nullptr) *sign = H5Tget_sign(type);
  if (size != nullptr) *size = H5Tget_size(type);
  return cls;
}

// Where a dataset's values live, checked before reading them: only in this file (external
// storage or a virtual dataset would make a token file read whatever file it names), and in
// chunks of bounded size (HDF5 decompresses a whole chunk into a buffer of the chunk's size,
// whatever the file stores).
void check_storage(hid_t dset, const std::string& path, const char* name, size_t type_size) {
  H5Id dcpl = checked(H5Dget_create_plist(dset), H5Pclose, path, ": dataset '", name, "'");
  const H5D_layout_t layout = H5Pget_layout(dcpl);
  const int external = H5Pget_external_count(dcpl);
  SLMC_CHECK((layout == H5D_COMPACT || layout == H5D_CONTIGUOUS || layout == H5D_CHUNKED) &&
                 external == 0,
             path, ": dataset '", name, "' keeps its data outside the file (layout ",
             static_cast<int>(layout), ", ", external, " external files); only data stored in the file is read");
  if (layout != H5D_CHUNKED) return;
  hsize_t chunk[H5S_MAX_RANK];
  const int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk);
  check(rank, path, ": dataset '", name, "': cannot read its chunk shape");
  hsize_t chunk_bytes = std::max<size_t>(type_size, 1);
  for (int i = 0; i < rank; ++i)
    SLMC_CHECK(!__builtin_mul_overflow(chunk_bytes, chunk[i], &chunk_bytes) &&
                   chunk_bytes <= kMaxChunkBytes,
               path, ": dataset '", name, "' has chunks of more than ", kMaxChunkBytes, " bytes");
}

// Reads `count` integers of dataset `name` starting at flat row `row0` of a (rows, inner) view
// into int32, failing on values outside the int32 range. HDF5 would clip them silently.
void read_ints_checked(hid_t dset, const std::string& path, const char* name,
                       const std::vector<hsize_t>& dims, hsize_t row0, hsize_t rows, int32_t* out) {
  H5T_sign_t sign = H5T_SGN_ERROR;
  size_t size = 0;
  type_class(dset, path, name, &sign, &size);
  const bool is_signed = sign == H5T_SGN_2;
  const hsize_t inner = dims.size() == 2 ? dims[1] : 1;
  const bool direct = (is_signed && size <= 4) || (!is_signed && size <= 2);
  const hsize_t block_rows =
      direct ? rows : std::max<hsize_t>(1, kReadBlockValues / std::max<hsize_t>(inner, 1));
  std::vector<int64_t> wide;
  H5Id fspace = checked(H5Dget_space(dset), H5Sclose, path, ": dataset '", name, "'");
  for (hsize_t r = 0; r < rows; r += block_rows) {
    const hsize_t n = std::min(block_rows, rows - r);
    const hsize_t start[2] = {row0 + r, 0};
    const hsize_t count[2] = {n, inner};
    check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr), path,
          ": dataset '", name, "': cannot select rows ", row0 + r, "..", row0 + r + n);
    const hsize_t values = n * inner;
    H5Id mspace =
        checked(H5Screate_simple(1, &values, nullptr), H5Sclose, path, ": dataset '", name, "'");
    int32_t* dst = out + (r * inner);
    if (direct) {
      check(H5Dread(dset, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, dst), path,
            ": cannot read dataset '", name, "'");
      continue;
    }
    wide.resize(values);
    check(H5Dread(dset, is_signed ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64, mspace, fspace,
                  H5P_DEFAULT, wide.data()),
          path, ": cannot read dataset '", name, "'");
    for (hsize_t i = 0; i < values; ++i) {
      const bool fits = is_signed ? wide[i] >= INT32_MIN && wide[i] <= INT32_MAX
                                  : static_cast<uint64_t>(wide[i]) <= INT32_MAX;
      if (!fits) {
        const hsize_t flat = (row0 + r) * inner + i;
        if (is_signed)
          fail(path, ": dataset '", name, "' value ", wide[i], " at flat index ", flat,
               " does not fit int32");
        fail(path, ": dataset '", name, "' value ", static_cast<uint64_t>(wide[i]),
             " at flat index ", flat, " does not fit int32");
      }
      dst[i] = static_cast<int32_t>(wide[i]);
    }
  }
}

// One-element attribute check; returns the open attribute or nullopt if absent.
std::optional<H5Id> open_attr(hid_t obj, const std::string& path, const char* name) {
  const htri_t exists = H5Aexists(obj, name);
  check(exists, path, ": cannot look up attribute '", name, "'");
  if (exists == 0) return std::nullopt;
  H5Id attr = checked(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, path, ": cannot open attribute '",
                      name, "'");
  H5Id space = checked(H5Aget_space(attr), H5Sclose, path, ": attribute '", name, "'");
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  SLMC_CHECK(n == 1, path, ": attribute '", name, "' must hold one value, holds ", n);
  return attr;
}

std::optional<std::string> read_string_attr(hid_t obj, const std::string& path, const char* name) {
  std::optional<H5Id> attr = open_attr(obj, path, name);
  if (!attr) return std::nullopt;
  H5Id ftype = checked(H5Aget_type(*attr), H5Tclose, path, ": attribute '", name, "'");
  SLMC_CHECK(H5Tget_class(ftype) == H5T_STRING, path, ": attribute '", name,
             "' must be a string, "
             "it is ",
             class_name(H5Tget_class(ftype)));
  H5Id mtype = checked(H5Tcopy(H5T_C_S1), H5Tclose, path, ": attribute '", name, "'");
  check(H5Tset_cset(mtype, H5Tget_cset(ftype)), path, ": attribute '", name, "'");
  const htri_t is_vlen = H5Tis_variable_str(ftype);
  check(is_vlen, path, ": attribute '", name, "'");
  if (is_vlen > 0) {
    check(H5Tset_size(mtype, H5T_VARIABLE), path, ": attribute '", name, "'");
    char* s = nullptr;
    check(H5Aread(*attr, mtype, &s), path, ": cannot read attribute '", name, "'");
    std::string out = s != nullptr ? s : "";
    H5free_memory(s);
    return out;
  }
  const size_t size = H5Tget_size(ftype);
  SLMC_CHECK(size > 0 && size < (size_t{1} << 24), path, ": attribute '", name,
             "' has an implausible string size ", size);
  // One byte more than stored: a NULLPAD/SPACEPAD string may fill its size with no terminator.
  check(H5Tset_size(mtype, size + 1), path, ": attribute '", name, "'");
  std::string buf(size + 1, '\0');
  check(H5Aread(*attr, mtype, buf.data()), path, ": cannot read attribute '", name, "'");
  buf.resize(std::strlen(buf.c_str()));  // fixed-size strings are NUL padded
  return buf;
}

std::optional<int64_t> read_int_attr(hid_t obj, const std::string& path, const char* name) {
  std::optional<H5Id> attr = open_attr(obj, path, name);
  if (!attr) return std::nullopt;
  H5Id ftype = checked(H5Aget_type(*attr), H5Tclose, path, ": attribute '", name, "'");
  SLMC_CHECK(H5Tget_class(ftype) == H5T_INTEGER, path, ": attribute '", name,
             "' must be an integer, it is ", class_name(H5Tget_class(ftype)));
  int64_t v = 0;
  check(H5Aread(*attr, H5T_NATIVE_INT64, &v), path, ": cannot read attribute '", name, "'");
  return v;
}

void write_scalar_attr(hid_t obj, const std::string& path, const char* name, hid_t ftype,
                       hid_t mtype, const void* value) {
  H5Id space = checked(H5Screate(H5S_SCALAR), H5Sclose, path, ": attribute '", name, "'");
  H5Id attr = checked(H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, path,
                      ": cannot create attribute '", name, "'");
  check(H5Awrite(attr, mtype, value), path, ": cannot write attribute '", name, "'");
}

void write_string_attr(hid_t obj, const std::string& path, const char* name,
                       const std::string& value) {
  H5Id type = checked(H5Tcopy(H5T_C_S1), H5Tclose, path, ": attribute '", name, "'");
  check(H5Tset_size(type, H5T_VARIABLE), path, ": attribute '", name, "'");
  check(H5Tset_cset(type, H5T_CSET_UTF8), path, ": attribute '", name, "'");
  const char* p = value.c_str();
  write_scalar_attr(obj, path, name, type, type, &p);
}

std::string temp_path(const std::string& path) {
  static std::atomic<int> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

}  // namespace

bool is_hdf5_file(const std::string& path) {
  silence_hdf5();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  const htri_t r = H5Fis_hdf5(path.c_str());
  H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

TokenData read_tokens_h5(const std::string& path) {
  constexpr const char* kExpected = "an HDF5 token file with an integer dataset 'tokens'";
  H5Id file = open_file_readonly(path, kExpected);
  H5Id dset = open_dataset(file, path, kTokens, "integer token ids, 1-D or 2-D");
  size_t type_size = 0;
  const H5T_class_t cls = type_class(dset, path, kTokens, nullptr, &type_size);
  SLMC_CHECK(cls == H5T_INTEGER, path, ": dataset 'tokens' holds ", class_name(cls),
             " values; expected integer token ids");
  const std::vector<hsize_t> dims = dataset_dims(dset, path, kTokens);
  SLMC_CHECK(dims.size() == 1 || dims.size() == 2, path, ": dataset 'tokens' has rank ",
             dims.size(), " (shape ", dims_str(dims),
             "); expected rank 1 (a token stream) or 2 (one row per sequence)");
  hsize_t numel = 1;
  for (hsize_t d : dims)
    SLMC_CHECK(!__builtin_mul_overflow(numel, d, &numel), path, ": dataset 'tokens' shape ",
               dims_str(dims), " overflows");
  SLMC_CHECK(numel > 0, path, ": dataset 'tokens' is empty (shape ", dims_str(dims), ")");
  SLMC_CHECK(numel <= static_cast<hsize_t>(INT64_MAX) / 8, path, ": dataset 'tokens' shape ",
             dims_str(dims), " is too large");
  // A crafted file can declare any shape while storing nothing (unwritten chunks read as fill
  // values): the int32 tokens we allocate are bounded by what is stored. Token ids compress
  // poorly (a real stream is at most a few times smaller under deflate); kMaxTokenExpansion
  // leaves room for padded rows, and small datasets are always fine.
  std::error_code ec;
  const hsize_t file_bytes = fs::file_size(path, ec);
  SLMC_CHECK(!ec, path, ": cannot stat: ", ec.message());
  // What the file says it stores, which a corrupt file can overstate: at most the file itself.
  const hsize_t stored = std::min<hsize_t>(H5Dget_storage_size(dset), file_bytes);
  const hsize_t out_bytes = numel * sizeof(int32_t);
  SLMC_CHECK(out_bytes <= kSmallDatasetBytes || out_bytes / kMaxTokenExpansion <= stored, path,
             ": dataset 'tokens' declares ", numel, " values (", out_bytes,
             " bytes as int32) but stores only ", stored, " bytes");
  check_storage(dset, path, kTokens, type_size);

  TokenData out;
  try {
    out.tokens.resize(static_cast<size_t>(numel));
  } catch (const std::bad_alloc&) {
    fail(path, ": dataset 'tokens' shape ", dims_str(dims), " (", numel,
         " tokens) does not fit in memory");
  }
  read_ints_checked(dset, path, kTokens, dims, 0, dims[0], out.tokens.data());
  if (dims.size() == 2) {
    out.rows = static_cast<int64_t>(dims[0]);
    out.cols = static_cast<int64_t>(dims[1]);
  }
  // Attributes live on the dataset; files from other tools may put them on the root group.
  H5Id root = checked(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose, path, ": cannot open '/'");
  std::optional<std::string> tok = read_string_attr(dset, path, kTokenizerAttr);
  if (!tok) tok = read_string_attr(root, path, kTokenizerAttr);
  if (tok) out.tokenizer = *tok;
  std::optional<int64_t> bos = read_int_attr(dset, path, kBosAttr);
  if (!bos) bos = read_int_attr(root, path, kBosAttr);
  if (bos) out.bos_id = *bos;
  return out;
}

void write_tokens_h5(const std::string& path, const TokenData& data) {
  silence_hdf5();
  const int64_t n = static_cast<int64_t>(data.tokens.size());
  SLMC_CHECK(n > 0, path, ": no tokens to write");
  std::vector<hsize_t> dims;
  if (data.rows == 0) {
    dims = {static_cast<hsize_t>(n)};
  } else {
    SLMC_CHECK(data.rows > 0 && data.cols > 0 && data.rows * data.cols == n, path, ": rows ",
               data.rows, " x cols ", data.cols, " does not match ", n, " tokens");
    dims = {static_cast<hsize_t>(data.rows), static_cast<hsize_t>(data.cols)};
  }
  write_atomically(path, [&](const std::string& tmp) {
    H5Id file = checked(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                        path, ": cannot create HDF5 file ", tmp);
    {
      H5Id space = checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                           H5Sclose, path, ": dataset 'tokens'");
      H5Id dset = checked(
          H5Dcreate2(file, kTokens, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
          H5Dclose, path, ": cannot create dataset 'tokens'");
      check(H5Dwrite(dset, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.tokens.data()),
            path, ": cannot write dataset 'tokens'");
      if (!data.tokenizer.empty()) write_string_attr(dset, path, kTokenizerAttr, data.tokenizer);
      if (data.bos_id >= 0)
        write_scalar_attr(dset, path, kBosAttr, H5T_STD_I64LE, H5T_NATIVE_INT64, &data.bos_id);
      check(dset.close(), path, ": cannot close dataset 'tokens'");
    }
    check(file.close(), path, ": cannot finish writing ", tmp);
  });
}

// ---------------------------------------------------------------------------------------------
// Logits

struct LogitWriter::Impl {
  std::string path;
  std::string tmp;
  int64_t vocab = 0;
  int64_t n = 0;
  bool committed = false;
  H5Id file, logits, tokens;  // destroyed in reverse order: datasets before their file

  void discard() {
    tokens.reset();
    logits.reset();
    file.reset();
    std::remove(tmp.c_str());
  }
};

LogitWriter::LogitWriter(const std::string& path, int64_t vocab) : impl_(new Impl) {
  silence_hdf5();
  SLMC_CHECK(vocab > 0 && vocab <= kMaxVocab, path, ": logit file vocab must be in [1, ", kMaxVocab,
             "], got ", vocab);
  Impl& m = *impl_;
  m.path = path;
  m.tmp = temp_path(path);
  m.vocab = vocab;
  try {
    m.file = checked(H5Fcreate(m.tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                     path, ": cannot create HDF5 file ", m.tmp);
    const hsize_t row_bytes = static_cast<hsize_t>(vocab) * sizeof(float);
    {
      const hsize_t dims[2] = {0, static_cast<hsize_t>(vocab)};
      const hsize_t maxdims[2] = {H5S_UNLIMITED, static_cast<hsize_t>(vocab)};
      const hsize_t chunk[2] = {std::max<hsize_t>(1, kLogitChunkBytes / row_bytes),
                                static_cast<hsize_t>(vocab)};
      H5Id space = checked(H5Screate_simple(2, dims, maxdims), H5Sclose, path, ": 'logits'");
      H5Id dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, path, ": 'logits'");
      check(H5Pset_chunk(dcpl, 2, chunk), path, ": 'logits': cannot set chunking");
      // Rows arrive in arbitrary batches: keep a few chunks cached so partial chunks are not
      // written and re-read.
      H5Id dapl = checked(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose, path, ": 'logits'");
      check(H5Pset_chunk_cache(dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT,
                               std::max<hsize_t>(4 * chunk[0] * row_bytes, 1 << 20),
                               H5D_CHUNK_CACHE_W0_DEFAULT),
            path, ": 'logits': cannot set the chunk cache");
      m.logits =
          checked(H5Dcreate2(m.file, kLogits, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, dapl),
                  H5Dclose, path, ": cannot create dataset 'logits'");
    }
    {
      const hsize_t dims[1] = {0};
      const hsize_t maxdims[1] = {H5S_UNLIMITED};
      const hsize_t chunk[1] = {kTokenChunk};
      H5Id space = checked(H5Screate_simple(1, dims, maxdims), H5Sclose, path, ": 'tokens'");
      H5Id dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, path, ": 'tokens'");
      check(H5Pset_chunk(dcpl, 1, chunk), path, ": 'tokens': cannot set chunking");
      m.tokens =
          checked(H5Dcreate2(m.file, kTokens, H5T_STD_I32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                  H5Dclose, path, ": cannot create dataset 'tokens'");
    }
    write_scalar_attr(m.file, path, kVocabAttr, H5T_STD_I64LE, H5T_NATIVE_INT64, &m.vocab);
  } catch (...) {
    m.discard();
    throw;
  }
}

LogitWriter::~LogitWriter() {
  if (impl_ && !impl_->committed) impl_->discard();
}

void LogitWriter::append(const float* logits, const int32_t* targets, int64_t n) {
  Impl& m = *impl_;
  SLMC_CHECK(!m.committed, m.path, ": append after commit");
  SLMC_CHECK(n >= 0, m.path, ": cannot append ", n, " positions");
  if (n == 0) return;
  const hsize_t cur = static_cast<hsize_t>(m.n);
  const hsize_t count = static_cast<hsize_t>(n);
  const hsize_t vocab = static_cast<hsize_t>(m.vocab);
  {
    const hsize_t size[2] = {cur + count, vocab};
    check(H5Dset_extent(m.logits, size), m.path, ": cannot grow dataset 'logits' to ", cur + count,
          " rows");
    H5Id fspace = checked(H5Dget_space(m.logits), H5Sclose, m.path, ": 'logits'");
    const hsize_t start[2] = {cur, 0};
    const hsize_t block[2] = {count, vocab};
    check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, block, nullptr), m.path,
          ": 'logits'");
    H5Id mspace = checked(H5Screate_simple(2, block, nullptr), H5Sclose, m.path, ": 'logits'");
    check(H5Dwrite(m.logits, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, logits), m.path,
          ": cannot write rows ", cur, "..", cur + count, " of dataset 'logits'");
  }
  {
    const hsize_t size[1] = {cur + count};
    check(H5Dset_extent(m.tokens, size), m.path, ": cannot grow dataset 'tokens'");
    H5Id fspace = checked(H5Dget_space(m.tokens), H5Sclose, m.path, ": 'tokens'");
    const hsize_t start[1] = {cur};
    const hsize_t block[1] = {count};
    check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, block, nullptr), m.path,
          ": 'tokens'");
    H5Id mspace = checked(H5Screate_simple(1, block, nullptr), H5Sclose, m.path, ": 'tokens'");
    check(H5Dwrite(m.tokens, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, targets), m.path,
          ": cannot write dataset 'tokens'");
  }
  m.n += n;
}

void LogitWriter::commit() {
  Impl& m = *impl_;
  SLMC_CHECK(!m.committed, m.path, ": commit called twice");
  check(m.tokens.close(), m.path, ": cannot close dataset 'tokens'");
  check(m.logits.close(), m.path, ": cannot close dataset 'logits'");
  check(m.file.close(), m.path, ": cannot finish writing ", m.tmp);
  if (std::rename(m.tmp.c_str(), m.path.c_str()) != 0)
    fail(m.path, ": cannot rename ", m.tmp, " into place: ", std::strerror(errno));
  m.committed = true;
}

struct LogitReader::Impl {
  std::string path;
  int64_t n = 0;
  int64_t vocab = 0;
  std::vector<hsize_t> token_dims;
  H5Id file, logits, tokens;
};

LogitReader::LogitReader(const std::string& path) : impl_(new Impl) {
  constexpr const char* kExpected = "an HDF5 logit file with datasets 'logits' and 'tokens'";
  Impl& m = *impl_;
  m.path = path;
  m.file = open_file_readonly(path, kExpected);
  m.logits = open_dataset(m.file, path, kLogits, "float logits [n_positions, vocab]");
  const H5T_class_t lcls = type_class(m.logits, path, kLogits, nullptr, nullptr);
  SLMC_CHECK(lcls == H5T_FLOAT, path, ": dataset 'logits' holds ", class_name(lcls),
             " values; expected float");
  const std::vector<hsize_t> ldims = dataset_dims(m.logits, path, kLogits);
  SLMC_CHECK(ldims.size() == 2 && ldims[1] > 0 && ldims[1] <= static_cast<hsize_t>(kMaxVocab) &&
                 ldims[0] <= static_cast<hsize_t>(INT64_MAX),
             path, ": dataset 'logits' has shape ", dims_str(ldims),
             "; expected [n_positions, vocab]");
  size_t logit_size = 0;
  type_class(m.logits, path, kLogits, nullptr, &logit_size);
  check_storage(m.logits, path, kLogits, logit_size);
  m.n = static_cast<int64_t>(ldims[0]);
  m.vocab = static_cast<int64_t>(ldims[1]);
  m.tokens = open_dataset(m.file, path, kTokens, "the target token id of each position");
  const H5T_class_t tcls = type_class(m.tokens, path, kTokens, nullptr, nullptr);
  SLMC_CHECK(tcls == H5T_INTEGER, path, ": dataset 'tokens' holds ", class_name(tcls),
             " values; expected integer token ids");
  m.token_dims = dataset_dims(m.tokens, path, kTokens);
  size_t token_size = 0;
  type_class(m.tokens, path, kTokens, nullptr, &token_size);
  check_storage(m.tokens, path, kTokens, token_size);
  SLMC_CHECK(m.token_dims.size() == 1 && m.token_dims[0] == ldims[0], path,
             ": dataset 'tokens' has shape ", dims_str(m.token_dims), "; expected [", ldims[0],
             "] to match 'logits' ", dims_str(ldims));
  const std::optional<int64_t> vocab = read_int_attr(m.file, path, kVocabAttr);
  SLMC_CHECK(!vocab || *vocab == m.vocab, path, ": attribute 'vocab' = ", vocab.value_or(0),
             " disagrees with 'logits' shape ", dims_str(ldims));
}

LogitReader::~LogitReader() = default;

int64_t LogitReader::n_positions() const { return impl_->n; }
int64_t LogitReader::vocab() const { return impl_->vocab; }

void LogitReader::read(int64_t begin, int64_t n, float* out, int32_t* targets) const {
  const Impl& m = *impl_;
  SLMC_CHECK(begin >= 0 && n >= 0 && begin <= m.n && n <= m.n - begin, m.path,
             ": cannot read positions [", begin, ", ", begin + n, ") of ", m.n);
  if (n == 0) return;
  const hsize_t start[2] = {static_cast<hsize_t>(begin), 0};
  const hsize_t block[2] = {static_cast<hsize_t>(n), static_cast<hsize_t>(m.vocab)};
  H5Id fspace = checked(H5Dget_space(m.logits), H5Sclose, m.path, ": 'logits'");
  check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, block, nullptr), m.path,
        ": 'logits'");
  H5Id mspace = checked(H5Screate_simple(2, block, nullptr), H5Sclose, m.path, ": 'logits'");
  check(H5Dread(m.logits, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, out), m.path,
        ": cannot read rows ", begin, "..", begin + n, " of dataset 'logits'");
  read_ints_checked(m.tokens, m.path, kTokens, m.token_dims, static_cast<hsize_t>(begin),
                    static_cast<hsize_t>(n), targets);
}

}  // namespace slmc
