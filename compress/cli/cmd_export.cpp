// slmc export --model M --format slm|gguf [--type T] -o OUT: a deployable artifact (.slm for
// slmc's runtime, .gguf for llama.cpp and slmc's runtime) with a per-tensor distortion report.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/core/error.h"
#include "export/format/gguf.h"
#include "export/format/slm_format.h"
#include "export/gguf_export.h"
#include "export/slm_export.h"
#include "quantize/codec/formats.h"

namespace slmc::cli {

namespace {

struct ExportOptions {
  std::string model;
  std::string format = "slm";
  std::string type = "f16";
  std::string tokenizer;
  std::string out;
  bool json = false;
};

void run_export(const ExportOptions& o) {
  codec::Format type;
  SLMC_CHECK(codec::format_from_name(o.type, &type), "--type ", o.type,
             ": unknown (known: ", codec::format_names(), ")");
  const LoadedModel m = load_model(o.model);
  const bool gguf = o.format == "gguf";
  // An .slm's quantized matrices (a calibrated quantization, say) go into a GGUF byte for byte:
  // no re-rounding. Its f32 tensors take --type.
  std::map<std::string, codec::QTensor> packed;
  if (gguf && m.format == "slm") {
    const format::SlmFile f(o.model);
    for (const format::SlmTensor& t : f.tensors()) {
      if (t.format == codec::Format::kF32 || t.shape.size() != 2) continue;
      SLMC_CHECK(format::gguf_type_supported(t.format), o.model, ": tensor ", t.name, " is stored as ",
                 codec::format_info(t.format).name, ", which llama.cpp cannot read; export from "
                 "the unquantized model instead");
      packed[t.name] = codec::QTensor{t.format, t.shape,
                                      std::vector<uint8_t>(f.data(t), f.data(t) + t.n_bytes)};
    }
  } else if (m.format == "slm") {
    for (const auto& kv : m.bytes_by_dtype)
      if (kv.first != "f32")
        std::fprintf(stderr,
                     "slmc: warning: %s already holds %s weights: they are re-rounded from their "
                     "dequantized values, and the report measures error against those\n",
                     o.model.c_str(), kv.first.c_str());
  }
  // llama.cpp reads the vocabulary from the file: a GGUF export needs a tokenizer.
  const auto tok = resolve_tokenizer(o.model, o.tokenizer, /*required=*/gguf);
  if (tok == nullptr)
    std::fprintf(stderr, "slmc: warning: %s: no tokenizer found; the .slm will embed none\n",
                 o.model.c_str());
  const ExportReport r =
      gguf ? export_gguf(m, type, tok.get(), o.out, global_options().threads,
                         packed.empty() ? nullptr : &packed)
           : export_slm(m, type, tok.get(), o.out, global_options().threads);
  if (o.json) {
    std::printf("%s\n", export_report_json(r).c_str());
  } else {
    std::printf("%s", export_report_table(r).c_str());
  }
}

}  // namespace

void setup_export(CLI::App& app) {
  auto o = std::make_shared<ExportOptions>();
  auto* sub = app.add_subcommand(
      "export", "write a deployable artifact (.slm for the runtime, .gguf for llama.cpp)");
  // No CLI::ExistingPath on the inputs: load_model and load_tokenizer say in one line what is
  // missing and what they expected.
  sub->add_option("--model", o->model, "HF directory, llama2.c .bin, .slm or .gguf")->required();
  sub->add_option("--format", o->format,
                  "artifact format: slm (slmc's runtime) or gguf (GGUF v3: llama.cpp and slmc's "
                  "runtime; llama, mistral, mixtral, qwen2, phi3, gemma3, openelm, and pruned "
                  "llama-style models as deci)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            if (v == "slm" || v == "gguf") return "";
            return "slm or gguf (safetensors comes later), got " + v;
          },
          "slm|gguf", "format"));
  // Type names and help come from the codec's one table.
  std::vector<std::string> names;
  std::string about;
  for (const codec::FormatInfo& f : codec::all_formats()) {
    names.push_back(f.name);
    about += str_cat("\n  ", f.name, ": ", f.about, " (", f.bits_per_weight(), " bits/weight)");
  }
  sub->add_option("--type", o->type,
                  "weight format of the matrices (norms stay f32; a matrix whose columns the "
                  "format cannot hold falls back to f16, or for a K-quant in gguf to q8_0 if it "
                  "can):" +
                      about)
      ->capture_default_str()
      ->transform(CLI::IsMember(names, CLI::ignore_case));
  sub->add_option("--tokenizer", o->tokenizer,
                  "tokenizer to embed (default: the model's own, or one found beside it)");
  sub->add_option("-o,--out", o->out, "output file (written atomically)")->required();
  sub->add_flag("--json", o->json, "machine-readable report on stdout");
  on_run(sub, [o] { run_export(*o); });
}

}  // namespace slmc::cli
