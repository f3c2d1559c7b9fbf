// slmc eval: perplexity, and KL / top-1 against a reference model's saved logits.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "compress/cli/backend.h"
#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/core/error.h"
#include "compress/eval/evaluate.h"

namespace slmc::cli {

namespace {
struct EvalCmdOptions {
  std::string model, data, tokenizer, save_logits, ref_logits;
  int64_t ctx = 0;
  int64_t batch = 8;
  std::string backend = "auto";
  bool llama_windows = false;
  bool json = false;
};

void run_eval(const EvalCmdOptions& o) {
  LoadedBackend b(o.backend, o.model);
  const ModelSpec& spec = b.spec();
  const std::unique_ptr<RuntimeBackend>& rt = b.rt;
  const std::unique_ptr<LoadedModel>& m = b.torch;
  const int64_t ctx = o.ctx > 0 ? o.ctx : std::min<int64_t>(spec.max_seq, 2048);
  SLMC_CHECK(ctx <= spec.max_seq, "--ctx ", ctx, " exceeds the model's context ", spec.max_seq);
  auto tok = resolve_tokenizer(o.model, o.tokenizer, /*required=*/false);
  const auto bos = static_cast<int32_t>(spec.bos_id);
  const auto windows = o.llama_windows
                           ? llama_windows(load_token_stream(o.data, tok.get(), spec.vocab), ctx, bos)
                           : load_eval_windows(o.data, tok.get(), spec.vocab, ctx, bos);
  EvalOptions eo;
  eo.batch = o.batch;
  eo.save_logits = o.save_logits;
  eo.ref_logits = o.ref_logits;
  EvalResult r;
  if (rt) {
    r = evaluate(scored_rows_only(runtime_logits_source(*rt, ctx), spec.vocab), spec.vocab,
                 windows, eo);
  } else {
    Transformer model(m->spec, m->tensors);
    const LogitsSource torch_source = [&](const std::vector<Window>& ws, const LogitsSink& sink) {
      for_each_window_logits(model, ws, eo.batch, sink);
    };
    r = evaluate(scored_rows_only(torch_source, spec.vocab), spec.vocab, windows, eo);
  }
  if (o.json) {
    nlohmann::json j = {{"model", o.model},     {"data", o.data},         {"ctx", ctx},
                        {"windows_kind", o.llama_windows ? "llama-perplexity" : "bos"},
                        {"backend", rt ? "runtime" : "torch"},   {"tokens", r.n_tokens},   {"windows", r.n_windows},
                        {"nll", r.nll},         {"ppl", r.ppl},           {"seconds", r.seconds},
                        {"tokens_per_s", r.tok_per_s}};
    if (r.has_ref) {
      j["kl_mean"] = r.kl_mean;
      j["kl_p99"] = r.kl_p99;
      j["top1"] = r.top1;
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("model        %s\n", o.model.c_str());
  std::printf("data         %s (%lld tokens in %lld windows of <= %lld)\n", o.data.c_str(),
              static_cast<long long>(r.n_tokens), static_cast<long long>(r.n_windows),
              static_cast<long long>(ctx));
  std::printf("nll          %.4f nats/token\n", r.nll);
  std::printf("perplexity   %.4f\n", r.ppl);
  std::printf("throughput   %.0f tokens/s (%.2f s)\n", r.tok_per_s, r.seconds);
  if (r.has_ref) {
    std::printf("KL mean      %.6f nats (reference || model)\n", r.kl_mean);
    std::printf("KL p99       %.6f nats\n", r.kl_p99);
    std::printf("top-1 agree  %.2f%%\n", 100 * r.top1);
  }
}
}  // namespace

void setup_eval(CLI::App& app) {
  auto o = std::make_shared<EvalCmdOptions>();
  auto* sub = app.add_subcommand(
      "eval",
      "perplexity on DATA. Text is tokenized and cut into non-overlapping windows of --ctx "
      "tokens, each starting with BOS; every text token is predicted once.");
  sub->add_option("--model", o->model, "HF directory, llama2.c .bin, .slm or .gguf")->required();
  sub->add_option("--data", o->data, "text file, or HDF5 with dataset `tokens` (1-D or 2-D)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--ctx", o->ctx, "window length incl. BOS (default: min(max_seq, 2048))")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_option("--batch", o->batch, "windows per forward pass")->check(CLI::PositiveNumber);
  sub->add_flag("--llama-windows", o->llama_windows,
                "score as llama-perplexity does: BOS + text cut into chunks of --ctx tokens at "
                "stride --ctx, each chunk's first token replaced by BOS, only the second half of "
                "each chunk scored (compare with llama.cpp's published perplexities)");
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer file (default: found beside the model)");
  sub->add_option("--save-logits", o->save_logits, "write logits to this HDF5 file");
  sub->add_option("--ref-logits", o->ref_logits,
                  "HDF5 logits of a reference model: report KL(ref || model) and top-1")
      ->check(CLI::ExistingFile);
  sub->add_option("--backend", o->backend,
                  "auto (runtime for .slm and .gguf, else torch) | torch | runtime")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "torch", "runtime"}));
  sub->add_flag("--json", o->json, "machine-readable output on stdout");
  on_run(sub, [o] { run_eval(*o); });
}

}  // namespace slmc::cli
