#include "compress/io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/float16.h"
#include "compress/core/json_util.h"
#include "compress/io/io_internal.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this reader copies it as is");

namespace slmc {

namespace {

using io_internal::add_u64;
using io_internal::mul_u64;

// The reference implementation refuses larger headers (safetensors MAX_HEADER_SIZE); so do we,
// which also bounds the JSON we parse from an untrusted file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool is_float_dtype(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  io_internal::MappedFile file(path);
  const uint8_t* base = file.data();
  const uint64_t size = file.size();
  SLMC_CHECK(size >= 8, path, ": truncated safetensors file: ", size,
             " bytes, the 8-byte header length alone does not fit");
  const uint64_t n = load_le64(base);
  SLMC_CHECK(n <= size - 8, path, ": safetensors header length ", n, " runs past the end of the ",
             size, "-byte file (truncated or not a safetensors file)");
  SLMC_CHECK(n <= kMaxHeaderBytes, path, ": safetensors header length ", n,
             " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  SLMC_CHECK(n >= 2 && base[8] == '{', path,
             ": safetensors header does not start with '{' (not a safetensors file)");

  // Depth-bounded, and duplicate keys (which nlohmann would resolve silently to the last) refused
  // at every level: the format forbids them.
  const nlohmann::json header = checked_json::parse(
      std::string_view(reinterpret_cast<const char*>(base + 8), n), path + ": safetensors header");
  SLMC_CHECK(header.is_object(), path, ": safetensors header is not a JSON object");

  const uint64_t data_size = size - 8 - n;
  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const nlohmann::json& v = item.value();
    if (name == kMetadataKey) {
      SLMC_CHECK(v.is_object(), path, ": ", kMetadataKey, " must be an object of strings, got ",
                 checked_json::excerpt(v));
      for (const auto& m : v.items())
        metadata_[m.key()] = checked_json::get_string(
            m.value(), str_cat(path, ": ", kMetadataKey, "[", quoted_excerpt(m.key()), "]"));
      continue;
    }
    const std::string what = str_cat(path, ": tensor ", quoted_excerpt(name));
    SLMC_CHECK(v.is_object(), what, ": entry must be an object, got ", checked_json::excerpt(v));
    SafetensorsEntry e;
    // dtype
    auto it = v.find("dtype");
    SLMC_CHECK(it != v.end(), what, ": missing 'dtype'");
    const std::string dtype = checked_json::get_string(*it, what + ": dtype", 64);
    SLMC_CHECK(dtype_from_name(dtype, &e.dtype), what, ": unknown dtype ", quoted_excerpt(dtype),
               " (supported: F32, F16, BF16, I32, I64, U8)");
    // shape
    it = v.find("shape");
    SLMC_CHECK(it != v.end(), what, ": missing 'shape'");
    SLMC_CHECK(it->is_array(), what, ": shape must be an array, got ", checked_json::excerpt(*it));
    uint64_t numel = 1;
    for (size_t k = 0; k < it->size(); ++k) {
      const int64_t dim = checked_json::get_int((*it)[k], str_cat(what, ": shape[", k, "]"), 0, INT64_MAX);
      e.shape.push_back(dim);
      SLMC_CHECK(mul_u64(numel, static_cast<uint64_t>(dim), &numel), what, ": shape ",
                 checked_json::excerpt(*it), " overflows 64 bits");
    }
    // data_offsets: inside the data section.
    it = v.find("data_offsets");
    SLMC_CHECK(it != v.end(), what, ": missing 'data_offsets'");
    SLMC_CHECK(it->is_array() && it->size() == 2, what,
               ": data_offsets must be two non-negative integers [begin, end], got ",
               checked_json::excerpt(*it));
    const int64_t max_offset = static_cast<int64_t>(std::min<uint64_t>(data_size, INT64_MAX));
    const std::string range_note = str_cat(" (the data section holds ", data_size, " bytes; truncated file?)");
    e.begin = static_cast<uint64_t>(checked_json::get_int((*it)[0], what + ": data_offsets[0]" , 0, INT64_MAX));
    e.end = static_cast<uint64_t>(checked_json::get_int((*it)[1], what + ": data_offsets[1]", 0, INT64_MAX));
    SLMC_CHECK(e.begin <= e.end, what, ": data_offsets [", e.begin, ", ", e.end,
               "] has begin after end");
    SLMC_CHECK(e.end <= static_cast<uint64_t>(max_offset), what, ": data_offsets [", e.begin, ", ",
               e.end, "] out of range", range_note);
    uint64_t nbytes = 0;
    SLMC_CHECK(mul_u64(numel, static_cast<uint64_t>(dtype_size(e.dtype)), &nbytes), what,
               ": shape ", shape_str(e.shape), " x ", dtype, " needs more bytes than 64 bits can count");
    SLMC_CHECK(nbytes == e.end - e.begin, what, ": shape ", shape_str(e.shape), " x ", dtype,
               " needs ", nbytes, " bytes but data_offsets [", e.begin, ", ", e.end, "] span ",
               e.end - e.begin, " bytes");
    entries_.emplace(name, std::move(e));
  }

  // No two tensors may share bytes (empty tensors occupy none).
  std::vector<std::pair<const std::string*, const SafetensorsEntry*>> by_offset;
  for (const auto& kv : entries_)
    if (kv.second.end > kv.second.begin) by_offset.push_back({&kv.first, &kv.second});
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin
                                              : a.second->end < b.second->end;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto& prev = by_offset[i - 1];
    const auto& cur = by_offset[i];
    SLMC_CHECK(cur.second->begin >= prev.second->end, path, ": tensors ", quoted_excerpt(*prev.first), " [",
               prev.second->begin, ", ", prev.second->end, ") and ", quoted_excerpt(*cur.first), " [",
               cur.second->begin, ", ", cur.second->end, ") overlap");
  }

  size_ = file.size();
  map_ = file.release();
  data_ = map_ + 8 + n;
}

SafetensorsFile::~SafetensorsFile() { io_internal::unmap_file(map_, size_); }

const uint8_t* SafetensorsFile::raw(const std::string& name) const {
  auto it = entries_.find(name);
  SLMC_CHECK(it != entries_.end(), path_, ": no tensor ", quoted_excerpt(name));
  return data_ + it->second.begin;
}

HostTensor SafetensorsFile::read(const std::string& name) const {
  auto it = entries_.find(name);
  SLMC_CHECK(it != entries_.end(), path_, ": no tensor ", quoted_excerpt(name));
  const SafetensorsEntry& e = it->second;
  SLMC_CHECK(is_float_dtype(e.dtype), path_, ": tensor ", quoted_excerpt(name), " has dtype ",
             dtype_name(e.dtype), "; only F32, F16 and BF16 can be read as floats");
  HostTensor t;
  t.shape = e.shape;
  t.source_dtype = e.dtype;
  const uint64_t n = (e.end - e.begin) / static_cast<uint64_t>(dtype_size(e.dtype));
  t.data.resize(n);
  const uint8_t* src = data_ + e.begin;
  switch (e.dtype) {
    case DType::kF32:
      if (n > 0) std::memcpy(t.data.data(), src, n * 4);
      break;
    case DType::kF16:
    case DType::kBF16: {
      const bool bf = e.dtype == DType::kBF16;
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);  // the mapping need not be 2-byte aligned
        t.data[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
      }
      break;
    }
    default:
      break;
  }
  return t;
}

void write_safetensors(const std::string& path, const TensorMap& tensors, DType dtype,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<NamedTensor> list;
  list.reserve(tensors.size());
  for (const auto& kv : tensors) list.push_back({kv.first, &kv.second});
  write_safetensors(path, list, dtype, metadata);
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       DType dtype, const std::map<std::string, std::string>& metadata) {
  SLMC_CHECK(is_float_dtype(dtype), path, ": cannot write safetensors as ", dtype_name(dtype),
             " (supported: F32, F16, BF16)");
  const uint64_t esize = static_cast<uint64_t>(dtype_size(dtype));
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    header[kMetadataKey] = std::move(m);
  }
  uint64_t offset = 0;
  for (const NamedTensor& nt : tensors) {
    const std::string& name = nt.name;
    const HostTensor& t = *nt.tensor;
    SLMC_CHECK(name != kMetadataKey, path, ": '", kMetadataKey, "' is reserved, not a tensor name");
    SLMC_CHECK(!header.contains(name), path, ": tensor '", name, "' given twice");
    for (int64_t d : t.shape)
      SLMC_CHECK(d >= 0, path, ": tensor '", name, "' has a negative dimension in ", t.shape_str());
    SLMC_CHECK(static_cast<int64_t>(t.data.size()) == t.numel(), path, ": tensor '", name,
               "' holds ", t.data.size(), " values for shape ", t.shape_str());
    const uint64_t nbytes = static_cast<uint64_t>(t.data.size()) * esize;
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = dtype_name(dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + nbytes};
    header[name] = std::move(entry);
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts 8-byte aligned

  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    SLMC_CHECK(f.good(), path, ": cannot open for writing: ", std::strerror(errno));
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(text.size() >> (8 * i));
    f.write(reinterpret_cast<const char*>(len), 8);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    std::vector<uint16_t> half;
    for (const NamedTensor& nt : tensors) {
      const std::vector<float>& v = nt.tensor->data;
      if (dtype == DType::kF32) {
        f.write(reinterpret_cast<const char*>(v.data()),
                static_cast<std::streamsize>(v.size() * sizeof(float)));
        continue;
      }
      half.resize(v.size());
      for (size_t i = 0; i < v.size(); ++i)
        half[i] = dtype == DType::kF16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      f.write(reinterpret_cast<const char*>(half.data()),
              static_cast<std::streamsize>(half.size() * sizeof(uint16_t)));
    }
    f.close();
    SLMC_CHECK(f.good(), path, ": write failed: ", std::strerror(errno));
  });
}

}  // namespace slmc
