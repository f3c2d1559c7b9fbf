#include "export/format/gguf.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/mapped_file.h"

namespace slmc::format {

namespace {

struct TypeRow {
  GgufType type;
  const char* name;
  int size;  // bytes of a scalar element; 0 for string / array
};
constexpr TypeRow kTypes[] = {
    {GgufType::kUint8, "uint8", 1},     {GgufType::kInt8, "int8", 1},
    {GgufType::kUint16, "uint16", 2},   {GgufType::kInt16, "int16", 2},
    {GgufType::kUint32, "uint32", 4},   {GgufType::kInt32, "int32", 4},
    {GgufType::kFloat32, "float32", 4}, {GgufType::kBool, "bool", 1},
    {GgufType::kString, "string", 0},   {GgufType::kArray, "array", 0},
    {GgufType::kUint64, "uint64", 8},   {GgufType::kInt64, "int64", 8},
    {GgufType::kFloat64, "float64", 8},
};

const TypeRow* type_row(uint32_t t) {
  for (const TypeRow& r : kTypes)
    if (static_cast<uint32_t>(r.type) == t) return &r;
  return nullptr;
}

bool is_int_type(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kInt8 || t == GgufType::kUint16 ||
         t == GgufType::kInt16 || t == GgufType::kUint32 || t == GgufType::kInt32 ||
         t == GgufType::kUint64 || t == GgufType::kInt64 || t == GgufType::kBool;
}
bool is_float_type(GgufType t) { return t == GgufType::kFloat32 || t == GgufType::kFloat64; }

// The codec formats GGUF carries: ggml ids equal codec ids for these (formats.h).
constexpr codec::Format kGgufFormats[] = {
    codec::Format::kF32,  codec::Format::kF16,  codec::Format::kQ4_0, codec::Format::kQ8_0,
    codec::Format::kQ4_K, codec::Format::kQ5_K, codec::Format::kQ6_K, codec::Format::kQ8_K,
    codec::Format::kBF16,
};

// A bounds-checked cursor over the file's bytes.
class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t size, const std::string& origin)
      : p_(p), size_(size), origin_(origin) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  void need(uint64_t n, const std::string& what) const {
    SLMC_CHECK(n <= left(), origin_, ": truncated GGUF: ", what, " needs ", n, " bytes at offset ",
               pos_, ", the file has ", left(), " left");
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    const uint64_t n = read<uint64_t>(what + " length");
    SLMC_CHECK(n <= left(), origin_, ": GGUF ", what, " is ", n, " bytes long at offset ", pos_,
               ", longer than the ", left(), " bytes left in the file");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(n));
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& origin_;
};

int64_t read_int(Cursor& c, GgufType t, const std::string& what, const std::string& origin) {
  switch (t) {
    case GgufType::kUint8: return c.read<uint8_t>(what);
    case GgufType::kInt8: return c.read<int8_t>(what);
    case GgufType::kUint16: return c.read<uint16_t>(what);
    case GgufType::kInt16: return c.read<int16_t>(what);
    case GgufType::kUint32: return c.read<uint32_t>(what);
    case GgufType::kInt32: return c.read<int32_t>(what);
    case GgufType::kInt64: return c.read<int64_t>(what);
    case GgufType::kBool: {
      const uint8_t b = c.read<uint8_t>(what);
      SLMC_CHECK(b <= 1, origin, ": GGUF ", what, " is a bool with value ", int{b});
      return b;
    }
    case GgufType::kUint64: {
      const uint64_t v = c.read<uint64_t>(what);
      SLMC_CHECK(v <= static_cast<uint64_t>(INT64_MAX), origin, ": GGUF ", what, " value ", v,
                 " exceeds int64");
      return static_cast<int64_t>(v);
    }
    default: fail(origin, ": GGUF ", what, ": not an integer type");
  }
}

double read_float(Cursor& c, GgufType t, const std::string& what) {
  return t == GgufType::kFloat32 ? c.read<float>(what) : c.read<double>(what);
}

GgufValue read_value(Cursor& c, uint32_t raw_type, const std::string& key, const std::string& origin) {
  const TypeRow* row = type_row(raw_type);
  SLMC_CHECK(row != nullptr, origin, ": GGUF key '", key, "' has unknown value type id ", raw_type);
  GgufValue v;
  v.type = row->type;
  const std::string what = "value of '" + key + "'";
  if (v.type == GgufType::kString) {
    v.s = c.str(what);
  } else if (v.type == GgufType::kArray) {
    const uint32_t raw_elem = c.read<uint32_t>(what + " element type");
    const TypeRow* er = type_row(raw_elem);
    SLMC_CHECK(er != nullptr, origin, ": GGUF key '", key, "' is an array of unknown type id ",
               raw_elem);
    SLMC_CHECK(er->type != GgufType::kArray, origin, ": GGUF key '", key,
               "' is an array of arrays (not supported)");
    v.elem = er->type;
    const uint64_t n = c.read<uint64_t>(what + " count");
    // Every element takes at least its scalar size (8 bytes for a string's length): bound the
    // count by the bytes left before allocating anything.
    const uint64_t min_elem = er->type == GgufType::kString ? 8 : static_cast<uint64_t>(er->size);
    SLMC_CHECK(n <= c.left() / min_elem, origin, ": GGUF key '", key, "' claims ", n, " ",
               er->name, " elements, more than the ", c.left(), " bytes left in the file hold");
    if (v.elem == GgufType::kString) {
      v.strs.reserve(static_cast<size_t>(n));
      for (uint64_t k = 0; k < n; ++k) v.strs.push_back(c.str(str_cat(what, "[", k, "]")));
    } else if (is_float_type(v.elem)) {
      v.floats.reserve(static_cast<size_t>(n));
      for (uint64_t k = 0; k < n; ++k) v.floats.push_back(read_float(c, v.elem, what));
    } else {
      v.ints.reserve(static_cast<size_t>(n));
      for (uint64_t k = 0; k < n; ++k) v.ints.push_back(read_int(c, v.elem, what, origin));
    }
  } else if (is_float_type(v.type)) {
    v.f = read_float(c, v.type, what);
  } else {
    v.i = read_int(c, v.type, what, origin);
  }
  return v;
}

void put_bytes(std::string& out, const void* p, size_t n) {
  out.append(static_cast<const char*>(p), n);
}
template <class T>
void put(std::string& out, T v) {
  put_bytes(out, &v, sizeof v);
}
void put_str(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}
void put_scalar(std::string& out, GgufType t, int64_t i, double f) {
  switch (t) {
    case GgufType::kUint8: return put<uint8_t>(out, static_cast<uint8_t>(i));
    case GgufType::kInt8: return put<int8_t>(out, static_cast<int8_t>(i));
    case GgufType::kUint16: return put<uint16_t>(out, static_cast<uint16_t>(i));
    case GgufType::kInt16: return put<int16_t>(out, static_cast<int16_t>(i));
    case GgufType::kUint32: return put<uint32_t>(out, static_cast<uint32_t>(i));
    case GgufType::kInt32: return put<int32_t>(out, static_cast<int32_t>(i));
    case GgufType::kUint64: return put<uint64_t>(out, static_cast<uint64_t>(i));
    case GgufType::kInt64: return put<int64_t>(out, i);
    case GgufType::kBool: return put<uint8_t>(out, i ? 1 : 0);
    case GgufType::kFloat32: return put<float>(out, static_cast<float>(f));
    case GgufType::kFloat64: return put<double>(out, f);
    default: fail("gguf writer: not a scalar type ", gguf_type_name(t));
  }
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

const char* gguf_type_name(GgufType t) {
  const TypeRow* r = type_row(static_cast<uint32_t>(t));
  return r ? r->name : "?";
}

GgufValue GgufValue::u32(uint32_t v) {
  GgufValue x;
  x.type = GgufType::kUint32;
  x.i = v;
  return x;
}
GgufValue GgufValue::i32(int32_t v) {
  GgufValue x;
  x.type = GgufType::kInt32;
  x.i = v;
  return x;
}
GgufValue GgufValue::f32(float v) {
  GgufValue x;
  x.type = GgufType::kFloat32;
  x.f = v;
  return x;
}
GgufValue GgufValue::boolean(bool v) {
  GgufValue x;
  x.type = GgufType::kBool;
  x.i = v ? 1 : 0;
  return x;
}
GgufValue GgufValue::str(std::string v) {
  GgufValue x;
  x.type = GgufType::kString;
  x.s = std::move(v);
  return x;
}
GgufValue GgufValue::int_array(GgufType elem, std::vector<int64_t> v) {
  SLMC_CHECK(is_int_type(elem), "gguf: int_array of ", gguf_type_name(elem));
  GgufValue x;
  x.type = GgufType::kArray;
  x.elem = elem;
  x.ints = std::move(v);
  return x;
}
GgufValue GgufValue::float_array(std::vector<double> v) {
  GgufValue x;
  x.type = GgufType::kArray;
  x.elem = GgufType::kFloat32;
  x.floats = std::move(v);
  return x;
}
GgufValue GgufValue::str_array(std::vector<std::string> v) {
  GgufValue x;
  x.type = GgufType::kArray;
  x.elem = GgufType::kString;
  x.strs = std::move(v);
  return x;
}
uint64_t GgufValue::count() const {
  if (type != GgufType::kArray) return 1;
  return elem == GgufType::kString ? strs.size() : is_float_type(elem) ? floats.size() : ints.size();
}

bool gguf_format_from_type(uint32_t ggml_type, codec::Format* out) {
  for (codec::Format f : kGgufFormats)
    if (static_cast<uint32_t>(f) == ggml_type) {
      *out = f;
      return true;
    }
  return false;
}

bool gguf_type_supported(codec::Format f) {
  return std::find(std::begin(kGgufFormats), std::end(kGgufFormats), f) != std::end(kGgufFormats);
}

// ---- reader ------------------------------------------------------------------------------------

GgufFile::GgufFile(const std::string& path) : map_(std::make_unique<MappedFile>(path)), path_(path) {
  base_ = map_->data();
  size_ = map_->size();
  parse();
}

GgufFile::GgufFile(const uint8_t* data, uint64_t size, const std::string& origin)
    : path_(origin), base_(data), size_(size) {
  parse();
}

GgufFile::~GgufFile() = default;

void GgufFile::parse() {
  const std::string& o = path_;
  Cursor c(base_, size_, o);
  const uint32_t magic = c.read<uint32_t>("magic");
  SLMC_CHECK(magic == kGgufMagic, o, ": not a GGUF file (magic 0x", std::hex, magic, std::dec, ")");
  version_ = c.read<uint32_t>("version");
  SLMC_CHECK(version_ == 2 || version_ == 3, o, ": GGUF version ", version_,
             " is not supported (2 and 3 are)");
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key-value pair takes at least 8 + 4 bytes, a tensor record 8 + 4 + 8 + 4 + 8.
  SLMC_CHECK(n_kv <= c.left() / 12, o, ": GGUF metadata count ", n_kv, " exceeds what the ",
             size_, "-byte file can hold");
  SLMC_CHECK(n_tensors <= c.left() / 32, o, ": GGUF tensor count ", n_tensors,
             " exceeds what the ", size_, "-byte file can hold");
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str(str_cat("metadata key ", k));
    // Keys are printable ASCII (the GGUF spec's lower_snake_case with dots): checked here, so every
    // message below may name the key as it is.
    SLMC_CHECK(!key.empty() && key.size() <= 256 && printable(key, 256) == key, o,
               ": GGUF metadata key ", k, " ", quoted_excerpt(key), " is not 1..256 printable ASCII bytes");
    const uint32_t t = c.read<uint32_t>("value type of '" + key + "'");
    GgufValue v = read_value(c, t, key, o);
    SLMC_CHECK(!kv_.count(key), o, ": GGUF metadata key '", key, "' appears twice");
    kv_.emplace(std::move(key), std::move(v));
  }
  if (const GgufValue* a = find_kv("general.alignment")) {
    SLMC_CHECK(a->type == GgufType::kUint32, o, ": GGUF general.alignment must be uint32, got ",
               gguf_type_name(a->type));
    SLMC_CHECK(a->i > 0 && (a->i & (a->i - 1)) == 0 && a->i <= (1 << 20), o,
               ": GGUF general.alignment ", a->i, " is not a power of two up to 2^20");
    align_ = static_cast<uint64_t>(a->i);
  }
  struct Raw {
    std::string name;
    codec::Format format;
    std::vector<int64_t> shape;
    uint64_t rel_offset;
    uint64_t n_bytes;
  };
  std::vector<Raw> raws;
  raws.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    Raw r;
    r.name = c.str(str_cat("tensor ", k, " name"));
    const std::string& nm = r.name;
    SLMC_CHECK(!nm.empty() && nm.size() <= 256, o, ": GGUF tensor ", k, " has a name of ",
               nm.size(), " bytes (1..256 allowed)");
    SLMC_CHECK(printable(nm, 256) == nm, o, ": GGUF tensor ", k, " name ", quoted_excerpt(nm),
               " has bytes outside printable ASCII");
    const uint32_t n_dims = c.read<uint32_t>("n_dims of tensor " + nm);
    SLMC_CHECK(n_dims >= 1 && n_dims <= kGgufMaxDims, o, ": GGUF tensor ", nm, " has ", n_dims,
               " dims (1..", kGgufMaxDims, " allowed)");
    std::vector<int64_t> ne(n_dims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t e = c.read<uint64_t>("dims of tensor " + nm);
      SLMC_CHECK(e >= 1 && e <= (uint64_t{1} << 40) && mul_u64(numel, e, &numel) &&
                     numel <= (uint64_t{1} << 48),
                 o, ": GGUF tensor ", nm, " has dimension ", d, " = ", e,
                 " (each must be >= 1, the product at most 2^48)");
      ne[d] = static_cast<int64_t>(e);
    }
    const uint32_t type = c.read<uint32_t>("type of tensor " + nm);
    SLMC_CHECK(gguf_format_from_type(type, &r.format), o, ": GGUF tensor ", nm,
               " has ggml type id ", type, ", which slmc does not read (it reads F32, F16, BF16, "
               "Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q8_K)");
    const codec::FormatInfo& fi = codec::format_info(r.format);
    SLMC_CHECK(ne[0] % fi.block_size == 0, o, ": GGUF tensor ", nm, " has rows of ", ne[0],
               " weights, which type ", fi.name, " (blocks of ", fi.block_size,
               ") cannot hold");
    r.shape.assign(ne.rbegin(), ne.rend());
    const uint64_t rows = numel / static_cast<uint64_t>(ne[0]);
    const uint64_t rb = static_cast<uint64_t>(ne[0] / fi.block_size) * static_cast<uint64_t>(fi.block_bytes);
    SLMC_CHECK(mul_u64(rows, rb, &r.n_bytes), o, ": GGUF tensor ", nm, " size overflows");
    r.rel_offset = c.read<uint64_t>("offset of tensor " + nm);
    SLMC_CHECK(r.rel_offset % align_ == 0, o, ": GGUF tensor ", nm, " offset ", r.rel_offset,
               " is not a multiple of the alignment ", align_);
    raws.push_back(std::move(r));
  }
  data_offset_ = align_up(c.pos(), align_);
  SLMC_CHECK(data_offset_ <= size_, o, ": truncated GGUF: the data section starts at ",
             data_offset_, ", the file has ", size_, " bytes");
  for (Raw& r : raws) {
    uint64_t start, end;
    SLMC_CHECK(add_u64(data_offset_, r.rel_offset, &start) && add_u64(start, r.n_bytes, &end) &&
                   end <= size_,
               o, ": GGUF tensor ", r.name, " (", r.n_bytes, " bytes at data offset ", r.rel_offset,
               ") runs past the end of the ", size_, "-byte file");
    SLMC_CHECK(!by_name_.count(r.name), o, ": GGUF tensor ", r.name, " appears twice");
    by_name_[r.name] = tensors_.size();
    tensors_.push_back({std::move(r.name), r.format, std::move(r.shape), start, r.n_bytes});
  }
  std::vector<const GgufTensor*> sorted;
  for (const GgufTensor& t : tensors_) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < sorted.size(); ++k)
    SLMC_CHECK(sorted[k - 1]->offset + sorted[k - 1]->n_bytes <= sorted[k]->offset, o,
               ": GGUF tensors ", sorted[k - 1]->name, " and ", sorted[k]->name, " overlap");
}

const GgufValue* GgufFile::find_kv(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

std::string GgufFile::get_str(const std::string& key) const {
  const GgufValue* v = find_kv(key);
  SLMC_CHECK(v != nullptr, path_, ": GGUF metadata has no '", key, "'");
  SLMC_CHECK(v->type == GgufType::kString, path_, ": GGUF '", key, "' is ",
             gguf_type_name(v->type), ", expected string");
  return v->s;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find_kv(key);
  SLMC_CHECK(v != nullptr, path_, ": GGUF metadata has no '", key, "'");
  SLMC_CHECK(is_int_type(v->type), path_, ": GGUF '", key, "' is ", gguf_type_name(v->type),
             ", expected an integer");
  return v->i;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find_kv(key);
  SLMC_CHECK(v != nullptr, path_, ": GGUF metadata has no '", key, "'");
  if (is_int_type(v->type)) return static_cast<double>(v->i);
  SLMC_CHECK(is_float_type(v->type), path_, ": GGUF '", key, "' is ", gguf_type_name(v->type),
             ", expected a number");
  return v->f;
}

const GgufTensor* GgufFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

bool is_gguf_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char m[4] = {};
  return f.read(m, 4) && std::memcmp(m, "GGUF", 4) == 0;
}

// ---- writer ------------------------------------------------------------------------------------

void GgufWriter::add_kv(const std::string& key, GgufValue v) {
  for (const auto& kv : kv_)
    SLMC_CHECK(kv.first != key, "gguf writer: metadata key '", key, "' added twice");
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::add_tensor(const std::string& name, codec::Format format,
                            std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  SLMC_CHECK(gguf_type_supported(format), "gguf writer: tensor ", name, ": format ",
             codec::format_info(format).name, " has no ggml type");
  SLMC_CHECK(!shape.empty() && shape.size() <= kGgufMaxDims, "gguf writer: tensor ", name,
             " has ", shape.size(), " dims");
  for (const Pending& p : tensors_)
    SLMC_CHECK(p.name != name, "gguf writer: tensor ", name, " added twice");
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < shape.size(); ++d) rows *= shape[d];
  const size_t want = codec::row_bytes(format, shape.back()) * static_cast<size_t>(rows);
  SLMC_CHECK(bytes.size() == want, "gguf writer: tensor ", name, " has ", bytes.size(),
             " bytes, its shape and format need ", want);
  tensors_.push_back({name, format, std::move(shape), std::move(bytes)});
}

std::string GgufWriter::header() const {
  std::string out;
  put<uint32_t>(out, kGgufMagic);
  put<uint32_t>(out, kGgufVersion);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kv_.size());
  for (const auto& [key, v] : kv_) {
    put_str(out, key);
    put<uint32_t>(out, static_cast<uint32_t>(v.type));
    if (v.type == GgufType::kString) {
      put_str(out, v.s);
    } else if (v.type == GgufType::kArray) {
      put<uint32_t>(out, static_cast<uint32_t>(v.elem));
      put<uint64_t>(out, v.count());
      if (v.elem == GgufType::kString)
        for (const std::string& s : v.strs) put_str(out, s);
      else if (is_float_type(v.elem))
        for (double f : v.floats) put_scalar(out, v.elem, 0, f);
      else
        for (int64_t i : v.ints) put_scalar(out, v.elem, i, 0);
    } else {
      put_scalar(out, v.type, v.i, v.f);
    }
  }
  uint64_t offset = 0;
  for (const Pending& t : tensors_) {
    put_str(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(out, static_cast<uint64_t>(*it));
    put<uint32_t>(out, static_cast<uint32_t>(t.format));
    put<uint64_t>(out, offset);
    offset = align_up(offset + t.bytes.size(), kGgufDefaultAlign);
  }
  out.resize(align_up(out.size(), kGgufDefaultAlign), '\0');
  return out;
}

uint64_t GgufWriter::file_bytes() const {
  uint64_t n = header().size();
  for (const Pending& t : tensors_) n += align_up(t.bytes.size(), kGgufDefaultAlign);
  return n;
}

void GgufWriter::write(const std::string& path) const {
  const std::string head = header();
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    SLMC_CHECK(f.good(), path, ": cannot write: ", std::strerror(errno));
    f.write(head.data(), static_cast<std::streamsize>(head.size()));
    static const char zeros[kGgufDefaultAlign] = {};
    // Every tensor padded, the last one too: ggml's reader takes the data section as the sum of
    // the padded sizes (gguf.cpp: ti.offset must equal it, and it reads that many bytes).
    for (const Pending& t : tensors_) {
      const std::vector<uint8_t>& b = t.bytes;
      f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
      f.write(zeros, static_cast<std::streamsize>(align_up(b.size(), kGgufDefaultAlign) - b.size()));
    }
    f.flush();
    SLMC_CHECK(f.good(), path, ": write failed: ", std::strerror(errno));
  });
}

}  // namespace slmc::format
