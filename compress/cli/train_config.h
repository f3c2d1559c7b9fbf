// The `slmc train --config SHAPE.yaml` file: model shape and optimisation, declared once.
#pragma once

#include <cstdint>
#include <string>

#include "compress/core/model_spec.h"
#include "compress/model/trainer.h"

namespace slmc::cli {

struct TrainConfig {
  // Shape. vocab comes from the tokenizer.
  std::string family = "llama";
  int64_t n_layer = 4;
  int64_t d_model = 128;
  int64_t n_head = 4;
  int64_t n_kv_head = 0;      // 0 = n_head
  int64_t ffn_dim = 0;        // 0 = 8/3 d_model rounded up to a multiple of 32
  double rope_theta = 10000;
  bool tied_embeddings = true;
  std::string tokenizer = "byte";  // "byte", or a tokenizer file
  // Data.
  double val_fraction = 0.1;  // held-out tail of the data when --val-data is not given
  // Optimisation.
  TrainOptions opt;

  template <class V>
  void visit(V& v) {
    v("family", family, "architecture family written to config.json (llama, mistral, qwen2)");
    v("n_layer", n_layer, "transformer blocks");
    v("d_model", d_model, "hidden size");
    v("n_head", n_head, "attention heads");
    v("n_kv_head", n_kv_head, "key/value heads (GQA); 0 = n_head");
    v("ffn_dim", ffn_dim, "MLP hidden size; 0 = 8/3 d_model rounded up to 32");
    v("rope_theta", rope_theta, "RoPE base");
    v("tied_embeddings", tied_embeddings, "share the output head with the embedding");
    v("tokenizer", tokenizer, "'byte' or a tokenizer file (.model, tokenizer.bin, tokenizer.json)");
    v("val_fraction", val_fraction, "held-out share of the data when --val-data is absent");
    v("ctx", opt.ctx, "training window in tokens (BOS included); also the model's max_seq");
    v("steps", opt.steps, "optimizer steps");
    v("batch", opt.batch, "windows per step");
    v("lr", opt.lr, "peak learning rate");
    v("min_lr_ratio", opt.min_lr_ratio, "final lr as a share of the peak (cosine)");
    v("warmup", opt.warmup, "linear warmup steps");
    v("weight_decay", opt.weight_decay, "AdamW weight decay on 2-D weights");
    v("beta1", opt.beta1, "AdamW beta1");
    v("beta2", opt.beta2, "AdamW beta2");
    v("grad_clip", opt.grad_clip, "max global gradient norm (0 = off)");
    v("seed", opt.seed, "init and batch sampling seed");
    v("eval_every", opt.eval_every, "steps between held-out evaluations (0 = end only)");
  }

  // Throws naming `origin` and the key for impossible values.
  void validate(const std::string& origin) const;
  ModelSpec make_spec(int64_t vocab, int32_t bos, int32_t eos) const;
};

TrainConfig load_train_config(const std::string& path);

}  // namespace slmc::cli
