#include "export/format/slm_format.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <set>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/float16.h"
#include "compress/core/mapped_file.h"
#include "compress/core/tensor_names.h"

namespace slmc::format {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the .slm reader and writer copy little-endian fields as they are in memory");

namespace {

// Smallest table record: name_len, a 1-byte name, format, n_dims, one dim, offset, n_bytes.
constexpr uint64_t kMinRecordBytes = 4 + 1 + 4 + 4 + 8 + 8 + 8;

uint64_t align_up(uint64_t x) { return (x + kSlmAlign - 1) / kSlmAlign * kSlmAlign; }

// Tensor names go into one-line error messages: no control bytes (UTF-8 is fine).
bool name_is_printable(const std::string& name) {
  for (const char ch : name) {
    const auto c = static_cast<uint8_t>(ch);
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::string known_format_ids() {
  std::string s;
  for (const codec::FormatInfo& f : codec::all_formats())
    s += str_cat(s.empty() ? "" : ", ", f.name, " ", static_cast<uint32_t>(f.id));
  return s;
}

std::string known_kinds() {
  std::string s;
  for (const char* k : kSlmTokenizerKinds) s += str_cat(s.empty() ? "" : ", ", k);
  return s;
}

// Checks that `tensors` (name, shape) are exactly what `spec` declares; `origin` prefixes errors.
void check_against_spec(const ModelSpec& spec,
                        const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors,
                        const std::string& origin) {
  std::map<std::string, const std::vector<int64_t>*> have;
  for (const auto& t : tensors) have[t.first] = &t.second;
  std::set<std::string> expected;
  for (const TensorDecl& d : expected_tensors(spec)) {
    expected.insert(d.name);
    const auto it = have.find(d.name);
    SLMC_CHECK(it != have.end(), origin, ": tensor table lacks ", d.name, " ", shape_str(d.shape),
               " that the spec requires");
    SLMC_CHECK(*it->second == d.shape, origin, ": tensor ", d.name, " has shape ",
               shape_str(*it->second), ", the spec implies ", shape_str(d.shape));
  }
  for (const auto& t : tensors)
    SLMC_CHECK(expected.count(t.first), origin, ": tensor ", t.first, " ", shape_str(t.second),
               " is not part of the spec");
}

// Reads the spec, folding ModelSpec::validate()'s messages (which name no file) into one line
// that names `path`.
ModelSpec parse_spec(const std::string& json, const std::string& path) {
  const std::string origin = path + ": spec";
  try {
    return ModelSpec::from_json(json, origin);
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.compare(0, origin.size(), origin) == 0) throw;
    fail(origin, ": ", msg);
  }
}

// Bounds-checked little-endian reads from the tensor table.
class TableCursor {
 public:
  TableCursor(const uint8_t* base, uint64_t begin, uint64_t end, const std::string& path)
      : base_(base), pos_(begin), end_(end), path_(path) {}

  // Reads `n` bytes for `field` of record `record` into `out`.
  void read(uint64_t record, const char* field, void* out, uint64_t n) {
    SLMC_CHECK(n <= end_ - pos_, path_, ": tensor table record ", record, ": ", field, " (", n,
               " bytes at offset ", pos_, ") runs past the table's end at offset ", end_);
    std::memcpy(out, base_ + pos_, n);
    pos_ += n;
  }
  template <typename T>
  T get(uint64_t record, const char* field) {
    T v;
    read(record, field, &v, sizeof(T));
    return v;
  }
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return end_ - pos_; }

 private:
  const uint8_t* base_;
  uint64_t pos_, end_;
  const std::string& path_;
};

}  // namespace

bool slm_tokenizer_kind_known(const std::string& kind) {
  for (const char* k : kSlmTokenizerKinds)
    if (kind == k) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Reader

SlmFile::SlmFile(const std::string& path) : path_(path) {
  MappedFile file(path);
  const uint8_t* base = file.data();
  const uint64_t size = file.size();
  const std::string& p = path_;

  SLMC_CHECK(size >= sizeof(SlmHeader), p, ": ", size, " bytes is too short for the ",
             sizeof(SlmHeader), "-byte .slm header (truncated file?)");
  SlmHeader h;
  std::memcpy(&h, base, sizeof h);
  SLMC_CHECK(std::memcmp(h.magic, kSlmMagic, sizeof kSlmMagic) == 0, p,
             ": not an .slm file: magic is ", quoted_excerpt(std::string_view(h.magic, sizeof h.magic)), ", expected ",
             quoted_excerpt(std::string_view(kSlmMagic, sizeof kSlmMagic)));
  SLMC_CHECK(h.version != 0, p, ": version 0 is not a valid .slm version");
  SLMC_CHECK(h.version <= kSlmVersion, p, ": version ", h.version,
             " is newer than this slmc (reads ", kSlmVersion, ")");
  SLMC_CHECK(h.header_bytes == sizeof(SlmHeader), p, ": header_bytes is ", h.header_bytes,
             ", version ", h.version, " headers are ", sizeof(SlmHeader));
  SLMC_CHECK(h.file_bytes == size, p, ": header says file_bytes ", h.file_bytes,
             " but the file has ", size, " bytes (truncated or appended to?)");
  for (size_t i = 0; i < sizeof h.reserved; ++i)
    SLMC_CHECK(h.reserved[i] == 0, p, ": reserved header byte ", i, " is ",
               static_cast<int>(h.reserved[i]), ", must be 0");

  // Tokenizer kind: NUL-terminated inside its 16 bytes, zero after the NUL, known or empty.
  const char* kind_end =
      static_cast<const char*>(std::memchr(h.tokenizer_kind, '\0', sizeof h.tokenizer_kind));
  SLMC_CHECK(kind_end != nullptr, p, ": tokenizer_kind is not NUL-terminated within ",
             sizeof h.tokenizer_kind, " bytes");
  tokenizer_kind_.assign(static_cast<const char*>(h.tokenizer_kind), kind_end);
  for (const char* c = kind_end; c < h.tokenizer_kind + sizeof h.tokenizer_kind; ++c)
    SLMC_CHECK(*c == '\0', p, ": tokenizer_kind has bytes after its NUL terminator");
  SLMC_CHECK(tokenizer_kind_.empty() || slm_tokenizer_kind_known(tokenizer_kind_), p,
             ": unknown tokenizer_kind ", quoted_excerpt(tokenizer_kind_),
             " (known: ", known_kinds(), ", or empty for none)");

  // Sections: inside the file, after the header, before the data, not overlapping each other.
  SLMC_CHECK(h.data_offset % kSlmAlign == 0, p, ": data_offset ", h.data_offset,
             " is not a multiple of ", kSlmAlign);
  SLMC_CHECK(h.data_offset >= h.header_bytes && h.data_offset <= size, p, ": data_offset ",
             h.data_offset, " is outside [", h.header_bytes, ", ", size, "]");
  struct Section {
    const char* name;
    uint64_t offset, bytes;
  };
  const Section sections[] = {{"spec", h.spec_offset, h.spec_bytes},
                              {"tokenizer", h.tokenizer_offset, h.tokenizer_bytes},
                              {"table", h.table_offset, h.table_bytes}};
  for (const Section& s : sections) {
    uint64_t end = 0;
    SLMC_CHECK(add_u64(s.offset, s.bytes, &end) && end <= size, p, ": ", s.name,
               " section (offset ", s.offset, ", ", s.bytes, " bytes) extends beyond the file's ",
               size, " bytes");
    if (s.bytes == 0) continue;
    SLMC_CHECK(s.offset >= h.header_bytes, p, ": ", s.name, "_offset ", s.offset, " overlaps the ",
               h.header_bytes, "-byte header");
    SLMC_CHECK(end <= h.data_offset, p, ": ", s.name, " section [", s.offset, ", ", end,
               ") overlaps the tensor data, which starts at data_offset ", h.data_offset);
  }
  for (size_t i = 0; i < 3; ++i)
    for (size_t j = i + 1; j < 3; ++j) {
      const Section& a = sections[i];
      const Section& b = sections[j];
      if (a.bytes == 0 || b.bytes == 0) continue;
      SLMC_CHECK(a.offset + a.bytes <= b.offset || b.offset + b.bytes <= a.offset, p, ": ", a.name,
                 " section [", a.offset, ", ", a.offset + a.bytes, ") overlaps ", b.name,
                 " section [", b.offset, ", ", b.offset + b.bytes, ")");
    }

  // Spec.
  SLMC_CHECK(h.spec_bytes > 0, p, ": spec_bytes is 0 (the model spec JSON is required)");
  spec_json_.assign(reinterpret_cast<const char*>(base + h.spec_offset), h.spec_bytes);
  spec_ = parse_spec(spec_json_, p);

  // Tokenizer.
  if (tokenizer_kind_.empty()) {
    SLMC_CHECK(h.tokenizer_bytes == 0, p, ": tokenizer_kind is empty (no tokenizer) but ",
               "tokenizer_bytes is ", h.tokenizer_bytes);
  } else if (tokenizer_kind_ != "byte") {
    SLMC_CHECK(h.tokenizer_bytes > 0, p, ": tokenizer_kind \"", tokenizer_kind_,
               "\" with tokenizer_bytes 0");
  }
  tok_off_ = h.tokenizer_offset;
  tok_bytes_ = h.tokenizer_bytes;

  // Tensor table.
  SLMC_CHECK(h.n_tensors <= h.table_bytes / kMinRecordBytes, p, ": n_tensors ", h.n_tensors,
             " cannot fit in a table of ", h.table_bytes, " bytes (records take at least ",
             kMinRecordBytes, ")");
  // The spec's tensor table (expected_tensors) is built below: bound it by what this file's table
  // can hold first, so a small file cannot declare millions of tensors.
  SLMC_CHECK(static_cast<uint64_t>(spec_.min_tensor_count()) <= h.n_tensors, p, ": spec key 'layers' (",
             spec_.n_layer(), " layers",
             spec_.layers.front().is_moe() ? str_cat(", n_expert ", spec_.layers.front().n_expert) : "",
             ") implies at least ", spec_.min_tensor_count(), " tensors, the table holds n_tensors ",
             h.n_tensors);
  TableCursor cur(base, h.table_offset, h.table_offset + h.table_bytes, p);
  std::set<std::string> names;
  tensors_.reserve(h.n_tensors);
  for (uint64_t i = 0; i < h.n_tensors; ++i) {
    SlmTensor t;
    const uint32_t name_len = cur.get<uint32_t>(i, "name_len");
    SLMC_CHECK(name_len >= 1 && name_len <= kSlmMaxNameBytes, p, ": tensor table record ", i,
               ": name_len ", name_len, " is outside [1, ", kSlmMaxNameBytes, "]");
    t.name.resize(name_len);
    cur.read(i, "name", t.name.data(), name_len);
    SLMC_CHECK(name_is_printable(t.name), p, ": tensor table record ", i, ": name ",
               quoted_excerpt(t.name), " contains a control byte");
    SLMC_CHECK(names.insert(t.name).second, p, ": tensor ", t.name, " appears twice in the table");

    const uint32_t format_id = cur.get<uint32_t>(i, "format");
    SLMC_CHECK(codec::format_from_id(format_id, &t.format), p, ": tensor ", t.name,
               ": unknown format id ", format_id, " (known: ", known_format_ids(), ")");
    const uint32_t n_dims = cur.get<uint32_t>(i, "n_dims");
    SLMC_CHECK(n_dims >= 1 && n_dims <= kSlmMaxDims, p, ": tensor ", t.name, ": n_dims ", n_dims,
               " is outside [1, ", kSlmMaxDims, "]");
    t.shape.resize(n_dims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      t.shape[d] = cur.get<int64_t>(i, "dims");
      SLMC_CHECK(t.shape[d] > 0, p, ": tensor ", t.name, ": dims[", d, "] is ", t.shape[d],
                 " (must be > 0)");
      SLMC_CHECK(mul_u64(numel, static_cast<uint64_t>(t.shape[d]), &numel) &&
                     numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                 p, ": tensor ", t.name, ": shape ", shape_str(t.shape), " overflows 2^63 weights");
    }
    t.offset = cur.get<uint64_t>(i, "offset");
    t.n_bytes = cur.get<uint64_t>(i, "n_bytes");

    const int64_t cols = t.shape.back();
    const uint64_t rows = numel / static_cast<uint64_t>(cols);
    const codec::FormatInfo& fi = codec::format_info(t.format);
    SLMC_CHECK(codec::row_fits(t.format, cols), p, ": tensor ", t.name, ": format ", fi.name,
               " needs rows of a multiple of ", fi.block_size, " weights, shape ",
               shape_str(t.shape), " has ", cols);
    uint64_t expected = 0;
    SLMC_CHECK(mul_u64(codec::row_bytes(t.format, cols), rows, &expected), p, ": tensor ", t.name,
               ": shape ", shape_str(t.shape), " in ", fi.name, " overflows 2^64 bytes");
    SLMC_CHECK(t.n_bytes == expected, p, ": tensor ", t.name, ": n_bytes is ", t.n_bytes,
               " but shape ", shape_str(t.shape), " in ", fi.name, " takes ", expected);
    SLMC_CHECK(t.offset % kSlmAlign == 0, p, ": tensor ", t.name, ": offset ", t.offset,
               " is not a multiple of ", kSlmAlign);
    uint64_t end = 0;
    SLMC_CHECK(t.offset >= h.data_offset && add_u64(t.offset, t.n_bytes, &end) && end <= size, p,
               ": tensor ", t.name, ": bytes [", t.offset, ", +", t.n_bytes,
               ") are outside the data section [", h.data_offset, ", ", size, ")");
    tensors_.push_back(std::move(t));
  }
  SLMC_CHECK(cur.left() == 0, p, ": tensor table has ", cur.left(), " bytes after its ",
             h.n_tensors, " records");

  // No two tensors share a byte.
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const SlmTensor& a = tensors_[order[k - 1]];
    const SlmTensor& b = tensors_[order[k]];
    SLMC_CHECK(a.offset + a.n_bytes <= b.offset, p, ": tensor ", b.name, " at offset ", b.offset,
               " overlaps tensor ", a.name, " [", a.offset, ", ", a.offset + a.n_bytes, ")");
  }

  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const SlmTensor& t : tensors_) shapes.emplace_back(t.name, t.shape);
  check_against_spec(spec_, shapes, p);

  size_ = size;
  base_ = file.release();
}

SlmFile::~SlmFile() { unmap_file(base_, size_); }

const uint8_t* SlmFile::tokenizer_data() const {
  return tok_bytes_ == 0 ? nullptr : base_ + tok_off_;
}

uint64_t SlmFile::tokenizer_bytes() const { return tok_bytes_; }

const SlmTensor* SlmFile::find(const std::string& name) const {
  for (const SlmTensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

bool is_slm_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f.good()) return false;
  char magic[sizeof kSlmMagic];
  f.read(magic, sizeof magic);
  return f.gcount() == static_cast<std::streamsize>(sizeof magic) &&
         std::memcmp(magic, kSlmMagic, sizeof magic) == 0;
}

// ---------------------------------------------------------------------------------------------
// Writer

void SlmWriter::set_tokenizer(std::string kind, std::string bytes) {
  SLMC_CHECK(kind.empty() || slm_tokenizer_kind_known(kind),
             ".slm writer: unknown tokenizer kind \"", kind, "\" (known: ", known_kinds(), ")");
  SLMC_CHECK(!kind.empty() || bytes.empty(), ".slm writer: tokenizer bytes without a kind");
  SLMC_CHECK(kind.empty() || kind == "byte" || !bytes.empty(), ".slm writer: tokenizer kind ", kind,
             " with no bytes");
  tok_kind_ = std::move(kind);
  tok_bytes_ = std::move(bytes);
}

void SlmWriter::add_tensor(const std::string& name, codec::Format format,
                           std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  SLMC_CHECK(!name.empty() && name.size() <= kSlmMaxNameBytes && name_is_printable(name),
             ".slm writer: tensor name ", quoted_excerpt(name), " must be 1..",
             kSlmMaxNameBytes, " bytes without control bytes");
  for (const Pending& t : tensors_)
    SLMC_CHECK(t.name != name, ".slm writer: tensor ", name, " added twice");
  SLMC_CHECK(!shape.empty() && shape.size() <= kSlmMaxDims, ".slm writer: tensor ", name, " has ",
             shape.size(), " dims (1..", kSlmMaxDims, ")");
  uint64_t numel = 1;
  for (int64_t d : shape)
    SLMC_CHECK(d > 0 && mul_u64(numel, static_cast<uint64_t>(d), &numel), ".slm writer: tensor ",
               name, " has shape ", shape_str(shape));
  const int64_t cols = shape.back();
  const codec::FormatInfo& fi = codec::format_info(format);
  SLMC_CHECK(codec::row_fits(format, cols), ".slm writer: tensor ", name, ": format ", fi.name,
             " needs rows of a multiple of ", fi.block_size, " weights, got ", cols);
  const uint64_t expected = codec::row_bytes(format, cols) * (numel / static_cast<uint64_t>(cols));
  SLMC_CHECK(bytes.size() == expected, ".slm writer: tensor ", name, " has ", bytes.size(),
             " bytes, shape ", shape_str(shape), " in ", fi.name, " takes ", expected);
  tensors_.push_back(Pending{name, format, std::move(shape), std::move(bytes)});
}

void SlmWriter::write(const std::string& path) const {
  SLMC_CHECK(!spec_json_.empty(), path, ": no model spec set for the .slm file");
  const ModelSpec spec = parse_spec(spec_json_, path);
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const Pending& t : tensors_) shapes.emplace_back(t.name, t.shape);
  check_against_spec(spec, shapes, path);

  // Table records, in the order the tensors were added; offsets assigned below.
  SlmHeader h{};
  std::memcpy(h.magic, kSlmMagic, sizeof h.magic);
  h.version = kSlmVersion;
  h.header_bytes = sizeof(SlmHeader);
  h.spec_offset = sizeof(SlmHeader);
  h.spec_bytes = spec_json_.size();
  h.tokenizer_offset = h.spec_offset + h.spec_bytes;
  h.tokenizer_bytes = tok_bytes_.size();
  std::memcpy(h.tokenizer_kind, tok_kind_.data(), tok_kind_.size());  // checked to fit below
  h.table_offset = h.tokenizer_offset + h.tokenizer_bytes;
  h.n_tensors = tensors_.size();
  static_assert(sizeof h.tokenizer_kind > 13, "\"sentencepiece\" and its NUL fit");

  uint64_t table_bytes = 0;
  for (const Pending& t : tensors_)
    table_bytes += 4 + t.name.size() + 4 + 4 + 8 * t.shape.size() + 16;
  h.table_bytes = table_bytes;
  h.data_offset = align_up(h.table_offset + h.table_bytes);

  std::string meta;
  meta.reserve(h.data_offset);
  meta.resize(sizeof h);
  meta += spec_json_;
  meta += tok_bytes_;
  const auto put = [&meta](const void* p, size_t n) {
    meta.append(static_cast<const char*>(p), n);
  };
  uint64_t offset = h.data_offset;
  std::vector<uint64_t> offsets;
  for (const Pending& t : tensors_) {
    const uint32_t name_len = static_cast<uint32_t>(t.name.size());
    const uint32_t format_id = static_cast<uint32_t>(t.format);
    const uint32_t n_dims = static_cast<uint32_t>(t.shape.size());
    const uint64_t n_bytes = t.bytes.size();
    put(&name_len, 4);
    put(t.name.data(), name_len);
    put(&format_id, 4);
    put(&n_dims, 4);
    put(t.shape.data(), 8 * t.shape.size());
    put(&offset, 8);
    put(&n_bytes, 8);
    offsets.push_back(offset);
    offset = align_up(offset + n_bytes);
  }
  h.file_bytes = tensors_.empty() ? h.data_offset : offsets.back() + tensors_.back().bytes.size();
  std::memcpy(meta.data(), &h, sizeof h);
  meta.resize(h.data_offset, '\0');

  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    SLMC_CHECK(f.good(), path, ": cannot open for writing: ", std::strerror(errno));
    f.write(meta.data(), static_cast<std::streamsize>(meta.size()));
    static const char kZeros[kSlmAlign] = {};
    uint64_t pos = meta.size();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      f.write(kZeros, static_cast<std::streamsize>(offsets[i] - pos));
      f.write(reinterpret_cast<const char*>(tensors_[i].bytes.data()),
              static_cast<std::streamsize>(tensors_[i].bytes.size()));
      pos = offsets[i] + tensors_[i].bytes.size();
    }
    f.close();
    SLMC_CHECK(f.good(), path, ": write failed: ", std::strerror(errno));
  });
}

void check_finite(const SlmFile& f, const SlmTensor& t) {
  const uint8_t* p = f.data(t);
  const uint64_t n = shape_numel(t.shape);
  // Half-precision fields: all exponent bits set is Inf or NaN.
  const auto half_bad = [](const uint8_t* q, bool bf16) {
    uint16_t h;
    std::memcpy(&h, q, 2);
    return bf16 ? (h & 0x7f80u) == 0x7f80u : (h & 0x7c00u) == 0x7c00u;
  };
  const auto refuse = [&](uint64_t index, float value, const char* what) {
    fail(f.path(), ": tensor ", t.name, " (", codec::format_info(t.format).name, ") holds ", value,
         " at flat index ", index, what, "; weights must be finite");
  };
  switch (t.format) {
    case codec::Format::kF32: {
      // The data section is 64-byte aligned, so the tensor's floats are aligned too.
      const int64_t i = first_non_finite(reinterpret_cast<const float*>(p), static_cast<int64_t>(n));
      if (i >= 0) refuse(static_cast<uint64_t>(i), reinterpret_cast<const float*>(p)[i], "");
      return;
    }
    case codec::Format::kF16:
    case codec::Format::kBF16: {
      const bool bf = t.format == codec::Format::kBF16;
      for (uint64_t i = 0; i < n; ++i)
        if (half_bad(p + 2 * i, bf)) {
          uint16_t h;
          std::memcpy(&h, p + 2 * i, 2);
          refuse(i, bf ? bf16_to_f32(h) : f16_to_f32(h), "");
        }
      return;
    }
    default:
      break;
  }
  // Block formats: a weight is d * (q - z) with finite integer codes, so it is finite iff the
  // block's fp16 scale (and zero point) are. Their offsets come from the codec's block structs.
  size_t fields[2] = {0, 0};
  size_t n_fields = 0;
  switch (t.format) {
    case codec::Format::kQ8_0:
      fields[n_fields++] = offsetof(codec::BlockQ8_0, d);
      break;
    case codec::Format::kQ4_0:
      fields[n_fields++] = offsetof(codec::BlockQ4_0, d);
      break;
    case codec::Format::kQ4_G64:
      fields[n_fields++] = offsetof(codec::BlockQ4G64, d);
      fields[n_fields++] = offsetof(codec::BlockQ4G64, z);
      break;
    case codec::Format::kQ4_G128:
      fields[n_fields++] = offsetof(codec::BlockQ4G128, d);
      fields[n_fields++] = offsetof(codec::BlockQ4G128, z);
      break;
    default: {
      // A format added later without a case here: decode it with the reference codec.
      const int64_t cols = t.shape.back();
      const int64_t rows = static_cast<int64_t>(n) / cols;
      const size_t rb = codec::row_bytes(t.format, cols);
      std::vector<float> row(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; ++r) {
        codec::dequantize_row_ref(t.format, p + static_cast<size_t>(r) * rb, cols, row.data());
        const int64_t i = first_non_finite(row.data(), cols);
        if (i >= 0) refuse(static_cast<uint64_t>(r * cols + i), row[static_cast<size_t>(i)], "");
      }
      return;
    }
  }
  const codec::FormatInfo& fi = codec::format_info(t.format);
  const uint64_t blocks = n / static_cast<uint64_t>(fi.block_size);
  for (uint64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = p + b * static_cast<uint64_t>(fi.block_bytes);
    for (size_t k = 0; k < n_fields; ++k)
      if (half_bad(block + fields[k], false)) {
        uint16_t h;
        std::memcpy(&h, block + fields[k], 2);
        refuse(b * static_cast<uint64_t>(fi.block_size), f16_to_f32(h),
               k == 0 ? " (the block's scale)" : " (the block's zero point)");
      }
  }
}

void SlmFile::release(const SlmTensor& t) const {
  // Only whole pages inside the tensor, so neighbours stay resident.
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(base_ + t.offset);
  const uintptr_t end = begin + t.n_bytes;
  const uintptr_t b = (begin + page - 1) / page * page, e = end / page * page;
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

}  // namespace slmc::format
