#include "compress/io/gguf_loader.h"

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "export/format/gguf.h"
#include "export/format/gguf_model.h"

namespace slmc {

LoadedModel load_gguf_model(const std::string& path) {
  const format::GgufFile f(path);
  LoadedModel m;
  m.spec = format::gguf_model_spec(f);
  m.path = path;
  m.format = "gguf";
  const std::map<std::string, format::GgufSource> src = format::gguf_sources(f, m.spec);
  for (const TensorDecl& d : expected_tensors(m.spec)) {
    const format::GgufSource& s = src.at(d.name);
    HostTensor h;
    h.shape = d.shape;
    h.data.resize(static_cast<size_t>(shape_numel(d.shape)));
    h.source_dtype = s.format == codec::Format::kF16    ? DType::kF16
                     : s.format == codec::Format::kBF16 ? DType::kBF16
                                                        : DType::kF32;
    const size_t rb = s.cols == 1 ? 4 : codec::row_bytes(s.format, s.cols);
    std::vector<uint8_t> raw(rb * static_cast<size_t>(s.rows));
    format::gguf_read_rows(f, s, raw.data());
    const int64_t cols = d.shape.back(), rows = h.numel() / cols;
    const size_t row_bytes = codec::row_bytes(s.format, cols);
    for (int64_t r = 0; r < rows; ++r)
      codec::dequantize_row_ref(s.format, raw.data() + static_cast<size_t>(r) * row_bytes, cols,
                                h.data.data() + r * cols);
    m.bytes_by_dtype[codec::format_info(s.format).name] += static_cast<int64_t>(raw.size());
    m.tensors.emplace(d.name, std::move(h));
  }
  check_tensors(m.spec, m.tensors, path);
  return m;
}

}  // namespace slmc
