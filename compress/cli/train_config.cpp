#include "compress/cli/train_config.h"

#include "compress/core/error.h"
#include "compress/recipe/yaml_options.h"

namespace slmc::cli {

void TrainConfig::validate(const std::string& o) const {
  Family f;
  SLMC_CHECK(family_from_name(family, &f) &&
                 (f == Family::kLlama || f == Family::kMistral || f == Family::kQwen2),
             o, ": family '", family, "' cannot be trained (llama, mistral, qwen2)");
  SLMC_CHECK(n_layer > 0 && n_layer <= 256, o, ": n_layer ", n_layer, " out of range [1, 256]");
  SLMC_CHECK(d_model > 0 && n_head > 0 && d_model % n_head == 0, o, ": d_model ", d_model,
             " must be a positive multiple of n_head ", n_head);
  SLMC_CHECK((d_model / n_head) % 2 == 0, o, ": head_dim d_model/n_head = ", d_model / n_head,
             " must be even for RoPE");
  const int64_t kv = n_kv_head ? n_kv_head : n_head;
  SLMC_CHECK(kv > 0 && n_head % kv == 0, o, ": n_head ", n_head, " is not a multiple of n_kv_head ",
             kv);
  SLMC_CHECK(ffn_dim >= 0, o, ": ffn_dim ", ffn_dim, " < 0");
  SLMC_CHECK(val_fraction >= 0 && val_fraction < 1, o, ": val_fraction ", val_fraction,
             " must be in [0, 1)");
  SLMC_CHECK(opt.ctx >= 2, o, ": ctx ", opt.ctx, " < 2");
  SLMC_CHECK(opt.steps > 0, o, ": steps ", opt.steps, " must be > 0");
  SLMC_CHECK(opt.batch > 0, o, ": batch ", opt.batch, " must be > 0");
  SLMC_CHECK(opt.lr > 0 && opt.lr < 1, o, ": lr ", opt.lr, " must be in (0, 1)");
  SLMC_CHECK(opt.min_lr_ratio >= 0 && opt.min_lr_ratio <= 1, o, ": min_lr_ratio ", opt.min_lr_ratio,
             " must be in [0, 1]");
  SLMC_CHECK(opt.warmup >= 0, o, ": warmup ", opt.warmup, " < 0");
  SLMC_CHECK(opt.weight_decay >= 0, o, ": weight_decay ", opt.weight_decay, " < 0");
  SLMC_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1, o,
             ": beta1/beta2 must be in [0, 1)");
  SLMC_CHECK(opt.grad_clip >= 0, o, ": grad_clip ", opt.grad_clip, " < 0");
  SLMC_CHECK(opt.eval_every >= 0, o, ": eval_every ", opt.eval_every, " < 0");
}

ModelSpec TrainConfig::make_spec(int64_t vocab, int32_t bos, int32_t eos) const {
  Family f = Family::kLlama;
  family_from_name(family, &f);
  const int64_t ffn = ffn_dim ? ffn_dim : ((8 * d_model / 3 + 31) / 32) * 32;
  ModelSpec s = make_uniform_spec(f, vocab, d_model, n_layer, n_head, n_kv_head ? n_kv_head : n_head,
                                  ffn, opt.ctx, rope_theta);
  s.tied_embeddings = tied_embeddings;
  s.bos_id = bos;
  s.eos_id = eos;
  if (f == Family::kQwen2)
    for (LayerSpec& l : s.layers) l.attn_qkv_bias = true;
  s.validate();
  return s;
}

TrainConfig load_train_config(const std::string& path) {
  TrainConfig c;
  bind_yaml(path, load_yaml_file(path), "", c);
  c.validate(path);
  return c;
}

}  // namespace slmc::cli
