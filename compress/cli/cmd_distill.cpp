// slmc distill --teacher T (--student S | --keep-layers L... | --widths W) --data D -o OUT:
// knowledge distillation (distill/README.md). Also --write-cache (the teacher's top-k logits
// once), --resume, and data parallelism (--world-size/--rank/--master, or --nproc N locally).
// Option flags come from DistillOptions::visit(), the same declaration a --config file binds.

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/cli/option_flags.h"
#include "compress/cli/train_run.h"
#include "compress/core/error.h"
#include "compress/core/fnv1a.h"
#include "compress/core/progress.h"
#include "compress/recipe/yaml_options.h"
#include "distill/ddp.h"
#include "distill/distill.h"

namespace slmc::cli {

namespace {

struct DistillCmdOptions {
  std::string teacher, data, val_data, out, config, tokenizer, write_cache;
  bool resume = false, json = false;
  distill::DdpOptions ddp;
  int nproc = 0;
  distill::DistillOptions d;
  std::unique_ptr<CliBinder> binder;
};

bool is_dir(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void run_distill_cmd(DistillCmdOptions& o) {
  if (o.nproc > 0) {
    const int code = distill::launch_local(o.nproc, distill::own_arguments(), global_options().threads);
    if (code == 2) fail("distill: a rank stopped on bad input (its message is above)");
    if (code != 0) throw std::runtime_error("a distill rank exited with status " + std::to_string(code));
    return;
  }
  distill::DistillOptions d = o.d;
  if (!o.config.empty()) {
    const std::set<std::string> given = o.binder->given();
    SLMC_CHECK(given.empty(), "give distill options either in --config or as flags (",
               CliBinder::flag(given.empty() ? "" : given.begin()->c_str()), " was given with --config ",
               o.config, ")");
    d = distill::DistillOptions();
    bind_yaml(o.config, load_yaml_file(o.config), "", d);
  }
  d.validate(o.config.empty() ? "distill" : o.config);
  const bool ddp = o.ddp.world > 1 || !o.ddp.master.empty();
  if (ddp) {
    SLMC_CHECK(!o.ddp.master.empty(), "--world-size ", o.ddp.world, " needs --master HOST:PORT");
    distill::parse_master(o.ddp.master, "--master");
  }
  distill::check_world(d, o.ddp.world);

  // The data's tokenizer: --tokenizer, else the teacher's, else a student directory's.
  const bool student_dir = !d.student.empty() && is_dir(d.student);
  std::unique_ptr<Tokenizer> tok;
  if (!o.tokenizer.empty()) tok = load_tokenizer(o.tokenizer);
  else if (!o.teacher.empty()) tok = resolve_tokenizer(o.teacher, "", /*required=*/true);
  else if (student_dir) tok = resolve_tokenizer(d.student, "", /*required=*/true);
  SLMC_CHECK(tok != nullptr, "distill: no tokenizer: give --teacher, --tokenizer or a student directory");
  std::vector<int32_t> train_ids = load_token_stream(o.data, tok.get(), tok->vocab_size());
  std::vector<int32_t> val_ids = !o.val_data.empty()
                                     ? load_token_stream(o.val_data, tok.get(), tok->vocab_size())
                                     : split_heldout(train_ids, d.val_fraction);

  if (!o.write_cache.empty()) {
    SLMC_CHECK(!o.teacher.empty(), "--write-cache runs the teacher: give --teacher");
    const distill::CacheResult r = distill::write_topk_cache(d, o.teacher, *tok, train_ids, o.write_cache);
    if (o.json) {
      std::printf("{\"cache\": \"%s\", \"windows\": %lld, \"positions\": %lld, \"bytes\": %llu, \"seconds\": %.3f}\n",
                  o.write_cache.c_str(), static_cast<long long>(r.windows),
                  static_cast<long long>(r.positions), static_cast<unsigned long long>(r.bytes), r.seconds);
    } else {
      std::printf("wrote %s: top-%lld logits of %lld positions (%lld windows), %s bytes, %.1f s\n",
                  o.write_cache.c_str(), static_cast<long long>(d.top_k),
                  static_cast<long long>(r.positions), static_cast<long long>(r.windows),
                  with_commas(r.bytes).c_str(), r.seconds);
    }
    return;
  }
  SLMC_CHECK(!o.out.empty(), "distill: give -o OUT (the student's directory)");

  distill::DistillInputs in;
  in.teacher = o.teacher;
  in.tokenizer = tok.get();
  std::unique_ptr<Tokenizer> student_tok;
  if (student_dir) {
    student_tok = resolve_tokenizer(d.student, "", /*required=*/false);
    in.student_tokenizer = student_tok.get();
  } else if (!d.student.empty()) {
    const TrainConfig shape = load_shape_config(d.student);
    in.student_shape = shape.make_spec(tok->vocab_size(), tok->bos_id(), tok->eos_id(), 2);
  }
  in.out = o.out;
  in.resume = o.resume;
  std::unique_ptr<distill::GlooCollective> comm;
  if (ddp) {
    OptionPrinter p;
    d.visit(p);
    comm = std::make_unique<distill::GlooCollective>(
        o.ddp, p.os.str() + o.teacher + "\n" + fnv1a64_tokens(train_ids) + "\n" + fnv1a64_tokens(val_ids));
    in.comm = comm.get();
  }
  in.train_tokens = std::move(train_ids);
  in.val_tokens = std::move(val_ids);
  const distill::DistillResult r = distill::run_distill(d, in);
  if (o.ddp.rank != 0) return;
  if (o.json) {
    std::printf("%s\n", r.report_json.c_str());
    return;
  }
  std::printf("wrote %s (%.3f M params, %lld layers; student %s)\n", o.out.c_str(),
              static_cast<double>(r.student_params) / 1e6,
              static_cast<long long>(r.student.n_layer()), r.student_origin.c_str());
  std::printf("tokens seen     %lld in %.1f s this run%s\n", static_cast<long long>(r.train.tokens_seen),
              r.train.seconds,
              r.train.resumed_from > 0 ? (" (resumed at step " + std::to_string(r.train.resumed_from) + ")").c_str() : "");
  std::printf("train tokens/s  %.0f\n", r.tokens_per_s);
  std::printf("final loss      %.4f\n", r.train.final_train_loss);
  if (!std::isnan(r.train.val_nll))
    std::printf("held-out        %.4f nats/token, perplexity %.3f\n", r.train.val_nll,
                std::exp(r.train.val_nll));
}

}  // namespace

void setup_distill(CLI::App& app) {
  auto o = std::make_shared<DistillCmdOptions>();
  auto* sub = app.add_subcommand("distill", "distill a teacher into a smaller student");
  sub->add_option("--teacher", o->teacher, "teacher model (HF directory, llama2.c .bin or .slm)");
  sub->add_option("--data", o->data, "training text or HDF5 tokens")->required()->check(CLI::ExistingFile);
  sub->add_option("--val-data", o->val_data, "held-out text or HDF5 tokens (default: the data's tail)")
      ->check(CLI::ExistingFile);
  sub->add_option("-o,--output", o->out, "output directory: the student, its checkpoint and report");
  sub->add_option("--config", o->config, "YAML of the distill options below (instead of flags)")
      ->check(CLI::ExistingFile);
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer of the data (default: the teacher's)")
      ->check(CLI::ExistingFile);
  sub->add_option("--write-cache", o->write_cache,
                  "run the teacher once and write its top-k logits to this HDF5 file, then stop");
  sub->add_flag("--resume", o->resume,
                "continue from OUT/checkpoint.safetensors (same options and data), bit for bit");
  sub->add_flag("--json", o->json, "print the report as JSON on stdout");
  sub->add_option("--world-size", o->ddp.world, "data parallel: number of processes")
      ->capture_default_str()->group("Data parallel");
  sub->add_option("--rank", o->ddp.rank, "data parallel: this process's rank (0 writes)")
      ->capture_default_str()->group("Data parallel");
  sub->add_option("--master", o->ddp.master, "data parallel: HOST:PORT of rank 0's rendezvous")
      ->group("Data parallel");
  sub->add_option("--bind", o->ddp.bind,
                  "data parallel: this machine's address the other ranks reach "
                  "(default: 127.0.0.1 for a loopback master, else the host name)")
      ->group("Data parallel");
  sub->add_option("--ddp-timeout", o->ddp.timeout_s, "data parallel: rendezvous timeout in seconds")
      ->capture_default_str()->group("Data parallel");
  sub->add_option("--nproc", o->nproc,
                  "data parallel on this machine: start N ranks (threads split between them)")
      ->group("Data parallel");
  o->binder = std::make_unique<CliBinder>(sub, "Distill options (also --config keys)");
  o->d.visit(*o->binder);
  on_run(sub, [o] { run_distill_cmd(*o); });
}

}  // namespace slmc::cli
