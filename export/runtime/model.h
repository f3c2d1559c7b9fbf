// The standalone CPU runtime: runs an mmapped .slm artifact or GGUF file (llama.cpp's, in the
// architectures and types export/format/gguf_model.h maps) with no LibTorch, HDF5 or yaml-cpp.
// Model holds the validated file and views of its tensors; Session holds one sequence's KV cache
// and scratch buffers and runs the forward pass (a batch of prompt tokens, or one decode token).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "compress/core/model_spec.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/gguf_model.h"
#include "export/format/slm_format.h"
#include "export/runtime/huge_buffer.h"
#include "export/runtime/kernels.h"
#include "export/runtime/thread_pool.h"

namespace slmc::runtime {

// A matrix view into the mapping: rows x cols in `format`.
struct Matrix {
  codec::Format format = codec::Format::kF32;
  WeightLayout layout = WeightLayout::kCodec;  // kPacked: repacked at load for the SIMD kernels
  const uint8_t* data = nullptr;
  int64_t rows = 0, cols = 0;
  std::string name;
};

// One expert of a mixture-of-experts MLP: (ffn_dim, d_model) gate and up, (d_model, ffn_dim) down.
struct ExpertWeights {
  Matrix gate, up, down;
};

struct LayerWeights {
  const float* attn_norm = nullptr;  // (d_model)
  Matrix q, k, v, o;
  const float *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr, *o_bias = nullptr;
  // LayerSpec::qk_norm: RMSNorm weights (head_dim) for every query / key head, before RoPE.
  const float *q_norm = nullptr, *k_norm = nullptr;
  // LayerSpec::post_norms: RMSNorm (d_model) of the attention / MLP output before the residual add.
  const float *attn_post_norm = nullptr, *ffn_post_norm = nullptr;
  const float* ffn_norm = nullptr;   // (d_model)
  Matrix gate, up, down;             // dense MLP (empty when the layer has experts)
  const float *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;
  Matrix router;                     // MoE: (n_expert, d_model); empty for a dense MLP
  std::vector<ExpertWeights> experts;
  // (head_dim / 2): RoPE frequencies of this layer (its rope_theta; the model's rope_scaling
  // unless LayerSpec::rope_scaled is false).
  std::vector<float> inv_freq;
};

class Model {
 public:
  // Maps and validates `path` (an .slm, or a GGUF file by its magic); checks every tensor the
  // spec needs is there with the right shape.
  explicit Model(const std::string& path);

  const ModelSpec& spec() const { return spec_; }
  const std::string& path() const { return path_; }
  uint64_t file_bytes() const { return file_bytes_; }
  std::map<std::string, uint64_t> bytes_by_format() const;  // stored tensor bytes per format
  // nullptr when the artifact carries no tokenizer.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const Matrix& token_embd() const { return token_embd_; }
  const Matrix& output() const { return output_; }  // token_embd when tied
  const float* output_norm() const { return output_norm_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }

  // Bytes of weights a decode step streams (every matrix but the embedding table, which is only
  // gathered; a tied head streams it once). A mixture-of-experts layer counts its router and
  // n_expert_used / n_expert of its expert bytes: one token reads exactly n_expert_used experts,
  // all of one size, so this is exact for decode (a prefill batch may touch more of them).
  uint64_t bytes_per_token() const;
  uint64_t weight_bytes() const;  // all tensor bytes in the file

 private:
  // A canonical tensor's bytes wherever they live (the mapping, or a reordered copy).
  struct TensorView {
    codec::Format format = codec::Format::kF32;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;
    uint64_t n_bytes = 0;
    const format::SlmTensor* slm = nullptr;  // .slm files: pages can be released after packing
  };
  void open_slm(const std::string& path);
  void open_gguf(const std::string& path);
  const TensorView& view(const std::string& name) const;
  const float* vector(const std::string& name, int64_t n);
  Matrix matrix(const std::string& name, int64_t rows, int64_t cols);

  std::string path_;
  std::unique_ptr<format::SlmFile> slm_;
  std::unique_ptr<format::GgufFile> gguf_;
  uint64_t file_bytes_ = 0;
  std::map<std::string, TensorView> views_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned_bytes_;  // reordered GGUF q/k rows
  ModelSpec spec_;
  std::unique_ptr<Tokenizer> tokenizer_;
  Matrix token_embd_, output_;
  const float* output_norm_ = nullptr;
  std::vector<LayerWeights> layers_;
  std::vector<std::unique_ptr<std::vector<float>>> owned_;  // 1-D tensors not stored as F32
  HugeBuffer packed_;          // repacked Q4_0 / Q8_0 matrices, one arena on 2 MiB pages
  size_t packed_used_ = 0;
};

class Session {
 public:
  // `max_ctx` positions of KV cache (<= spec.max_seq). The pool is shared, not owned.
  // `acts`: how the integer weight formats see activations (kernels.h); the default, precise
  // unless SLMC_ACTS=int8, makes the runtime match LibTorch on the same artifact.
  Session(const Model& model, ThreadPool& pool, int64_t max_ctx, Isa isa = best_isa(),
          ActPrecision acts = default_act_precision());

  // Runs `n` tokens at positions pos()..pos()+n-1 and advances pos(). Writes logits for every
  // token ((n, vocab) row-major) when `all_logits`, else only the last token's (vocab).
  // Token ids are checked against the vocab.
  void forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits);

  void reset() { pos_ = 0; }
  int64_t pos() const { return pos_; }
  int64_t capacity() const { return max_ctx_; }

 private:
  // Prepares `x` (n, w.cols) for `w` unless acts_ already hold it for w's format and layout.
  void prepare(const Matrix& w, const float* x, int64_t n, bool same_input);
  void matmul(const Matrix& w, float* y, int64_t ldy);
  // Matrices that read the same input (q/k/v, gate/up): y_i (n, ldy_i) = x W_i^T.
  struct GroupOut {
    const Matrix* w;
    float* y;
    int64_t ldy;
  };
  // Prepares `x` (n, cols) once per distinct format and layout among the `count` (<= 3) matrices
  // (acts_ and group_acts_) and returns in acts[i] the preparation matrix i reads.
  void prepare_group(const GroupOut* outs, int count, const float* x, int64_t n,
                     const Acts** acts);
  // Runs the group as one pool dispatch: the rows of all its matrices, concatenated, are split
  // into chunks that the threads claim (ThreadPool::parallel_for_dynamic).
  void matmul_group(const GroupOut* outs, int count, const Acts* const* acts);
  // Row chunk for `rows` rows of output of `tokens` tokens split over the pool: a multiple of 16
  // (whole cache lines of output), a few chunks per thread.
  int64_t row_chunk(int64_t rows, int64_t tokens) const;
  void attention(int64_t layer, int64_t n);
  // Gated MLP down(act(gate in + gate_bias) * (up in + up_bias)) + down_bias on `in`
  // (rows, d_model) -> `out` (rows, d_model); biases may be null. Uses gate_ and up_ as scratch.
  void mlp(const Matrix& gate, const Matrix& up, const Matrix& down, const float* gate_bias,
           const float* up_bias, const float* down_bias, int64_t ffn_dim, const float* in,
           int64_t rows, float* out);
  // Mixture of experts of layer `layer` on h_ (n, d_model) -> q_ (n, d_model).
  void moe(int64_t layer, int64_t n);

  const Model& m_;
  ThreadPool& pool_;
  Isa isa_;
  ActPrecision act_precision_;
  int64_t max_ctx_, pos_ = 0;
  // Per layer: (n_kv_head, max_ctx, head_dim) keys and values (head-major, so attention streams
  // each head's positions contiguously), on 2 MiB pages.
  std::vector<HugeBuffer> k_cache_, v_cache_;
  std::vector<float> x_, h_, q_, k_, v_, att_, gate_, up_, logits_tmp_;
  // MoE scratch: router logits (n, n_expert), the rows routed to one expert gathered (rows,
  // d_model), that expert's output (rows, d_model), and per expert the (token, weight) pairs.
  std::vector<float> router_, moe_in_, moe_out_;
  std::vector<std::vector<std::pair<int64_t, float>>> routed_;
  // Per layer: the first layer with the same RoPE frequencies, whose rope_cs_ entry it reads;
  // rope_cs_[g] = (n, head_dim) cos / sin pairs of the current forward's positions.
  std::vector<int64_t> rope_group_;
  std::vector<std::vector<float>> rope_cs_;
  Acts acts_;
  Acts group_acts_[2];  // the inputs of a group's matrices in other formats than its first
};

}  // namespace slmc::runtime
