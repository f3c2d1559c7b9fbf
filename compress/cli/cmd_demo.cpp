// slmc demo: the README's main job. Makes a corpus from a seeded grammar, trains a small model on
// it, evaluates it on held-out stories, and prints samples. Needs no downloaded data.
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/cli/synthetic_corpus.h"
#include "compress/cli/train_run.h"
#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/eval/evaluate.h"
#include "compress/model/sampler.h"
#include "compress/recipe/yaml_options.h"

namespace slmc::cli {

namespace {
struct DemoOptions {
  std::string out = "demo_out";
  int64_t stories = 20000;
  int64_t steps = 600;
  uint64_t seed = 1;
};

void make_dir(const std::string& d) {
  SLMC_CHECK(::mkdir(d.c_str(), 0755) == 0 || errno == EEXIST, d, ": cannot create directory");
}

std::string sample(const Transformer& model, const Tokenizer& tok, const std::string& prompt,
                   double temperature, uint64_t seed) {
  std::vector<int32_t> ids{tok.bos_id()};
  for (int32_t id : tok.encode(prompt)) ids.push_back(id);
  Sampler s(temperature, 0.9, seed);
  std::vector<int32_t> out(ids.begin() + 1, ids.end());
  const int64_t room = model.spec().max_seq - static_cast<int64_t>(ids.size());
  generate(model, ids, std::min<int64_t>(room, 200), s, [&](int32_t t) { out.push_back(t); });
  return tok.decode(out);
}

void run_demo(const DemoOptions& o) {
  make_dir(o.out);
  make_dir(o.out + "/data");
  const std::string train_txt = o.out + "/data/train.txt", val_txt = o.out + "/data/val.txt";
  write_file_atomically(train_txt, synthetic_stories(o.stories, o.seed));
  write_file_atomically(val_txt, synthetic_stories(std::max<int64_t>(50, o.stories / 20), o.seed + 1000));
  std::fprintf(stderr, "demo: wrote %s and %s\n", train_txt.c_str(), val_txt.c_str());

  TrainConfig cfg;
  cfg.n_layer = 4;
  cfg.d_model = 128;
  cfg.n_head = 4;
  cfg.n_kv_head = 2;
  cfg.ffn_dim = 352;
  cfg.opt.ctx = 128;
  cfg.opt.batch = 16;
  cfg.opt.steps = o.steps;
  cfg.opt.lr = 3e-3;
  cfg.opt.warmup = std::max<int64_t>(1, o.steps / 20);
  cfg.opt.seed = o.seed;
  const std::string cfg_path = o.out + "/demo_model.yaml";
  OptionPrinter yaml;
  yaml.indent = "";
  cfg.visit(yaml);
  write_file_atomically(cfg_path, "# written by `slmc demo`; train it again with `slmc train --config`\n" +
                                      yaml.os.str());
  const TrainConfig loaded = load_train_config(cfg_path);  // the file is the source of truth

  const std::string model_dir = o.out + "/model";
  const TrainRun run = train_to_dir(loaded, cfg_path, train_txt, val_txt, model_dir);

  // Evaluate what was written to disk, through the same path users take.
  const LoadedModel m = load_model(model_dir);
  auto tok = resolve_tokenizer(model_dir, "", /*required=*/true);
  Transformer model(m.spec, m.tensors);
  const auto windows = load_eval_windows(val_txt, tok.get(), m.spec.vocab, m.spec.max_seq,
                                         tok->bos_id());
  const EvalResult r = evaluate(model, windows, EvalOptions{});
  const double bar = static_cast<double>(m.spec.vocab) / 4;
  std::printf("\n== slmc demo ==\n");
  std::printf("model        %s (%.3f M params, vocab %lld, %lld layers, d_model %lld)\n",
              model_dir.c_str(), static_cast<double>(m.spec.n_params()) / 1e6,
              static_cast<long long>(m.spec.vocab), static_cast<long long>(m.spec.n_layer()),
              static_cast<long long>(m.spec.d_model));
  std::printf("training     %lld steps, %lld tokens seen, %.0f tokens/s, %.1f s\n",
              static_cast<long long>(loaded.opt.steps), static_cast<long long>(run.result.tokens_seen),
              static_cast<double>(run.result.tokens_seen) / std::max(1e-9, run.result.seconds),
              run.result.seconds);
  std::printf("held-out     %.4f nats/token, perplexity %.3f over %lld tokens (bar: < vocab/4 = %.1f) %s\n",
              r.nll, r.ppl, static_cast<long long>(r.n_tokens), bar, r.ppl < bar ? "PASS" : "FAIL");
  std::printf("untrained    perplexity would be ~%lld (uniform over the vocab)\n",
              static_cast<long long>(m.spec.vocab));
  std::printf("\ngreedy sample (prompt \"One day\"):\n%s\n", sample(model, *tok, "One day", 0, 0).c_str());
  std::printf("\nsampled (temperature 0.8, seed 7, prompt \"One day Mia\"):\n%s\n",
              sample(model, *tok, "One day Mia", 0.8, 7).c_str());
  SLMC_CHECK(r.ppl < bar, "demo: held-out perplexity ", r.ppl, " is not below vocab/4 = ", bar);

  // Compress it to int4 with GPTQ through a recipe, written out and parsed like a user's, and
  // measure the artifact with the runtime against the model just trained.
  register_builtin_passes();
  const std::string recipe_path = o.out + "/int4-gptq.yaml";
  write_file_atomically(recipe_path,
                        "# written by `slmc demo`; run it again with\n"
                        "#   slmc run " + recipe_path + " --model " + model_dir + "\n"
                        "version: 1\n"
                        "data:\n"
                        "  calibration: {path: data/train.txt, samples: 64, seq_len: 128}\n"
                        "  eval: {path: data/val.txt, seq_len: 128}\n"
                        "stages:\n"
                        "  - quantize: {method: gptq, bits: 4}\n"
                        "export: [{format: slm, path: " + o.out + "/model-q4_0-gptq.slm}]\n"
                        "gates: {max_ppl_increase: 0.1}\n");
  std::printf("\n== int4 GPTQ (%s) ==\n", recipe_path.c_str());
  std::fflush(stdout);
  const Recipe rec = load_recipe(recipe_path);
  RunInput in;
  in.model_path = model_dir;
  in.tokenizer = resolve_tokenizer(model_dir, "", false);
  for (const Stage& st : rec.stages) in.stages.push_back({st.pass.get(), st.where});
  in.calibration = rec.calibration;
  in.eval = rec.eval;
  in.gates = rec.gates;
  in.exports = rec.exports;
  in.threads = global_options().threads;
  run_and_print(in, false);
  const std::string& slm = rec.exports.at(0).path;
  std::printf("\nnext: slmc eval --model %s --data %s\n      slmc generate --model %s --prompt \"One day\"\n"
              "      slmc bench --model %s\n",
              model_dir.c_str(), val_txt.c_str(), slm.c_str(), slm.c_str());
}
}  // namespace

void setup_demo(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  auto* sub = app.add_subcommand(
      "demo", "make a synthetic corpus, train a small model on it, evaluate and sample it");
  sub->add_option("-o,--output", o->out, "output directory")->capture_default_str();
  sub->add_option("--stories", o->stories, "stories in the training corpus")
      ->capture_default_str()->check(CLI::Range(int64_t{100}, int64_t{10000000}));
  sub->add_option("--steps", o->steps, "training steps")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--seed", o->seed, "corpus and training seed")->capture_default_str();
  on_run(sub, [o] { run_demo(*o); });
}

}  // namespace slmc::cli
