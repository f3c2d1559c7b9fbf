#include "compress/io/model_loader.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "compress/io/gguf_loader.h"
#include "compress/io/io_internal.h"
#include "export/format/gguf.h"
#include "export/format/slm_format.h"

namespace slmc {

namespace {

namespace fs = std::filesystem;

constexpr const char* kExpected =
    "expected a Hugging Face model directory (config.json + model.safetensors), an slmc .slm "
    "file or a llama2.c .bin (7 int32 header, then fp32 weights)";

// Reads up to `n` leading bytes of a file.
std::string read_prefix(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary);
  SLMC_CHECK(f.good(), path, ": cannot open: ", std::strerror(errno));
  std::string buf(n, '\0');
  f.read(buf.data(), static_cast<std::streamsize>(n));
  buf.resize(static_cast<size_t>(f.gcount()));
  return buf;
}

// What a file that is not a llama2.c checkpoint looks like, for the error message.
std::string describe(const std::string& prefix) {
  if (prefix.compare(0, 8, "\x89HDF\r\n\x1a\n") == 0) return "it is an HDF5 file";
  if (prefix.size() >= 9 && prefix[8] == '{')
    return "it looks like a safetensors file: pass its directory";
  if (prefix.compare(0, 4, "GGUF") == 0) return "it is a GGUF file";
  return "";
}

// An exported .slm file (validated by SlmFile), every tensor dequantized to fp32 with the codec's
// reference, so LibTorch evaluates exactly the exported artifact.
LoadedModel load_slm_model(const std::string& path) {
  const format::SlmFile f(path);
  LoadedModel m;
  m.spec = f.spec();
  m.path = path;
  m.format = "slm";
  for (const format::SlmTensor& t : f.tensors()) {
    format::check_finite(f, t);  // NaN/Inf would reach eval and generate silently
    HostTensor h;
    h.shape = t.shape;
    h.data.resize(static_cast<size_t>(shape_numel(t.shape)));
    h.source_dtype = t.format == codec::Format::kF16    ? DType::kF16
                     : t.format == codec::Format::kBF16 ? DType::kBF16
                                                        : DType::kF32;
    const int64_t cols = t.shape.back();
    const int64_t rows = shape_numel(t.shape) / cols;
    const size_t row_bytes = codec::row_bytes(t.format, cols);
    const uint8_t* src = f.data(t);
    for (int64_t r = 0; r < rows; ++r)
      codec::dequantize_row_ref(t.format, src + static_cast<size_t>(r) * row_bytes, cols,
                                h.data.data() + r * cols);
    m.bytes_by_dtype[codec::format_info(t.format).name] += static_cast<int64_t>(t.n_bytes);
    m.tensors.emplace(t.name, std::move(h));
  }
  check_tensors(m.spec, m.tensors, path);
  return m;
}

}  // namespace

LoadedModel load_model(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  SLMC_CHECK(fs::exists(st), path, ": no such file or directory (", kExpected, ")");
  if (fs::is_directory(st)) {
    SLMC_CHECK(fs::is_regular_file(fs::path(path) / "config.json", ec), path,
               ": directory has no config.json (", kExpected, ")");
    return load_hf_model(path);
  }
  SLMC_CHECK(fs::is_regular_file(st), path, ": not a regular file or directory (", kExpected, ")");
  if (format::is_slm_file(path)) return load_slm_model(path);
  if (format::is_gguf_file(path)) return load_gguf_model(path);

  // A llama2.c .bin has no magic: accept it only if its header is consistent and implies exactly
  // this file's size, so that no other file is misread as one.
  using namespace io_internal;
  const std::string prefix = read_prefix(path, 16 + kLlama2cHeaderBytes);
  const uint64_t size = fs::file_size(path, ec);
  SLMC_CHECK(!ec, path, ": cannot stat: ", ec.message());
  std::string why;
  if (prefix.size() < kLlama2cHeaderBytes) {
    why = str_cat("it has only ", size, " bytes");
  } else {
    const Llama2cHeader h = parse_llama2c_header(reinterpret_cast<const uint8_t*>(prefix.data()));
    const std::string problem = llama2c_header_problem(h);
    uint64_t expected = 0;
    if (!problem.empty()) {
      why = describe(prefix);
      if (why.empty()) why = "read as a llama2.c header, " + problem;
    } else if (!llama2c_expected_size(h, &expected)) {
      why = "read as a llama2.c header (" + llama2c_header_str(h) + ") it implies over 2^64 bytes";
    } else if (expected != size) {
      why = str_cat("read as a llama2.c header (", llama2c_header_str(h), ") it implies ", expected,
                    " bytes, the file has ", size);
    } else {
      return load_llama2c(path);
    }
  }
  fail(path, ": unrecognised model file (", kExpected, "); ", why);
}

}  // namespace slmc
