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

  // The model shape alone: what a `slmc distill --student SHAPE.yaml` file may hold.
  template <class V>
  void visit_shape(V& v) {
    v("family", family, "architecture family written to config.json (llama, mistral, qwen2)");
    v("n_layer", n_layer, "transformer blocks");
    v("d_model", d_model, "hidden size");
    v("n_head", n_head, "attention heads");
    v("n_kv_head", n_kv_head, "key/value heads (GQA); 0 = n_head");
    v("ffn_dim", ffn_dim, "MLP hidden size; 0 = 8/3 d_model rounded up to 32");
    v("rope_theta", rope_theta, "RoPE base");
    v("tied_embeddings", tied_embeddings, "share the output head with the embedding");
  }

  template <class V>
  void visit(V& v) {
    visit_shape(v);
    v("tokenizer", tokenizer, "'byte' or a tokenizer file (.model, tokenizer.bin, tokenizer.json)");
    v("val_fraction", val_fraction, "held-out share of the data when --val-data is absent");
    opt.visit(v);
  }

  // Throws naming `origin` and the key for impossible values.
  void validate(const std::string& origin) const;
  void validate_shape(const std::string& origin) const;
  // `max_seq` 0 = opt.ctx.
  ModelSpec make_spec(int64_t vocab, int32_t bos, int32_t eos, int64_t max_seq = 0) const;
};

TrainConfig load_train_config(const std::string& path);

// A file of shape keys only (visit_shape); training keys in it are errors naming the key.
TrainConfig load_shape_config(const std::string& path);

}  // namespace slmc::cli
