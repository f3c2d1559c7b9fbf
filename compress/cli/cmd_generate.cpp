// slmc generate: greedy at temperature 0, else temperature + top-p sampling with a seed. The text
// goes to stdout exactly as llama2.c's run.c prints it (tokenizer.json tokenizers print their
// bytes as they are); speed goes to stderr. Generation stops at the model's BOS or EOS or any
// EOS id of the tokenizer (generation_config.json may list several).
#include <chrono>
#include <cstdio>
#include <memory>

#include "compress/cli/backend.h"
#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/core/error.h"
#include "compress/model/sampler.h"
#include "compress/model/transformer.h"

namespace slmc::cli {

namespace {
struct GenerateOptions {
  std::string model, prompt, tokenizer;
  int64_t n = 256;
  double temperature = 0.8;
  double top_p = 0.9;
  uint64_t seed = 42;
  std::string backend = "auto";
};

// run.c's safe_printf: skip single non-printable, non-whitespace bytes (raw byte tokens). A
// tokenizer.json's pieces are printed whole: its byte tokens carry the bytes of characters that
// span several tokens.
void print_piece(const std::string& piece, bool raw) {
  if (piece.empty()) return;
  if (!raw && piece.size() == 1) {
    const unsigned char c = static_cast<unsigned char>(piece[0]);
    if (!(std::isprint(c) || std::isspace(c))) return;
  }
  std::fwrite(piece.data(), 1, piece.size(), stdout);
  std::fflush(stdout);
}

void run_generate(const GenerateOptions& o) {
  LoadedBackend b(o.backend, o.model);
  const ModelSpec& spec = b.spec();
  const std::unique_ptr<RuntimeBackend>& rt = b.rt;
  const std::unique_ptr<LoadedModel>& m = b.torch;
  auto tok = resolve_tokenizer(o.model, o.tokenizer, /*required=*/true);
  SLMC_CHECK(tok->vocab_size() <= spec.vocab, tok->source(), ": tokenizer has ",
             tok->vocab_size(), " tokens, the model only ", spec.vocab);
  std::vector<int32_t> prompt{static_cast<int32_t>(spec.bos_id)};
  for (int32_t id : tok->encode(o.prompt)) prompt.push_back(id);
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + o.n;
  SLMC_CHECK(capacity <= spec.max_seq, "prompt (", prompt.size(), " tokens) + -n ", o.n,
             " exceeds the model's context ", spec.max_seq);
  Sampler sampler(o.temperature, o.top_p, o.seed);
  const bool raw = tok->kind() == "hf";
  const std::vector<int32_t> stop = stop_ids(spec.bos_id, spec.eos_id, tok->eos_ids());
  // The prompt is echoed as run.c does (pieces after BOS), then generation continues from it.
  for (size_t i = 1; i < prompt.size(); ++i)
    print_piece(tok->decode_piece(prompt[i - 1], prompt[i]), raw);
  auto t0 = std::chrono::steady_clock::now();
  int32_t prev = prompt.back();
  auto emit = [&](int32_t next) {
    print_piece(tok->decode_piece(prev, next), raw);
    prev = next;
  };
  int64_t produced = 0;
  if (rt) {
    runtime::Session session(*rt->model, *rt->pool, capacity);
    std::vector<float> logits(static_cast<size_t>(spec.vocab));
    auto step = [&](const int32_t* tokens, int64_t n) -> const float* {
      session.forward(tokens, n, logits.data(), /*all_logits=*/false);
      return logits.data();
    };
    produced = generate(step, spec.vocab, stop, prompt, o.n, sampler, emit);
  } else {
    Transformer model(m->spec, m->tensors);
    produced = generate(model, prompt, o.n, sampler, emit, stop);
  }
  std::printf("\n");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "generated %lld tokens in %.2f s (%.1f tok/s)\n",
               static_cast<long long>(produced), s, static_cast<double>(produced) / std::max(s, 1e-9));
}
}  // namespace

void setup_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* sub = app.add_subcommand("generate", "generate text (greedy at --temperature 0)");
  sub->add_option("--model", o->model, "HF directory or llama2.c .bin")->required();
  sub->add_option("--prompt", o->prompt, "text after BOS (default: empty)");
  sub->add_option("-n,--tokens", o->n, "new tokens to generate")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  sub->add_option("--temperature", o->temperature, "0 = greedy")->check(CLI::Range(0.0, 100.0));
  sub->add_option("--top-p", o->top_p, "nucleus sampling mass")->check(CLI::Range(1e-9, 1.0));
  sub->add_option("--seed", o->seed, "sampling seed");
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer file (default: found beside the model)");
  sub->add_option("--backend", o->backend, "auto (runtime for .slm, else torch) | torch | runtime")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "torch", "runtime"}));
  on_run(sub, [o] { run_generate(*o); });
}

}  // namespace slmc::cli
