// Options of `slmc distill` and of the distill recipe stage, declared once (STYLE 4): the same
// visit() gives CLI flags, YAML keys (a --config file, a recipe stage) and the printed resolved
// configuration.
#pragma once

#include <cstdint>
#include <string>

#include "compress/model/trainer.h"
#include "compress/recipe/selector.h"

namespace slmc::distill {

struct DistillOptions {
  // The student: a model directory or a shape file (`student`), or made from the teacher
  // (`keep_layers` and/or `widths`; see distill/student.h).
  std::string student;
  PatternList keep_layers;
  std::string widths;
  std::string vocab_map;
  // Loss: a weighted sum.
  double kl = 1.0;          // forward KL(teacher || student) at `temperature`, times T^2
  double reverse_kl = 0.0;  // reverse KL(student || teacher), times T^2
  double ce = 0.0;          // cross-entropy on the data
  double hidden = 0.0;      // hidden-state loss per matched layer
  std::string hidden_loss = "mse";  // mse | cosine
  double temperature = 1.0;
  // Offline teacher.
  std::string teacher_cache;  // an HDF5 top-k cache (distill/topk_cache.h) instead of the teacher
  int64_t top_k = 64;         // logits kept per position when writing a cache
  std::string cache_dtype = "f16";  // f16 | f32: how a written cache stores the logits
  // Data.
  double val_fraction = 0.02;  // held-out tail of the data when no held-out file is given
  TrainOptions train;

  DistillOptions() {
    train.ctx = 0;  // the teacher's max_seq
    train.steps = 300;
    train.lr = 1e-3;
    train.warmup = 20;
    train.checkpoint_every = 100;
    train.eval_every = 100;
  }

  template <class V>
  void visit(V& v) {
    v("student", student,
      "student: a model directory, or a shape YAML (the shape keys of `slmc train --config`)");
    v("keep_layers", keep_layers,
      "student from the teacher: teacher layers to keep (indices, 'every_other' or 'all')");
    v("widths", widths,
      "student from the teacher: a widths report JSON ({\"layers\": [{\"n_head\", \"n_kv_head\", "
      "\"ffn_dim\"}]}, one entry per teacher layer)");
    v("vocab_map", vocab_map,
      "text file: teacher token id of each student id, one per line (-1 = none)");
    v("kl", kl, "weight of forward KL(teacher || student) at the temperature (times T^2)");
    v("reverse_kl", reverse_kl, "weight of reverse KL(student || teacher) (times T^2)");
    v("ce", ce, "weight of cross-entropy on the data");
    v("hidden", hidden, "weight of the hidden-state loss (learned projection when widths differ)");
    v("hidden_loss", hidden_loss, "hidden-state loss: mse | cosine");
    v("temperature", temperature, "softmax temperature of the KL terms");
    v("teacher_cache", teacher_cache, "distill from this top-k cache instead of running the teacher");
    v("top_k", top_k, "logits per position a written cache keeps");
    v("cache_dtype", cache_dtype, "f16 | f32: storage of a written cache's logits");
    v("val_fraction", val_fraction, "held-out share of the data when --val-data is absent");
    train.visit(v);
  }

  // Throws naming `origin` and the key (shape-independent checks).
  void validate(const std::string& origin) const;
};

}  // namespace slmc::distill
