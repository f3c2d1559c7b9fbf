// slmc data tokenize: text -> HDF5 token file (1-D stream, attributes tokenizer and bos_id).
#include <cstdio>
#include <memory>

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/cli/synthetic_corpus.h"
#include "compress/io/h5.h"

namespace slmc::cli {

namespace {
struct TokenizeOptions {
  std::string model, tokenizer, text, out;
};

void run_tokenize(const TokenizeOptions& o) {
  SLMC_CHECK(!o.model.empty() || !o.tokenizer.empty(), "data tokenize: pass --model or --tokenizer");
  auto tok = resolve_tokenizer(o.model, o.tokenizer, /*required=*/true);
  const std::string text = read_file(o.text);
  TokenData d;
  d.tokens = tok->encode(text);
  SLMC_CHECK(!d.tokens.empty(), o.text, ": no tokens (empty file?)");
  d.tokenizer = tok->kind() + ":" + tok->source();
  d.bos_id = tok->bos_id();
  write_tokens_h5(o.out, d);
  std::fprintf(stderr, "%s: %zu bytes -> %zu tokens (%.2f bytes/token) -> %s\n", o.text.c_str(),
               text.size(), d.tokens.size(),
               static_cast<double>(text.size()) / static_cast<double>(d.tokens.size()), o.out.c_str());
}
struct SynthOptions {
  int64_t stories = 2000;
  uint64_t seed = 1;
  std::string out;
};
}  // namespace

void setup_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "data preparation");
  data->require_subcommand(1);
  auto o = std::make_shared<TokenizeOptions>();
  auto* sub = data->add_subcommand("tokenize", "tokenize a text file into an HDF5 token file");
  sub->add_option("--model", o->model, "model whose tokenizer to use");
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer file");
  sub->add_option("--text", o->text, "input text")->required()->check(CLI::ExistingFile);
  sub->add_option("-o,--output", o->out, "output .h5")->required();
  on_run(sub, [o] { run_tokenize(*o); });

  auto so = std::make_shared<SynthOptions>();
  auto* synth = data->add_subcommand(
      "synth", "write the demo's synthetic story corpus (made here, seeded) to a text file");
  synth->add_option("--stories", so->stories, "stories")->capture_default_str()
      ->check(CLI::PositiveNumber);
  synth->add_option("--seed", so->seed, "seed (same seed, same bytes)")->capture_default_str();
  synth->add_option("-o,--output", so->out, "output text file (written atomically)")->required();
  on_run(synth, [so] {
    const std::string text = synthetic_stories(so->stories, so->seed);
    write_file_atomically(so->out, text);
    std::fprintf(stderr, "%lld stories, %zu bytes -> %s\n", static_cast<long long>(so->stories),
                 text.size(), so->out.c_str());
  });
}

}  // namespace slmc::cli
