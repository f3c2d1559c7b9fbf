// slmc train --config SHAPE.yaml --data DATA -o OUT: a model from scratch with cross-entropy.

#include <cmath>
#include <cstdio>
#include <memory>

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/cli/train_run.h"
#include "compress/core/atomic_file.h"
#include "compress/core/fnv1a.h"
#include "compress/core/error.h"
#include "compress/recipe/yaml_options.h"

namespace slmc::cli {

std::vector<int32_t> split_heldout(std::vector<int32_t>& train, double fraction) {
  const size_t n_val = static_cast<size_t>(static_cast<double>(train.size()) * fraction);
  std::vector<int32_t> val(train.end() - static_cast<std::ptrdiff_t>(n_val), train.end());
  train.resize(train.size() - n_val);
  return val;
}

TrainRun train_to_dir(const TrainConfig& cfg, const std::string& origin, const std::string& data,
                      const std::string& val_data, const std::string& out, bool resume) {
  std::unique_ptr<Tokenizer> tok =
      cfg.tokenizer == "byte" ? make_byte_tokenizer() : load_tokenizer(cfg.tokenizer);
  const int64_t vocab = tok->vocab_size();
  std::vector<int32_t> train_ids = load_token_stream(data, tok.get(), vocab);
  std::vector<int32_t> val_ids;
  if (!val_data.empty()) {
    val_ids = load_token_stream(val_data, tok.get(), vocab);
  } else {
    val_ids = split_heldout(train_ids, cfg.val_fraction);
  }
  TrainRun run;
  run.spec = cfg.make_spec(vocab, tok->bos_id(), tok->eos_id());
  run.train_tokens = static_cast<int64_t>(train_ids.size());
  run.val_tokens = static_cast<int64_t>(val_ids.size());
  TrainSetup setup;
  if (cfg.opt.checkpoint_every > 0 || resume) {
    setup.checkpoint = out + "/checkpoint.safetensors";
    setup.resume = resume;
    OptionPrinter all;
    all.indent = "";
    TrainConfig(cfg).visit(all);
    setup.fingerprint = all.os.str() + "train tokens: " + fnv1a64_tokens(train_ids) +
                        "\nheld-out tokens: " + fnv1a64_tokens(val_ids) + "\n";
    if (resume) check_resumable(setup.checkpoint, setup.fingerprint);
  }
  OptionPrinter printer;
  TrainConfig(cfg).visit(printer);
  std::fprintf(stderr, "training %s (%.3f M params, vocab %lld) on %lld tokens, held-out %lld\n%s",
               origin.c_str(), static_cast<double>(run.spec.n_params()) / 1e6,
               static_cast<long long>(vocab), static_cast<long long>(run.train_tokens),
               static_cast<long long>(run.val_tokens), printer.os.str().c_str());

  Transformer model = Transformer::random_init(run.spec, cfg.opt.seed);
  run.result = train(model, train_ids, val_ids, cfg.opt, tok->bos_id(), setup);

  save_hf_model(out, run.spec, model.to_host(), DType::kF32);
  if (cfg.tokenizer == "byte") {
    write_byte_tokenizer_json(out + "/tokenizer.json");
  } else {
    const std::string src = cfg.tokenizer;
    const std::string base = src.substr(src.find_last_of('/') + 1);
    const bool spm = base.size() > 6 && base.compare(base.size() - 6, 6, ".model") == 0;
    const bool json = base.size() > 5 && base.compare(base.size() - 5, 5, ".json") == 0;
    write_file_atomically(
        out + "/" + (spm ? "tokenizer.model" : json ? "tokenizer.json" : "tokenizer.bin"),
        read_file(src));
  }
  return run;
}

namespace {
struct TrainCmdOptions {
  std::string config, data, val_data, out;
  bool resume = false;
};

void run_train(const TrainCmdOptions& o) {
  const TrainConfig cfg = load_train_config(o.config);
  const TrainRun r = train_to_dir(cfg, o.config, o.data, o.val_data, o.out, o.resume);
  std::printf("wrote %s (%.3f M params)\n", o.out.c_str(), static_cast<double>(r.spec.n_params()) / 1e6);
  std::printf("train tokens/s  %.0f\n",
              static_cast<double>(r.result.tokens_seen) / std::max(1e-9, r.result.seconds));
  std::printf("final loss      %.4f nats/token\n", r.result.final_train_loss);
  if (!std::isnan(r.result.val_nll))
    std::printf("held-out        %.4f nats/token, perplexity %.3f\n", r.result.val_nll,
                std::exp(r.result.val_nll));
}
}  // namespace

void setup_train(CLI::App& app) {
  auto o = std::make_shared<TrainCmdOptions>();
  auto* sub = app.add_subcommand("train", "train a model from scratch with cross-entropy");
  sub->add_option("--config", o->config, "shape and optimisation YAML")->required()->check(CLI::ExistingFile);
  sub->add_option("--data", o->data, "training text or HDF5 tokens")->required()->check(CLI::ExistingFile);
  sub->add_option("--val-data", o->val_data, "held-out text or HDF5 tokens (default: the data's tail)")
      ->check(CLI::ExistingFile);
  sub->add_option("-o,--output", o->out, "output Hugging Face-style directory")->required();
  sub->add_flag("--resume", o->resume,
                "continue from OUT/checkpoint.safetensors (same config and data), bit for bit");
  on_run(sub, [o] { run_train(*o); });
}

}  // namespace slmc::cli
