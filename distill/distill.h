// `slmc distill` as a library call: resolve the teacher (a model, or its top-k cache), build the
// student, train it with the distillation loss, write it. The command (compress/cli/
// cmd_distill.cpp) and the recipe stage only parse options and data and print the result.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "compress/io/model_loader.h"
#include "compress/model/trainer.h"
#include "compress/tokenizer/tokenizer.h"
#include "distill/options.h"

namespace slmc::distill {

struct DistillInputs {
  std::string teacher;  // model path; may be "" with a teacher_cache when the student needs no
                        // teacher weights (a directory or a shape)
  const Tokenizer* tokenizer = nullptr;          // the data's (the teacher's, or the student's)
  const Tokenizer* student_tokenizer = nullptr;  // a student directory's own tokenizer, if any
  std::vector<int32_t> train_tokens, val_tokens;
  std::optional<ModelSpec> student_shape;  // `student` was a shape file: random init of this
  std::string out;                         // output directory (rank 0 writes)
  bool resume = false;                     // continue from out/checkpoint.safetensors
  Collective* comm = nullptr;              // data parallel
};

struct DistillResult {
  TrainResult train;
  ModelSpec student;
  int64_t student_params = 0, teacher_params = 0;  // teacher 0 when only its cache was used
  double tokens_per_s = 0;     // global training tokens per second of this run
  std::string student_origin;  // "teacher layers [0, 2, 4]", a directory, a shape file
  std::string report_json;     // what out/distill_report.json holds
};

// Throws slmc::Error (exit 2) naming the file, key or value for: teacher and student
// vocabularies that differ without a vocab_map, keep_layers out of range, a cache whose
// teacher/tokenizer/data hash, ctx or temperature differ from this run's, a world size that does
// not divide the batch.
DistillResult run_distill(const DistillOptions& o, const DistillInputs& in);

struct CacheResult {
  int64_t windows = 0, positions = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};

// Runs the teacher once over every training window (shuffled-window order's windows of ctx
// tokens) and writes its top-k logits to `path` (distill/topk_cache.h).
CacheResult write_topk_cache(const DistillOptions& o, const std::string& teacher,
                             const Tokenizer& tok, const std::vector<int32_t>& train_tokens,
                             const std::string& path);

// Fingerprints stored in a cache and checked against it (compress/core/fnv1a.h).
std::string teacher_hash(const LoadedModel& m);   // canonical names, shapes and fp32 values
std::string tokenizer_hash(const Tokenizer& t);   // kind, size, bos/eos and every piece
std::string data_hash(const std::vector<int32_t>& tokens, int64_t ctx, int32_t bos);

// Refuses a world size that does not split the batch into whole micro-batches (before any
// rendezvous or loading).
void check_world(const DistillOptions& o, int world);

// The training window of `o` for a teacher of `max_seq` (ctx 0 = max_seq).
int64_t resolve_ctx(const DistillOptions& o, int64_t teacher_max_seq);

}  // namespace slmc::distill
