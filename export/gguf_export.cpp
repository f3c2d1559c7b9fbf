#include "export/gguf_export.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/tensor_names.h"
#include "export/format/gguf_model.h"

namespace slmc {

codec::Format gguf_tensor_format(const TensorDecl& decl, codec::Format type, bool* fallback) {
  const codec::Format f = slm_tensor_format(decl, type, fallback);
  if (*fallback && codec::is_k_quant(type) && codec::row_fits(codec::Format::kQ8_0, decl.shape[1]))
    return codec::Format::kQ8_0;
  return f;
}

ExportReport export_gguf(const LoadedModel& m, codec::Format type, const Tokenizer* tok,
                         const std::string& out, int n_threads,
                         const std::map<std::string, codec::QTensor>* packed) {
  const auto start = std::chrono::steady_clock::now();
  SLMC_CHECK(!out.empty(), "export: no output path");
  // Everything that can refuse does so before any work.
  const format::GgufArch arch = format::gguf_arch_for(m.spec);
  SLMC_CHECK(tok != nullptr, "gguf export: ", m.path,
             ": no tokenizer (llama.cpp reads the vocabulary from the file); pass --tokenizer");
  SLMC_CHECK(format::gguf_type_supported(type) && type != codec::Format::kQ8_K,
             "gguf export: type ", codec::format_info(type).name,
             " has no llama.cpp weight type (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k)");
  if (packed != nullptr)
    for (const auto& [name, q] : *packed)
      SLMC_CHECK(format::gguf_type_supported(q.format) && q.format != codec::Format::kQ8_K,
                 "gguf export: tensor ", name, " was quantized to ", codec::format_info(q.format).name,
                 ", which llama.cpp cannot read");
  format::GgufWriter w;
  format::add_gguf_model_kv(m.spec, arch, w);
  format::add_gguf_tokenizer_kv(*tok, m.spec.vocab, w);
  const std::vector<format::GgufTensorPlan> plan = format::gguf_tensor_plan(m.spec, arch);

  std::unique_ptr<Progress> progress;
  std::vector<std::vector<uint8_t>> bytes;
  ExportReport rep =
      quantize_for_export(m, type, gguf_tensor_format, n_threads, packed, &progress, &bytes);
  rep.path = out;
  rep.container = "gguf (" + arch.name + ")";
  rep.tokenizer_kind = tok->kind();
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < rep.tensors.size(); ++i) index[rep.tensors[i].name] = i;

  for (const format::GgufTensorPlan& p : plan) {
    const TensorExport& first = rep.tensors.at(index.at(p.parts[0]));
    const codec::Format f = first.format;
    std::vector<uint8_t> buf;
    for (size_t k = 0; k < p.parts.size(); ++k) {
      const size_t i = index.at(p.parts[k]);
      SLMC_CHECK(rep.tensors[i].format == f, "gguf export: ", p.name, " fuses ", p.parts[0], " (",
                 codec::format_info(f).name, ") and ", p.parts[k], " (",
                 codec::format_info(rep.tensors[i].format).name,
                 "): llama.cpp needs one type per tensor");
      const std::vector<uint8_t>& src = bytes[i];
      const int64_t rows = p.part_rows[k];
      const size_t rb = src.size() / static_cast<size_t>(rows);
      if (p.rope_head_dim == 0) {
        buf.insert(buf.end(), src.begin(), src.end());
        continue;
      }
      for (int64_t r = 0; r < rows; ++r) {
        const size_t s = static_cast<size_t>(format::gguf_rope_source_row(r, p.rope_head_dim)) * rb;
        buf.insert(buf.end(), src.begin() + static_cast<std::ptrdiff_t>(s),
                   src.begin() + static_cast<std::ptrdiff_t>(s + rb));
      }
    }
    w.add_tensor(p.name, f, p.shape, std::move(buf));
  }
  for (format::GgufExtraTensor& t : format::gguf_extra_tensors(m.spec, arch)) {
    std::vector<uint8_t> b(t.data.size() * 4);
    std::memcpy(b.data(), t.data.data(), b.size());
    w.add_tensor(t.name, codec::Format::kF32, {static_cast<int64_t>(t.data.size())}, std::move(b));
  }
  w.write(out);

  std::error_code ec;
  rep.file_bytes = std::filesystem::file_size(out, ec);
  SLMC_CHECK(!ec, out, ": cannot stat what was just written: ", ec.message());
  rep.bits_per_weight =
      rep.n_weights > 0 ? 8.0 * static_cast<double>(rep.tensor_bytes) / rep.n_weights : 0.0;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char summary[96];
  std::snprintf(summary, sizeof summary, "%s bytes, %.3f bits/weight",
                with_commas(rep.file_bytes).c_str(), rep.bits_per_weight);
  progress->finish(summary);
  return rep;
}

}  // namespace slmc
