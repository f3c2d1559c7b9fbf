#include "compress/cli/train_config.h"

#include "compress/core/error.h"
#include "compress/recipe/yaml_options.h"

namespace slmc::cli {

void TrainConfig::validate_shape(const std::string& o) const {
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
}

void TrainConfig::validate(const std::string& o) const {
  validate_shape(o);
  SLMC_CHECK(val_fraction >= 0 && val_fraction < 1, o, ": val_fraction ", val_fraction,
             " must be in [0, 1)");
  opt.validate(o);
}

ModelSpec TrainConfig::make_spec(int64_t vocab, int32_t bos, int32_t eos, int64_t max_seq) const {
  Family f = Family::kLlama;
  family_from_name(family, &f);
  const int64_t ffn = ffn_dim ? ffn_dim : ((8 * d_model / 3 + 31) / 32) * 32;
  ModelSpec s = make_uniform_spec(f, vocab, d_model, n_layer, n_head, n_kv_head ? n_kv_head : n_head,
                                  ffn, max_seq > 0 ? max_seq : opt.ctx, rope_theta);
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

namespace {
struct ShapeOnly {
  TrainConfig* c;
  template <class V>
  void visit(V& v) {
    c->visit_shape(v);
  }
};
}  // namespace

TrainConfig load_shape_config(const std::string& path) {
  TrainConfig c;
  ShapeOnly s{&c};
  bind_yaml(path, load_yaml_file(path), "", s);
  c.validate_shape(path);
  return c;
}

}  // namespace slmc::cli
