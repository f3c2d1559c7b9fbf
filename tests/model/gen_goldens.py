#!/usr/bin/python3
"""Golden logits for slmc's decoder: small random checkpoints in the exact Hugging Face layout.

Run with Debian's python3 (python3-torch, numpy, h5py):

    /usr/bin/python3 tests/model/gen_goldens.py --out DIR

For every case it writes DIR/<case>/ with
  config.json                      keys as the family's published config.json has them
  model.safetensors                (or model-0000k-of-0000n.safetensors + model.safetensors.index.json)
  input_ids.i64                    (batch, seq) int64, little-endian, row-major
  logits.f32                       (batch, seq, vocab) float32, little-endian, row-major
  golden.json                      {"batch", "seq", "vocab", ...} plus per-case diagnostics
  tokens.h5                        int32 dataset "tokens": 4096 ids in [3, vocab), each 256-token
                                   chunk starting with 1 (BOS); calibration / eval data for the
                                   quantization tests (its own generator: the other files of the
                                   older cases are byte-for-byte what they were before it existed)

The logits come from the reference forwards below, written independently of slmc from the public
modeling code, in float32 like an fp32 HF run.

Llama / Mistral / Qwen2 (transformers modeling_llama.py / modeling_mistral.py / modeling_qwen2.py,
modeling_rope_utils._compute_llama3_parameters):
  * RMSNorm in fp32: weight * (x * rsqrt(mean(x^2) + eps))
  * RoPE in the rotate-half convention: inv_freq = 1 / theta^(arange(0, head_dim, 2) / head_dim),
    emb = cat(freqs, freqs), x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1)
  * GQA by repeat_kv (kv head j serves query heads j*n_rep .. j*n_rep + n_rep - 1)
  * scores * head_dim^-0.5 plus an additive mask of finfo(float32).min, softmax in fp32
  * causal mask kv <= q; Mistral sliding window additionally masks kv <= q - sliding_window
    (masking_utils.sliding_window_overlay: a key is visible iff q - kv < sliding_window)
  * Qwen2: biases on q/k/v projections, none on o_proj
  * gated MLP down(silu(gate(x)) * up(x)); tied embeddings reuse embed_tokens as lm_head

Phi-3 (transformers models/phi3/modeling_phi3.py; keys of Phi-3-mini-4k-instruct's config.json):
  * Llama-shaped decoder with self_attn.qkv_proj (rows: q heads, then k heads, then v heads;
    Phi3Attention slices qkv[..., :H*hd], the next Hkv*hd, the rest) and mlp.gate_up_proj
    (Phi3MLP: gate, up = y.chunk(2, -1); down_proj(up * silu(gate))); untied lm_head
  * Phi3Model masks with create_sliding_window_causal_mask whenever config.sliding_window is set
  * checked: equals forward_llama (Mistral semantics) on the split tensors

Gemma 3 text (transformers models/gemma3/modeling_gemma3.py, configuration_gemma3.py,
modeling_rope_utils._compute_linear_scaling_rope_parameters):
  * Gemma3TextScaledWordEmbedding: embed * embed_scale.to(weight.dtype), embed_scale a float32
    tensor of hidden_size**0.5; the tied lm_head uses the unscaled embedding weight
  * Gemma3RMSNorm: _norm(x.float()) * (1.0 + weight.float()) (stored weights are deviations)
  * per layer: input_layernorm -> attention -> post_attention_layernorm (on the attention output)
    -> + residual; pre_feedforward_layernorm -> MLP -> post_feedforward_layernorm -> + residual
  * q_norm / k_norm (Gemma3RMSNorm over head_dim) on q and k after projection and reshape,
    before RoPE; scores scaled by query_pre_attn_scalar**-0.5
  * MLP down(gelu_tanh(gate(x)) * up(x)) (hidden_activation gelu_pytorch_tanh)
  * layer_types (layer i slides iff (i + 1) % sliding_window_pattern != 0, as Gemma3TextConfig
    derives it; the config carries both keys); sliding layers mask with sliding_window and use
    default RoPE at rope_local_base_freq; full layers use rope_theta with rope_scaling
    (linear: inv_freq / factor); no softcapping, no attention bias

OpenELM (Apple's modeling_openelm.py / configuration_openelm.py as shipped with apple/OpenELM-*;
keys of OpenELM-1_1B's config.json):
  * transformer.token_embeddings, per-layer attn_norm / attn.qkv_proj / attn.q_norm / attn.k_norm
    / attn.out_proj / ffn_norm / ffn.proj_1 / ffn.proj_2, transformer.norm; with
    share_input_output_layers neither lm_head nor transformer.classifier exists and the logits are
    F.linear(h, token_embeddings.weight)
  * OpenELMConfig.__post_init__ recomputes the head lists: query dim per layer
    make_divisible(model_dim * m, head_dim * num_gqa_groups) over round(linspace(qkv_multipliers),
    2), kv heads = query heads // num_gqa_groups (so kv heads follow the query heads; the written
    lists agree with that, checked against OpenELM-1_1B's published lists); ffn width
    int(make_divisible(mult * model_dim, ffn_dim_divisor))
  * qkv reshaped to (B, T, nq + 2 nkv, hd), split [nq, nkv, nkv] on heads; q_norm / k_norm
    (OpenELMRMSNorm, eps 1e-6 like every OpenELM norm) before RoPE (rotate-half, inv_freq from
    rope_freq_constant over head_dim); GQA by repeat_interleave (same mapping as repeat_kv);
    scaled_dot_product_attention with its default head_dim^-0.5 scale
  * GLU FFN: y1, y2 = proj_1(x).chunk(2, -1); proj_2(silu(y1) * y2) (activation_fn_name swish)

Mixtral (transformers models/mixtral/modeling_mixtral.py; keys of Mixtral-8x7B-v0.1's config.json):
  * Llama attention; block_sparse_moe.gate (router) and experts.{j}.w1 (gate) / w2 (down) /
    w3 (up); routing softmax in float over the router logits, topk(num_experts_per_tok), the k
    weights divided by their sum, out = sum_k w_k * w2(silu(w1 x) * w3 x)
  * checked: with identical experts it equals forward_llama with that MLP; golden.json records the
    tokens each expert receives per layer for the golden input and for tokens.h5 (as sequences of
    256), and the smallest top-k router-logit gap (no near ties)
  * mixtral_dead_expert: router rows [a, -a, b, -b, 0], so for any input one of experts 0/1 and one
    of 2/3 have a logit >= 0 = expert 4's and top-2 never selects expert 4 (a calibration pass
    sees zero tokens for it, while its weights are in the checkpoint)

Weights stored as BF16/F16 are rounded first and the forward uses the rounded values upcast to
fp32, as a loader that widens to fp32 must.

The script checks its own output (finite, non-degenerate logits; fp32 rounding noise against a
float64 run <= 2e-5; every feature a case exists for changes the logits by >= 0.1: sliding
windows, llama3 and linear RoPE scaling, biases, fused-tensor order, Gemma's norms, q/k norms,
embedding scale and attention scalar, OpenELM's q/k norms and GLU order, MoE renormalisation;
the dead expert of mixtral_dead_expert receives no token while every other expert receives some;
stored weights and tokens.h5 read back bit-exactly) and exits non-zero if any check fails, so a
broken generator cannot produce goldens that pass vacuously.
"""

import argparse
import json
import math
import os
import struct
import sys

import h5py
import numpy as np
import torch

BATCH = 2
SEQ = 24
SEED = 1234

# tokens.h5: calibration / evaluation ids for the quantization tests, in chunks that each start
# with BOS (id 1).
N_CALIB = 4096
CALIB_CHUNK = 256

# ----------------------------------------------------------------------------------------------
# safetensors, written by hand per the published layout: u64 little-endian header length N, N
# bytes of JSON header ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}),
# then the raw little-endian tensor data; offsets are relative to the first byte after the header.

_ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: reinterpret the 16-bit patterns.
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    if t.dtype == torch.float16:
        return t.numpy().astype("<f2").tobytes()
    if t.dtype == torch.float32:
        return t.numpy().astype("<f4").tobytes()
    raise ValueError(f"unsupported dtype {t.dtype}")


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch tensor (F32/F16/BF16). Data laid out in sorted name order."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        data = _tensor_bytes(t)
        header[name] = {
            "dtype": _ST_DTYPE[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata if metadata is not None else {"format": "pt"}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # pad so the data section is 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    return offset


def read_safetensors(path):
    """Independent reader used to verify what was written (bit-exact round trip)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        chunk = data[b:end]
        if e["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(chunk, dtype="<f4").copy())
        elif e["dtype"] == "F16":
            t = torch.from_numpy(np.frombuffer(chunk, dtype="<f2").copy())
        elif e["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(chunk, dtype="<i2").copy()).view(torch.bfloat16)
        else:
            raise ValueError(e["dtype"])
        out[name] = t.reshape(e["shape"])
    return out


# ----------------------------------------------------------------------------------------------
# Configs, as transformers' PretrainedConfig.to_json_string writes them (sorted keys).


def llama_config(vocab, hidden, inter, layers, heads, kv_heads, *, head_dim=None, tied=False,
                 rope_theta=10000.0, rope_scaling=None, max_pos=2048, eps=1e-5, dtype="float32"):
    c = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": max_pos,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": eps,
        "rope_scaling": rope_scaling,
        "rope_theta": rope_theta,
        "tie_word_embeddings": tied,
        "torch_dtype": dtype,
        "transformers_version": "4.46.3",
        "use_cache": True,
        "vocab_size": vocab,
    }
    if head_dim is not None:
        c["head_dim"] = head_dim
    return c


def mistral_config(vocab, hidden, inter, layers, heads, kv_heads, *, sliding_window, head_dim=None,
                   rope_theta=10000.0, max_pos=32768, eps=1e-5):
    c = {
        "architectures": ["MistralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": max_pos,
        "model_type": "mistral",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": eps,
        "rope_theta": rope_theta,
        "sliding_window": sliding_window,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
        "use_cache": True,
        "vocab_size": vocab,
    }
    if head_dim is not None:
        c["head_dim"] = head_dim
    return c


def qwen2_config(vocab, hidden, inter, layers, heads, kv_heads, *, tied=True):
    # Shaped like Qwen2.5-0.5B's config.json: tied embeddings, theta 1e6, eps 1e-6, and a
    # sliding_window value that is NOT used because use_sliding_window is false. bos = eos as in
    # Qwen (<|endoftext|>, near the end of the vocab), scaled into this tiny vocab.
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": vocab - 2,
        "eos_token_id": vocab - 2,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": 32768,
        "max_window_layers": layers,
        "model_type": "qwen2",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab,
    }


def cfg_head_dim(cfg):
    # transformers: getattr(config, "head_dim", None) or hidden_size // num_attention_heads
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def cfg_sliding_window(cfg):
    if cfg["model_type"] == "mistral":
        return cfg.get("sliding_window")
    if cfg["model_type"] == "qwen2":
        # Qwen2Config: sliding_window only if use_sliding_window, and only on layers >= max_window_layers.
        return cfg["sliding_window"] if cfg.get("use_sliding_window") else None
    return None


def phi3_config(vocab, hidden, inter, layers, heads, kv_heads, *, sliding_window):
    # Keys of microsoft/Phi-3-mini-4k-instruct's config.json, minus its auto_map (it only points at
    # the remote code that transformers' native Phi3 replaced) and with no partial_rotary_factor
    # (rotary over the whole head). Phi-3 has eos = pad = 32000, the first added token of its 32064
    # vocab; scaled: vocab - 16.
    return {
        "architectures": ["Phi3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "embd_pdrop": 0.0,
        "eos_token_id": vocab - 16,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": 4096,
        "model_type": "phi3",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "original_max_position_embeddings": 4096,
        "pad_token_id": vocab - 16,
        "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "sliding_window": sliding_window,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
        "use_cache": True,
        "vocab_size": vocab,
    }


def gemma3_text_config(vocab, hidden, inter, layers, heads, kv_heads, head_dim, *,
                       query_pre_attn_scalar, sliding_window, sliding_window_pattern):
    # Keys of a Gemma3ForCausalLM (gemma3_text) config.json: the flat RoPE keys of transformers 4.5x
    # (rope_theta + rope_scaling for global layers, rope_local_base_freq for sliding ones), the
    # linear factor-8 rope_scaling Gemma-3-4B ships, bos 2 / eos 1 / pad 0. Both the old
    # sliding_window_pattern and the newer layer_types, derived as Gemma3TextConfig does:
    # layer i slides iff (i + 1) % pattern != 0.
    layer_types = [
        "sliding_attention" if (i + 1) % sliding_window_pattern else "full_attention"
        for i in range(layers)
    ]
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "attn_logit_softcapping": None,
        "bos_token_id": 2,
        "cache_implementation": "hybrid",
        "eos_token_id": 1,
        "final_logit_softcapping": None,
        "head_dim": head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "layer_types": layer_types,
        "max_position_embeddings": 131072,
        "model_type": "gemma3_text",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "pad_token_id": 0,
        "query_pre_attn_scalar": query_pre_attn_scalar,
        "rms_norm_eps": 1e-06,
        "rope_local_base_freq": 10000.0,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "rope_theta": 1000000.0,
        "sliding_window": sliding_window,
        "sliding_window_pattern": sliding_window_pattern,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.56.0",
        "use_bidirectional_attention": False,
        "use_cache": True,
        "vocab_size": vocab,
    }


def openelm_make_divisible(v, divisor=8, min_value=None):
    """configuration_openelm.make_divisible: round to the nearest multiple of divisor (at least
    min_value = divisor), then add one divisor if that lost more than 10%."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def openelm_derived(cfg):
    """What OpenELMConfig.__post_init__ and OpenELMFeedForwardNetwork derive from the config, which
    the HF loader recomputes on load (the stored num_query_heads / num_kv_heads are overwritten):
      qkv_multipliers [a, b] -> round(linspace(a, b, layers), 2), query dim per layer
      int(make_divisible(model_dim * m, divisor=head_dim * num_gqa_groups)), heads = dim / head_dim,
      kv heads = heads // num_gqa_groups; ffn width int(make_divisible(mult * model_dim,
      divisor=ffn_dim_divisor)), ffn_multipliers used as given when it lists every layer."""
    layers, d, hd, groups = (cfg["num_transformer_layers"], cfg["model_dim"], cfg["head_dim"],
                             cfg["num_gqa_groups"])
    q0, q1 = cfg["qkv_multipliers"]
    mults = [round(v, 2) for v in np.linspace(q0, q1, num=layers, dtype=float)]
    qdims = [int(openelm_make_divisible(d * m, divisor=hd * groups)) for m in mults]
    if any(q % hd for q in qdims):
        raise ValueError(f"query dims {qdims} not divisible by head_dim {hd}")
    nq = [q // hd for q in qdims]
    nkv = [n // groups for n in nq]
    fm = cfg["ffn_multipliers"]
    if len(fm) != layers:
        raise ValueError("ffn_multipliers must list every layer")
    ffn = [int(openelm_make_divisible(m * d, divisor=cfg["ffn_dim_divisor"])) for m in fm]
    return nq, nkv, ffn


def openelm_config(vocab, model_dim, head_dim, layers, *, qkv_multipliers, num_gqa_groups,
                   ffn_multipliers, ffn_dim_divisor):
    # Keys of apple/OpenELM-*'s config.json (OpenELM-1_1B: activation_fn_name swish, ffn_with_glu,
    # normalize_qk_projections, share_input_output_layers, rope_freq_constant 10000,
    # rope_max_length 4096 = 2 * max_context_length, the per-layer lists written out).
    c = {
        "activation_fn_name": "swish",
        "architectures": ["OpenELMForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_openelm.OpenELMConfig",
            "AutoModelForCausalLM": "modeling_openelm.OpenELMForCausalLM",
        },
        "bos_token_id": 1,
        "eos_token_id": 2,
        "ffn_dim_divisor": ffn_dim_divisor,
        "ffn_multipliers": list(ffn_multipliers),
        "ffn_with_glu": True,
        "head_dim": head_dim,
        "initializer_range": 0.02,
        "max_context_length": 2048,
        "model_dim": model_dim,
        "model_type": "openelm",
        "normalization_layer_name": "rms_norm",
        "normalize_qk_projections": True,
        "num_gqa_groups": num_gqa_groups,
        "num_transformer_layers": layers,
        "qkv_multipliers": list(qkv_multipliers),
        "rope_freq_constant": 10000,
        "rope_max_length": 4096,
        "share_input_output_layers": True,
        "torch_dtype": "float32",
        "transformers_version": "4.39.3",
        "use_cache": True,
        "vocab_size": vocab,
    }
    c["num_query_heads"], c["num_kv_heads"], _ = openelm_derived(c)
    return c


def mixtral_config(vocab, hidden, inter, layers, heads, kv_heads, *, n_expert, top_k):
    # Keys of mistralai/Mixtral-8x7B-v0.1's config.json (sliding_window null, theta 1e6).
    return {
        "architectures": ["MixtralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": 32768,
        "model_type": "mixtral",
        "num_attention_heads": heads,
        "num_experts_per_tok": top_k,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "num_local_experts": n_expert,
        "output_router_logits": False,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.02,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
        "use_cache": True,
        "vocab_size": vocab,
    }


def cfg_tied(cfg):
    if cfg["model_type"] == "openelm":
        return cfg["share_input_output_layers"]
    return cfg["tie_word_embeddings"]


# ----------------------------------------------------------------------------------------------
# Random weights with HF names.


def make_weights_llama(cfg, gen):
    hidden = cfg["hidden_size"]
    inter = cfg["intermediate_size"]
    vocab = cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"]
    hd = cfg_head_dim(cfg)
    qkv_bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)

    def normal(*shape, std):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * std

    def norm_w(n):
        return 1.0 + normal(n, std=0.1)

    def lin(out_f, in_f):
        # ~1.3 / sqrt(in): activations stay O(1) over the layers, attention is neither uniform nor
        # one-hot, and logits spread over a few units (checked below).
        return normal(out_f, in_f, std=1.3 / math.sqrt(in_f))

    # Embedding rows of norm ~2.8 (std 0.5 at hidden 32): as a tied head this keeps logits within
    # a few units at every width, so fp32 rounding noise stays far below the test tolerance.
    w = {"model.embed_tokens.weight": normal(vocab, hidden, std=2.8 / math.sqrt(hidden))}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm_w(hidden)
        w[p + "self_attn.q_proj.weight"] = lin(heads * hd, hidden)
        w[p + "self_attn.k_proj.weight"] = lin(kv * hd, hidden)
        w[p + "self_attn.v_proj.weight"] = lin(kv * hd, hidden)
        w[p + "self_attn.o_proj.weight"] = lin(hidden, heads * hd)
        if qkv_bias:
            w[p + "self_attn.q_proj.bias"] = normal(heads * hd, std=0.3)
            w[p + "self_attn.k_proj.bias"] = normal(kv * hd, std=0.3)
            w[p + "self_attn.v_proj.bias"] = normal(kv * hd, std=0.3)
        w[p + "post_attention_layernorm.weight"] = norm_w(hidden)
        w[p + "mlp.gate_proj.weight"] = lin(inter, hidden)
        w[p + "mlp.up_proj.weight"] = lin(inter, hidden)
        w[p + "mlp.down_proj.weight"] = lin(hidden, inter)
    w["model.norm.weight"] = norm_w(hidden)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = lin(vocab, hidden)
    return w


# The families below draw with the same recipes as make_weights_llama (module order, HF names).


def _normal(gen, *shape, std):
    return torch.randn(*shape, generator=gen, dtype=torch.float32) * std


def _norm_w(gen, n):
    return 1.0 + _normal(gen, n, std=0.1)


def _lin(gen, out_f, in_f):
    return _normal(gen, out_f, in_f, std=1.3 / math.sqrt(in_f))


def make_weights_phi3(cfg, gen):
    """modeling_phi3: fused qkv_proj rows [q heads | k heads | v heads], fused gate_up_proj rows
    [gate | up], untied lm_head."""
    hidden, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg_head_dim(cfg)
    w = {"model.embed_tokens.weight": _normal(gen, vocab, hidden, std=2.8 / math.sqrt(hidden))}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.o_proj.weight"] = _lin(gen, hidden, heads * hd)
        w[p + "self_attn.qkv_proj.weight"] = _lin(gen, heads * hd + 2 * kv * hd, hidden)
        w[p + "mlp.gate_up_proj.weight"] = _lin(gen, 2 * inter, hidden)
        w[p + "mlp.down_proj.weight"] = _lin(gen, hidden, inter)
        w[p + "input_layernorm.weight"] = _norm_w(gen, hidden)
        w[p + "post_attention_layernorm.weight"] = _norm_w(gen, hidden)
    w["model.norm.weight"] = _norm_w(gen, hidden)
    w["lm_head.weight"] = _lin(gen, vocab, hidden)
    return w


def make_weights_gemma3(cfg, gen):
    """modeling_gemma3: every Gemma3RMSNorm weight (4 per layer, q_norm/k_norm over head_dim, the
    final norm) is stored as a deviation around 0 (the norm multiplies by 1 + w); tied head."""
    hidden, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]

    def dev(n):
        return _normal(gen, n, std=0.1)

    # The embedding is multiplied by sqrt(hidden) on input and reused as the head: rows of norm
    # ~1.8 (std 1.8 / sqrt(hidden)) put the scaled embedding at RMS ~1.8 in the residual stream
    # and keep the logits within about +-12.
    w = {"model.embed_tokens.weight": _normal(gen, vocab, hidden, std=1.8 / math.sqrt(hidden))}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = _lin(gen, heads * hd, hidden)
        w[p + "self_attn.k_proj.weight"] = _lin(gen, kv * hd, hidden)
        w[p + "self_attn.v_proj.weight"] = _lin(gen, kv * hd, hidden)
        w[p + "self_attn.o_proj.weight"] = _lin(gen, hidden, heads * hd)
        w[p + "self_attn.q_norm.weight"] = dev(hd)
        w[p + "self_attn.k_norm.weight"] = dev(hd)
        w[p + "mlp.gate_proj.weight"] = _lin(gen, inter, hidden)
        w[p + "mlp.up_proj.weight"] = _lin(gen, inter, hidden)
        w[p + "mlp.down_proj.weight"] = _lin(gen, hidden, inter)
        w[p + "input_layernorm.weight"] = dev(hidden)
        w[p + "post_attention_layernorm.weight"] = dev(hidden)
        w[p + "pre_feedforward_layernorm.weight"] = dev(hidden)
        w[p + "post_feedforward_layernorm.weight"] = dev(hidden)
    w["model.norm.weight"] = dev(hidden)
    return w


def make_weights_openelm(cfg, gen):
    """modeling_openelm: per-layer qkv_proj ((nq + 2 nkv) * head_dim, model_dim) with rows
    [q heads | k heads | v heads], q_norm/k_norm over head_dim, out_proj, GLU proj_1 rows
    [act half | multiplier half], proj_2; share_input_output_layers: neither lm_head nor
    transformer.classifier exists."""
    d, hd, vocab = cfg["model_dim"], cfg["head_dim"], cfg["vocab_size"]
    nq, nkv, ffn = openelm_derived(cfg)
    w = {"transformer.token_embeddings.weight": _normal(gen, vocab, d, std=2.8 / math.sqrt(d))}
    for i in range(cfg["num_transformer_layers"]):
        p = f"transformer.layers.{i}."
        w[p + "attn.qkv_proj.weight"] = _lin(gen, (nq[i] + 2 * nkv[i]) * hd, d)
        w[p + "attn.q_norm.weight"] = _norm_w(gen, hd)
        w[p + "attn.k_norm.weight"] = _norm_w(gen, hd)
        w[p + "attn.out_proj.weight"] = _lin(gen, d, nq[i] * hd)
        w[p + "ffn.proj_1.weight"] = _lin(gen, 2 * ffn[i], d)
        w[p + "ffn.proj_2.weight"] = _lin(gen, d, ffn[i])
        w[p + "ffn_norm.weight"] = _norm_w(gen, d)
        w[p + "attn_norm.weight"] = _norm_w(gen, d)
    w["transformer.norm.weight"] = _norm_w(gen, d)
    return w


def make_weights_mixtral(cfg, gen, dead_expert=False):
    """modeling_mixtral: Llama attention; block_sparse_moe.gate (n_expert, hidden) router and
    experts.{j}.w1 (gate), w2 (down), w3 (up). dead_expert: router rows [a, -a, b, -b, 0] so that
    for any input one of experts 0/1 and one of 2/3 have logit >= 0 = expert 4's: with top-2,
    expert 4 is never selected."""
    hidden, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg_head_dim(cfg)
    n_exp = cfg["num_local_experts"]
    w = {"model.embed_tokens.weight": _normal(gen, vocab, hidden, std=2.8 / math.sqrt(hidden))}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = _lin(gen, heads * hd, hidden)
        w[p + "self_attn.k_proj.weight"] = _lin(gen, kv * hd, hidden)
        w[p + "self_attn.v_proj.weight"] = _lin(gen, kv * hd, hidden)
        w[p + "self_attn.o_proj.weight"] = _lin(gen, hidden, heads * hd)
        if dead_expert:
            if n_exp != 5:
                raise ValueError("dead_expert layout needs 5 experts")
            a = _normal(gen, hidden, std=2.0 / math.sqrt(hidden))
            b = _normal(gen, hidden, std=2.0 / math.sqrt(hidden))
            router = torch.stack([a, -a, b, -b, torch.zeros(hidden)])
        else:
            router = _normal(gen, n_exp, hidden, std=2.0 / math.sqrt(hidden))
        w[p + "block_sparse_moe.gate.weight"] = router
        for j in range(n_exp):
            e = f"{p}block_sparse_moe.experts.{j}."
            w[e + "w1.weight"] = _lin(gen, inter, hidden)
            w[e + "w2.weight"] = _lin(gen, hidden, inter)
            w[e + "w3.weight"] = _lin(gen, inter, hidden)
        w[p + "input_layernorm.weight"] = _norm_w(gen, hidden)
        w[p + "post_attention_layernorm.weight"] = _norm_w(gen, hidden)
    w["model.norm.weight"] = _norm_w(gen, hidden)
    w["lm_head.weight"] = _lin(gen, vocab, hidden)
    return w


def make_weights(cfg, gen, spec=None):
    mt = cfg["model_type"]
    if mt in ("llama", "mistral", "qwen2"):
        return make_weights_llama(cfg, gen)
    if mt == "phi3":
        return make_weights_phi3(cfg, gen)
    if mt == "gemma3_text":
        return make_weights_gemma3(cfg, gen)
    if mt == "openelm":
        return make_weights_openelm(cfg, gen)
    if mt == "mixtral":
        return make_weights_mixtral(cfg, gen, dead_expert=bool(spec and spec.get("dead_expert")))
    raise ValueError(f"no weights for model_type {mt}")


# ----------------------------------------------------------------------------------------------
# Reference forward (float32), following the transformers modeling code.


def rope_inv_freq(cfg):
    hd = cfg_head_dim(cfg)
    base = cfg["rope_theta"]
    # _compute_default_rope_parameters
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    rs = cfg.get("rope_scaling")
    if rs is None:
        return inv_freq
    rope_type = rs.get("rope_type", rs.get("type"))
    if rope_type != "llama3":
        raise ValueError(f"reference forward has no rope_type {rope_type}")
    # _compute_llama3_parameters
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rms_norm(x, weight, eps, dtype=torch.float32):
    xf = x.to(dtype)  # HF upcasts to float32 (float64 only for the noise estimate)
    variance = xf.pow(2).mean(-1, keepdim=True)
    return weight * (xf * torch.rsqrt(variance + eps))


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(h, n_rep):
    b, nkv, slen, hd = h.shape
    if n_rep == 1:
        return h
    return h[:, :, None, :, :].expand(b, nkv, n_rep, slen, hd).reshape(b, nkv * n_rep, slen, hd)


def linear(x, w, b=None):
    return torch.nn.functional.linear(x, w, b)


def forward_llama(cfg, w, input_ids, sliding_window="config", dtype=torch.float32):
    """input_ids (B, T) int64 -> logits (B, T, V). `w`: tensors of `dtype` with HF names.
    dtype float32 is the golden; float64 only estimates the fp32 rounding noise."""
    B, T = input_ids.shape
    heads = cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"]
    hd = cfg_head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    window = cfg_sliding_window(cfg) if sliding_window == "config" else sliding_window

    # Rotary embedding (LlamaRotaryEmbedding.forward): float32 outer product of positions.
    inv_freq = rope_inv_freq(cfg)
    position_ids = torch.arange(T, dtype=torch.int64)[None, :].expand(B, T)
    inv_freq_expanded = inv_freq[None, :, None].float().expand(B, -1, 1)
    freqs = (inv_freq_expanded @ position_ids[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = emb.cos()[:, None, :, :].to(dtype)  # (B, 1, T, hd)
    sin = emb.sin()[:, None, :, :].to(dtype)

    # Additive mask (B, 1, T, T): 0 where attended, finfo.min where masked.
    q_idx = torch.arange(T)[:, None]
    kv_idx = torch.arange(T)[None, :]
    masked = kv_idx > q_idx
    if window is not None:
        masked = masked | (kv_idx <= q_idx - window)
    min_value = torch.finfo(dtype).min
    mask = torch.zeros(T, T, dtype=dtype).masked_fill(masked, min_value)[None, None]

    h = w["model.embed_tokens.weight"][input_ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        residual = h
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps, dtype)
        q = linear(x, w[p + "self_attn.q_proj.weight"], w.get(p + "self_attn.q_proj.bias"))
        k = linear(x, w[p + "self_attn.k_proj.weight"], w.get(p + "self_attn.k_proj.bias"))
        v = linear(x, w[p + "self_attn.v_proj.weight"], w.get(p + "self_attn.v_proj.bias"))
        q = q.view(B, T, -1, hd).transpose(1, 2)
        k = k.view(B, T, -1, hd).transpose(1, 2)
        v = v.view(B, T, -1, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, heads // kv)
        v = repeat_kv(v, heads // kv)
        scores = torch.matmul(q, k.transpose(2, 3)) * (hd ** -0.5) + mask
        probs = torch.nn.functional.softmax(scores, dim=-1, dtype=dtype)
        attn = torch.matmul(probs, v).transpose(1, 2).contiguous().reshape(B, T, -1)
        h = residual + linear(attn, w[p + "self_attn.o_proj.weight"])
        residual = h
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps, dtype)
        mlp = linear(
            torch.nn.functional.silu(linear(x, w[p + "mlp.gate_proj.weight"]))
            * linear(x, w[p + "mlp.up_proj.weight"]),
            w[p + "mlp.down_proj.weight"],
        )
        h = residual + mlp
    h = rms_norm(h, w["model.norm.weight"], eps, dtype)
    # LlamaForCausalLM.lm_head; with tie_word_embeddings it is embed_tokens' weight.
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return linear(h, head)


# Shared pieces of the newer families' forwards (the same operations forward_llama spells out).


def default_inv_freq(base, dim):
    # _compute_default_rope_parameters (OpenELMRotaryEmbedding computes the same values with a
    # float32 arange: 1 / freq_constant^(arange(0, head_dim, 2) / head_dim)).
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def rope_cos_sin(inv_freq, B, T, dtype):
    # *RotaryEmbedding.forward: float32 outer product of positions and inv_freq, emb = cat(f, f).
    position_ids = torch.arange(T, dtype=torch.int64)[None, :].expand(B, T)
    inv_freq_expanded = inv_freq[None, :, None].float().expand(B, -1, 1)
    freqs = (inv_freq_expanded @ position_ids[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos()[:, None, :, :].to(dtype), emb.sin()[:, None, :, :].to(dtype)


def apply_rope(x, cos, sin):
    return x * cos + rotate_half(x) * sin


def additive_mask(T, window, dtype):
    """(1, 1, T, T): 0 where key kv is visible to query q, finfo.min elsewhere. Causal kv <= q;
    masking_utils.sliding_window_overlay additionally requires q - kv < window."""
    q_idx = torch.arange(T)[:, None]
    kv_idx = torch.arange(T)[None, :]
    masked = kv_idx > q_idx
    if window is not None:
        masked = masked | (kv_idx <= q_idx - window)
    return torch.zeros(T, T, dtype=dtype).masked_fill(masked, torch.finfo(dtype).min)[None, None]


def attend(q, k, v, n_rep, scaling, mask, dtype):
    """eager_attention_forward: q (B, H, T, hd), k/v (B, Hkv, T, hd) -> (B, T, H * hd)."""
    B, _, T, _ = q.shape
    k = repeat_kv(k, n_rep)
    v = repeat_kv(v, n_rep)
    scores = torch.matmul(q, k.transpose(2, 3)) * scaling + mask
    probs = torch.nn.functional.softmax(scores, dim=-1, dtype=dtype)
    return torch.matmul(probs, v).transpose(1, 2).contiguous().reshape(B, T, -1)


def forward_phi3(cfg, w, input_ids, dtype=torch.float32, sliding_window="config",
                 swap_gate_up=False):
    """modeling_phi3: Llama-shaped decoder with fused projections. qkv = qkv_proj(x); q is
    qkv[..., :H*hd], k the next Hkv*hd, v the rest. gate, up = gate_up_proj(x).chunk(2, -1);
    mlp = down_proj(up * silu(gate)). Phi3Model masks with create_sliding_window_causal_mask when
    config.sliding_window is not None."""
    B, T = input_ids.shape
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg_head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    window = cfg["sliding_window"] if sliding_window == "config" else sliding_window
    if cfg.get("rope_scaling") is not None or cfg.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError("phi3 reference forward has default full-head RoPE only")
    cos, sin = rope_cos_sin(default_inv_freq(cfg["rope_theta"], hd), B, T, dtype)
    mask = additive_mask(T, window, dtype)
    h = w["model.embed_tokens.weight"][input_ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps, dtype)
        qkv = linear(x, w[p + "self_attn.qkv_proj.weight"])
        qpos = heads * hd
        q = qkv[..., :qpos].reshape(B, T, -1, hd).transpose(1, 2)
        k = qkv[..., qpos : qpos + kv * hd].reshape(B, T, -1, hd).transpose(1, 2)
        v = qkv[..., qpos + kv * hd :].reshape(B, T, -1, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        attn = attend(q, k, v, heads // kv, hd ** -0.5, mask, dtype)
        h = h + linear(attn, w[p + "self_attn.o_proj.weight"])
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps, dtype)
        gate, up = linear(x, w[p + "mlp.gate_up_proj.weight"]).chunk(2, dim=-1)
        if swap_gate_up:
            gate, up = up, gate
        h = h + linear(up * torch.nn.functional.silu(gate), w[p + "mlp.down_proj.weight"])
    h = rms_norm(h, w["model.norm.weight"], eps, dtype)
    return linear(h, w["lm_head.weight"])


GEMMA3_ABLATIONS = ("window", "qk_norm", "post_norms", "embed_scale", "rope_scaling",
                    "query_pre_attn_scalar", "one_plus")


def forward_gemma3(cfg, w, input_ids, dtype=torch.float32, ablate=()):
    """modeling_gemma3 (Gemma3ForCausalLM, text only). `ablate` switches single features off for
    the effect checks (names in GEMMA3_ABLATIONS)."""
    for a in ablate:
        if a not in GEMMA3_ABLATIONS:
            raise ValueError(a)
    B, T = input_ids.shape
    hidden, hd = cfg["hidden_size"], cfg["head_dim"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps = cfg["rms_norm_eps"]
    if cfg.get("attn_logit_softcapping") is not None or cfg.get("final_logit_softcapping") is not None:
        raise ValueError("gemma3 reference forward has no softcapping")
    if cfg.get("attention_bias") or cfg.get("use_bidirectional_attention"):
        raise ValueError("gemma3 reference forward: no attention bias, causal only")

    def gnorm(x, weight):
        # Gemma3RMSNorm: _norm(x.float()) * (1.0 + weight.float()), _norm = x * rsqrt(mean(x^2)+eps)
        xf = x.to(dtype)
        xn = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        return xn * (weight if "one_plus" in ablate else (1.0 + weight))

    # Gemma3Attention.scaling = query_pre_attn_scalar ** -0.5 (not head_dim ** -0.5).
    scalar = hd if "query_pre_attn_scalar" in ablate else cfg["query_pre_attn_scalar"]
    scaling = scalar ** -0.5
    # Global (full_attention) layers: rope_theta with rope_scaling (linear: inv_freq / factor);
    # sliding layers: rope_local_base_freq with default RoPE (rotary_emb_local in 4.5x, the
    # per-layer-type rope_parameters later).
    inv_global = default_inv_freq(cfg["rope_theta"], hd)
    rs = cfg.get("rope_scaling")
    if rs is not None and "rope_scaling" not in ablate:
        if rs.get("rope_type", rs.get("type")) != "linear":
            raise ValueError(f"gemma3 reference forward has no rope_type {rs}")
        inv_global = inv_global / rs["factor"]
    inv_local = default_inv_freq(cfg["rope_local_base_freq"], hd)
    rope = {"full_attention": rope_cos_sin(inv_global, B, T, dtype),
            "sliding_attention": rope_cos_sin(inv_local, B, T, dtype)}
    window = None if "window" in ablate else cfg["sliding_window"]
    masks = {"full_attention": additive_mask(T, None, dtype),
             "sliding_attention": additive_mask(T, window, dtype)}

    # Gemma3TextScaledWordEmbedding: embed * embed_scale.to(weight.dtype), embed_scale a float32
    # tensor of hidden_size ** 0.5.
    embed = w["model.embed_tokens.weight"]
    embed_scale = torch.tensor(hidden ** 0.5, dtype=torch.float32).to(dtype)
    h = embed[input_ids]
    if "embed_scale" not in ablate:
        h = h * embed_scale
    for i, layer_type in enumerate(cfg["layer_types"]):
        p = f"model.layers.{i}."
        residual = h
        x = gnorm(h, w[p + "input_layernorm.weight"])
        q = linear(x, w[p + "self_attn.q_proj.weight"]).view(B, T, -1, hd).transpose(1, 2)
        k = linear(x, w[p + "self_attn.k_proj.weight"]).view(B, T, -1, hd).transpose(1, 2)
        v = linear(x, w[p + "self_attn.v_proj.weight"]).view(B, T, -1, hd).transpose(1, 2)
        if "qk_norm" not in ablate:  # after projection + reshape, before RoPE
            q = gnorm(q, w[p + "self_attn.q_norm.weight"])
            k = gnorm(k, w[p + "self_attn.k_norm.weight"])
        cos, sin = rope[layer_type]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        attn = attend(q, k, v, heads // kv, scaling, masks[layer_type], dtype)
        attn = linear(attn, w[p + "self_attn.o_proj.weight"])
        if "post_norms" not in ablate:
            attn = gnorm(attn, w[p + "post_attention_layernorm.weight"])
        h = residual + attn
        residual = h
        x = gnorm(h, w[p + "pre_feedforward_layernorm.weight"])
        # Gemma3MLP with hidden_activation gelu_pytorch_tanh: down(gelu_tanh(gate(x)) * up(x))
        mlp = linear(
            torch.nn.functional.gelu(linear(x, w[p + "mlp.gate_proj.weight"]), approximate="tanh")
            * linear(x, w[p + "mlp.up_proj.weight"]),
            w[p + "mlp.down_proj.weight"],
        )
        if "post_norms" not in ablate:
            mlp = gnorm(mlp, w[p + "post_feedforward_layernorm.weight"])
        h = residual + mlp
    h = gnorm(h, w["model.norm.weight"])
    return linear(h, embed)  # tied: lm_head is embed_tokens' (unscaled) weight


OPENELM_RMS_EPS = 1e-6  # OpenELMRMSNorm(num_features, eps=1e-6); no layer passes another eps


def forward_openelm(cfg, w, input_ids, dtype=torch.float32, qk_norm=True, swap_glu=False):
    """Apple's modeling_openelm.py: per layer nq_i / nkv_i heads and ffn width ffn_i;
    qkv_proj(x).reshape(B, T, nq + 2 nkv, head_dim).transpose(1, 2).split([nq, nkv, nkv], dim=1);
    q_norm / k_norm (OpenELMRMSNorm over head_dim: _norm(x.float()).type_as(x) * weight) before
    RoPE (rotate-half, inv_freq = 1 / rope_freq_constant^(arange(0, hd, 2) / hd)); GQA by
    repeat_interleave(nq // nkv, dim=1); F.scaled_dot_product_attention with the additive causal
    mask (default scale head_dim^-0.5); GLU FFN y1, y2 = proj_1(x).chunk(2, -1),
    proj_2(silu(y1) * y2) (activation_fn_name swish = SiLU); final norm; logits
    F.linear(h, token_embeddings.weight) because share_input_output_layers."""
    B, T = input_ids.shape
    hd = cfg["head_dim"]
    eps = OPENELM_RMS_EPS
    if not (cfg["ffn_with_glu"] and cfg["normalize_qk_projections"] and cfg["share_input_output_layers"]
            and cfg["activation_fn_name"] == "swish"):
        raise ValueError("openelm reference forward: glu, qk norm, shared head, swish only")
    nq, nkv, _ = openelm_derived(cfg)
    if nq != cfg["num_query_heads"] or nkv != cfg["num_kv_heads"]:
        raise ValueError("config head lists differ from what OpenELMConfig derives")
    cos, sin = rope_cos_sin(default_inv_freq(cfg["rope_freq_constant"], hd), B, T, dtype)
    mask = additive_mask(T, None, dtype)
    emb = w["transformer.token_embeddings.weight"]
    h = emb[input_ids]
    for i in range(cfg["num_transformer_layers"]):
        p = f"transformer.layers.{i}."
        x = rms_norm(h, w[p + "attn_norm.weight"], eps, dtype)
        qkv = linear(x, w[p + "attn.qkv_proj.weight"])
        qkv = qkv.reshape(B, T, nq[i] + 2 * nkv[i], hd).transpose(1, 2)
        q, k, v = qkv.split([nq[i], nkv[i], nkv[i]], dim=1)
        if qk_norm:
            q = rms_norm(q, w[p + "attn.q_norm.weight"], eps, dtype)
            k = rms_norm(k, w[p + "attn.k_norm.weight"], eps, dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        groups = nq[i] // nkv[i]
        k = k.repeat_interleave(groups, dim=1)  # the same head mapping as repeat_kv
        v = v.repeat_interleave(groups, dim=1)
        attn = attend(q, k, v, 1, hd ** -0.5, mask, dtype)
        h = h + linear(attn, w[p + "attn.out_proj.weight"])
        x = rms_norm(h, w[p + "ffn_norm.weight"], eps, dtype)
        y1, y2 = linear(x, w[p + "ffn.proj_1.weight"]).chunk(2, dim=-1)
        if swap_glu:
            y1, y2 = y2, y1
        h = h + linear(torch.nn.functional.silu(y1) * y2, w[p + "ffn.proj_2.weight"])
    h = rms_norm(h, w["transformer.norm.weight"], eps, dtype)
    return linear(h, emb)


def forward_mixtral(cfg, w, input_ids, dtype=torch.float32, renormalize=True, trace=None):
    """modeling_mixtral: Llama attention (sliding_window null here), MixtralSparseMoeBlock:
    router_logits = gate(x); softmax in float; topk(num_experts_per_tok); divide the k weights by
    their sum; out = sum_k w_k * w2(silu(w1 x) * w3 x). `trace` (a list) receives per layer the
    router logits (tokens, n_expert) and the selected experts (tokens, k)."""
    B, T = input_ids.shape
    hidden = cfg["hidden_size"]
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg_head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    n_exp, top_k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    cos, sin = rope_cos_sin(default_inv_freq(cfg["rope_theta"], hd), B, T, dtype)
    mask = additive_mask(T, cfg.get("sliding_window"), dtype)
    h = w["model.embed_tokens.weight"][input_ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps, dtype)
        q = linear(x, w[p + "self_attn.q_proj.weight"]).view(B, T, -1, hd).transpose(1, 2)
        k = linear(x, w[p + "self_attn.k_proj.weight"]).view(B, T, -1, hd).transpose(1, 2)
        v = linear(x, w[p + "self_attn.v_proj.weight"]).view(B, T, -1, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        attn = attend(q, k, v, heads // kv, hd ** -0.5, mask, dtype)
        h = h + linear(attn, w[p + "self_attn.o_proj.weight"])
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps, dtype).reshape(-1, hidden)
        router_logits = linear(x, w[p + "block_sparse_moe.gate.weight"])
        probs = torch.nn.functional.softmax(router_logits, dim=1, dtype=dtype)
        weights, selected = torch.topk(probs, top_k, dim=-1)
        if renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        for j in range(n_exp):
            tok, slot = torch.where(selected == j)
            if tok.numel() == 0:
                continue
            e = f"{p}block_sparse_moe.experts.{j}."
            xj = x[tok]
            yj = linear(torch.nn.functional.silu(linear(xj, w[e + "w1.weight"]))
                        * linear(xj, w[e + "w3.weight"]), w[e + "w2.weight"])
            out.index_add_(0, tok, yj * weights[tok, slot, None])
        if trace is not None:
            trace.append({"router_logits": router_logits, "selected": selected})
        h = h + out.reshape(B, T, hidden)
    h = rms_norm(h, w["model.norm.weight"], eps, dtype)
    return linear(h, w["lm_head.weight"])


def reference_forward(cfg, w, input_ids, dtype=torch.float32, **opts):
    """input_ids (B, T) int64 -> logits (B, T, V), dispatched on model_type. `w`: tensors of `dtype`
    with HF names. dtype float32 is the golden; float64 only estimates the fp32 rounding noise."""
    fwd = {
        "llama": forward_llama, "mistral": forward_llama, "qwen2": forward_llama,
        "phi3": forward_phi3, "gemma3_text": forward_gemma3, "openelm": forward_openelm,
        "mixtral": forward_mixtral,
    }[cfg["model_type"]]
    return fwd(cfg, w, input_ids, dtype=dtype, **opts)


# ----------------------------------------------------------------------------------------------
# Cases.


def cases():
    return {
        # GQA 4 query heads over 2 kv heads, separate lm_head, config without head_dim (older
        # transformers), fp32.
        "llama_gqa_untied": dict(
            cfg=llama_config(160, 32, 80, 2, 4, 2, tied=False), storage=torch.float32),
        # Llama 3.x style: tied head, theta 5e5, llama3 rope scaling. head_dim 16 gives wavelengths
        # 6.3, 32, 167, 860, ... tokens; with original_max_position_embeddings 64 the thresholds are
        # 16 (high_freq_wavelen) and 64 (low_freq_wavelen), so one frequency is kept, one smoothed
        # and six divided by 8: every branch of _compute_llama3_parameters is exercised, far from
        # its boundaries. max_position_embeddings must exceed the original context (HF validation).
        "llama3_tied_ropescaled": dict(
            cfg=llama_config(
                200, 64, 128, 2, 4, 2, head_dim=16, tied=True, rope_theta=500000.0,
                rope_scaling={
                    "factor": 8.0,
                    "high_freq_factor": 4.0,
                    "low_freq_factor": 1.0,
                    "original_max_position_embeddings": 64,
                    "rope_type": "llama3",
                },
                max_pos=256),
            storage=torch.float32),
        # Qwen2: q/k/v biases, tied embeddings as Qwen2/2.5-0.5B ship.
        "qwen2_bias": dict(cfg=qwen2_config(150, 32, 96, 2, 4, 2, tied=True), storage=torch.float32),
        # Mistral with sliding_window 5 < seq 24: positions >= 5 lose their oldest keys.
        "mistral_window": dict(
            cfg=mistral_config(140, 32, 64, 2, 4, 1, sliding_window=5, head_dim=8),
            storage=torch.float32),
        "llama_bf16": dict(
            cfg=llama_config(128, 32, 72, 2, 4, 4, head_dim=8, dtype="bfloat16"),
            storage=torch.bfloat16),
        "llama_fp16": dict(
            cfg=llama_config(128, 32, 72, 2, 4, 2, head_dim=8, dtype="float16"),
            storage=torch.float16),
        # Two shards with model.safetensors.index.json, cut by bytes in module order.
        "llama_sharded": dict(
            cfg=llama_config(120, 32, 64, 2, 4, 2, head_dim=8), storage=torch.float32, shards=2),
        # head_dim 16 while hidden / heads = 12: q/k/v project 48 -> 64 (q) and 48 -> 32 (k, v).
        "head_dim_explicit": dict(
            cfg=llama_config(100, 48, 96, 2, 4, 2, head_dim=16), storage=torch.float32),
        # Phi-3: fused qkv_proj / gate_up_proj, GQA 4/2, untied head, sliding_window 7 < seq 24.
        "phi3_fused": dict(
            cfg=phi3_config(144, 64, 96, 2, 4, 2, sliding_window=7), storage=torch.float32),
        # Gemma 3 text: layers [sliding, full, sliding] (pattern 2), window 5, head_dim 16 with
        # hidden 48 (q projects 48 -> 64), query_pre_attn_scalar 24 != head_dim, linear x8 RoPE on
        # the full layer, theta 1e4 on sliding ones, 1 + w norms, q/k norms, 4 norms per layer.
        "gemma3_text": dict(
            cfg=gemma3_text_config(160, 48, 96, 3, 4, 2, 16, query_pre_attn_scalar=24,
                                   sliding_window=5, sliding_window_pattern=2),
            storage=torch.float32),
        # OpenELM layer-wise scaling: qkv_multipliers [0.25, 0.75] over 3 layers with 2 GQA groups
        # gives 2/4/6 query heads and 1/2/3 kv heads of head_dim 8; ffn_multipliers
        # [0.6, 1.3, 2.0] with divisor 16 give widths 48 (make_divisible's +10% branch), 80 and 128.
        "openelm_layerwise": dict(
            cfg=openelm_config(128, 64, 8, 3, qkv_multipliers=(0.25, 0.75), num_gqa_groups=2,
                               ffn_multipliers=(0.6, 1.3, 2.0), ffn_dim_divisor=16),
            storage=torch.float32),
        # Mixtral: 4 experts, top-2, GQA 4/2.
        "mixtral_moe": dict(
            cfg=mixtral_config(150, 32, 48, 2, 4, 2, n_expert=4, top_k=2), storage=torch.float32),
        # Mixtral with 5 experts whose router makes expert 4 unreachable (see make_weights_mixtral).
        "mixtral_dead_expert": dict(
            cfg=mixtral_config(130, 32, 40, 2, 4, 1, n_expert=5, top_k=2), storage=torch.float32,
            dead_expert=True),
    }


def shard_assignment(stored, n_shards):
    """Like transformers' split_torch_state_dict_into_shards: walk the state dict in module order
    and start a new shard when the current one would exceed an equal share of the bytes. With the
    sizes used here the cut falls inside a decoder layer, as it does in real checkpoints."""
    sizes = {k: v.numel() * v.element_size() for k, v in stored.items()}
    share = sum(sizes.values()) / n_shards
    assign, shard, acc = {}, 0, 0
    for k in stored:  # insertion order == HF module order
        if acc + sizes[k] > share and acc > 0 and shard < n_shards - 1:
            shard, acc = shard + 1, 0
        assign[k] = shard
        acc += sizes[k]
    return assign


def write_tokens_h5(path, vocab, name, failures):
    """tokens.h5: int32 dataset `tokens` of N_CALIB ids, random in [3, vocab), every CALIB_CHUNK-th
    (each chunk's first) set to BOS 1. Returns the ids as (N_CALIB / CALIB_CHUNK, CALIB_CHUNK)."""
    gen = torch.Generator().manual_seed(SEED + 100000 + sum(map(ord, name)))
    toks = torch.randint(3, vocab, (N_CALIB,), generator=gen, dtype=torch.int64)
    toks[::CALIB_CHUNK] = 1
    arr = toks.numpy().astype("<i4")
    if os.path.exists(path):
        os.remove(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("tokens", data=arr)
    with h5py.File(path, "r") as f:
        back = f["tokens"]
        if back.dtype != np.dtype("<i4") or back.shape != (N_CALIB,) or not np.array_equal(back[()], arr):
            failures.append(f"{name}: tokens.h5 does not read back")
    return toks.reshape(-1, CALIB_CHUNK)


def max_diff(a, b):
    return (a - b).abs().max().item()


def check_window(name, cfg, logits, unwindowed, window, key, extra, failures):
    """Positions < window see every key either way (bit-identical); later ones must differ."""
    if window is None or not 0 < window < logits.shape[1]:
        extra[key] = 0.0
        failures.append(f"{name}: sliding window {window} is not inside the sequence")
        return
    before = max_diff(unwindowed[:, :window], logits[:, :window])
    after = max_diff(unwindowed[:, window:], logits[:, window:])
    extra[key] = after
    if before != 0.0:
        failures.append(f"{name}: window changed positions < window ({before})")
    if after < 0.1:
        failures.append(f"{name}: sliding window does not matter (max diff {after})")


def require_effects(name, extra, keys, failures):
    for k in keys:
        if extra[k] < 0.1:
            failures.append(f"{name}: {k} {extra[k]:.3g} < 0.1, the case does not test it")


def check_phi3(name, cfg, w, ids, logits, extra, failures):
    win = cfg["sliding_window"]
    check_window(name, cfg, logits, reference_forward(cfg, w, ids, sliding_window=None), win,
                 "window_effect", extra, failures)
    extra["gate_up_order_effect"] = max_diff(reference_forward(cfg, w, ids, swap_gate_up=True), logits)
    # A loader that reads the fused rows as [q | v | k] instead of [q | k | v]:
    qpos = cfg["num_attention_heads"] * cfg_head_dim(cfg)
    kvd = cfg["num_key_value_heads"] * cfg_head_dim(cfg)
    w_kv = dict(w)
    for i in range(cfg["num_hidden_layers"]):
        k = f"model.layers.{i}.self_attn.qkv_proj.weight"
        t = w[k]
        w_kv[k] = torch.cat([t[:qpos], t[qpos + kvd :], t[qpos : qpos + kvd]])
    extra["qkv_order_effect"] = max_diff(reference_forward(cfg, w_kv, ids), logits)
    require_effects(name, extra, ("gate_up_order_effect", "qkv_order_effect"), failures)
    # Cross-check: the fused rows split into Mistral's q/k/v and gate/up tensors must give the
    # same logits through forward_llama (the path the llama/mistral goldens pin down).
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg_head_dim(cfg)
    inter = cfg["intermediate_size"]
    lcfg = mistral_config(cfg["vocab_size"], cfg["hidden_size"], inter, cfg["num_hidden_layers"],
                          heads, kv, sliding_window=win, rope_theta=cfg["rope_theta"],
                          eps=cfg["rms_norm_eps"])
    wl = {}
    for k, v in w.items():
        if k.endswith("qkv_proj.weight"):
            base = k[: -len("qkv_proj.weight")]
            wl[base + "q_proj.weight"] = v[: heads * hd]
            wl[base + "k_proj.weight"] = v[heads * hd : (heads + kv) * hd]
            wl[base + "v_proj.weight"] = v[(heads + kv) * hd :]
        elif k.endswith("gate_up_proj.weight"):
            base = k[: -len("gate_up_proj.weight")]
            wl[base + "gate_proj.weight"], wl[base + "up_proj.weight"] = v[:inter], v[inter:]
        else:
            wl[k] = v
    extra["split_vs_mistral_forward"] = max_diff(forward_llama(lcfg, wl, ids), logits)
    if extra["split_vs_mistral_forward"] > 1e-5:
        failures.append(f"{name}: phi3 forward disagrees with forward_llama on the split weights")


def check_gemma3(name, cfg, w, ids, logits, extra, failures):
    pattern = cfg["sliding_window_pattern"]
    derived = ["sliding_attention" if (i + 1) % pattern else "full_attention"
               for i in range(cfg["num_hidden_layers"])]
    if derived != cfg["layer_types"]:
        failures.append(f"{name}: layer_types {cfg['layer_types']} != pattern {pattern}'s {derived}")
    if len(set(derived)) != 2:
        failures.append(f"{name}: needs both sliding and full layers")
    extra["layer_types"] = cfg["layer_types"]
    check_window(name, cfg, logits, reference_forward(cfg, w, ids, ablate=("window",)),
                 cfg["sliding_window"], "window_effect", extra, failures)
    for a in GEMMA3_ABLATIONS:
        if a != "window":
            extra[a + "_effect"] = max_diff(reference_forward(cfg, w, ids, ablate=(a,)), logits)
    # A loader that ignores the stored norm deviations (factor 1 instead of 1 + w):
    for key, suffixes in (("qk_norm_weight_effect", ("q_norm.weight", "k_norm.weight")),
                          ("post_norm_weight_effect", ("post_attention_layernorm.weight",
                                                       "post_feedforward_layernorm.weight"))):
        w0 = {k: (torch.zeros_like(v) if k.endswith(suffixes) else v) for k, v in w.items()}
        extra[key] = max_diff(reference_forward(cfg, w0, ids), logits)
    require_effects(name, extra, [a + "_effect" for a in GEMMA3_ABLATIONS]
                    + ["qk_norm_weight_effect", "post_norm_weight_effect"], failures)


def check_openelm(name, cfg, w, ids, logits, extra, failures):
    # openelm_derived must reproduce the lists in apple/OpenELM-1_1B's config.json.
    ref = dict(num_transformer_layers=28, model_dim=2048, head_dim=64, num_gqa_groups=4,
               qkv_multipliers=[0.5, 1.0], ffn_multipliers=[1.0] * 28, ffn_dim_divisor=256)
    q11, kv11, _ = openelm_derived(ref)
    if q11 != [16] * 3 + [20] * 7 + [24] * 8 + [28] * 6 + [32] * 4 or kv11 != [q // 4 for q in q11]:
        failures.append(f"{name}: head derivation disagrees with OpenELM-1_1B: {q11} {kv11}")
    nq, nkv, ffn = openelm_derived(cfg)
    d, hd, div = cfg["model_dim"], cfg["head_dim"], cfg["ffn_dim_divisor"]
    extra.update(num_query_heads=nq, num_kv_heads=nkv, ffn_dims=ffn)
    if min(len(set(nq)), len(set(nkv)), len(set(ffn))) < 2:
        failures.append(f"{name}: heads {nq}/{nkv} or ffn {ffn} do not vary over the layers")
    # make_divisible's "+ divisor when rounding lost > 10%" branch must be exercised.
    bumped = [int(m * d + div / 2) // div * div < 0.9 * m * d for m in cfg["ffn_multipliers"]]
    extra["ffn_make_divisible_bumped"] = bumped
    if not any(bumped) or all(bumped):
        failures.append(f"{name}: make_divisible branches not both exercised: {bumped}")
    for i in range(cfg["num_transformer_layers"]):
        p = f"transformer.layers.{i}."
        want = {"attn.qkv_proj.weight": ((nq[i] + 2 * nkv[i]) * hd, d),
                "attn.out_proj.weight": (d, nq[i] * hd), "ffn.proj_1.weight": (2 * ffn[i], d),
                "ffn.proj_2.weight": (d, ffn[i]), "attn.q_norm.weight": (hd,)}
        for k, shape in want.items():
            if tuple(w[p + k].shape) != shape:
                failures.append(f"{name}: {p + k} has shape {tuple(w[p + k].shape)}, want {shape}")
    extra["qk_norm_effect"] = max_diff(reference_forward(cfg, w, ids, qk_norm=False), logits)
    w1 = {k: (torch.ones_like(v) if k.endswith(("q_norm.weight", "k_norm.weight")) else v)
          for k, v in w.items()}
    extra["qk_norm_weight_effect"] = max_diff(reference_forward(cfg, w1, ids), logits)
    extra["glu_order_effect"] = max_diff(reference_forward(cfg, w, ids, swap_glu=True), logits)
    require_effects(name, extra, ("qk_norm_effect", "qk_norm_weight_effect", "glu_order_effect"),
                    failures)


def routing_stats(trace, n_exp, top_k):
    """Per layer: tokens routed to each expert, number of distinct expert sets, and the smallest
    router-logit gap between the k-th and (k+1)-th expert (a near tie would make the selection,
    and so the logits, depend on rounding)."""
    counts, sets, gap = [], [], float("inf")
    for t in trace:
        counts.append(torch.bincount(t["selected"].flatten(), minlength=n_exp).tolist())
        sets.append(len({tuple(sorted(r)) for r in t["selected"].tolist()}))
        srt = torch.sort(t["router_logits"], dim=-1, descending=True).values
        gap = min(gap, (srt[:, top_k - 1] - srt[:, top_k]).min().item())
    return counts, sets, gap


def check_mixtral(name, cfg, spec, w, ids, logits, calib, extra, failures):
    n_exp, top_k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    trace = []
    if not torch.equal(reference_forward(cfg, w, ids, trace=trace), logits):
        failures.append(f"{name}: traced forward differs from the golden one")
    counts, sets, gap = routing_stats(trace, n_exp, top_k)
    # Routing over the calibration data, chunk by chunk as sequences of CALIB_CHUNK tokens.
    trace_h5 = []
    reference_forward(cfg, w, calib, trace=trace_h5)
    counts_h5, sets_h5, gap_h5 = routing_stats(trace_h5, n_exp, top_k)
    extra.update(expert_tokens=counts, expert_tokens_h5=counts_h5, distinct_expert_sets=sets,
                 distinct_expert_sets_h5=sets_h5, router_min_gap=gap, router_min_gap_h5=gap_h5)
    if min(sets) < 2:
        failures.append(f"{name}: routing does not vary over tokens ({sets} distinct sets)")
    if gap < 1e-3:
        failures.append(f"{name}: near tie in routing of the golden input (gap {gap:.3g})")
    if gap_h5 < 1e-5:
        failures.append(f"{name}: near tie in routing of tokens.h5 (gap {gap_h5:.3g})")
    extra["renormalize_effect"] = max_diff(reference_forward(cfg, w, ids, renormalize=False), logits)
    require_effects(name, extra, ("renormalize_effect",), failures)
    # Cross-check: with every expert equal to expert 0 the renormalised mixture is that one MLP,
    # so the forward must equal forward_llama with it as a dense MLP (same attention, theta 1e6).
    lcfg = llama_config(cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"],
                        cfg["num_hidden_layers"], cfg["num_attention_heads"],
                        cfg["num_key_value_heads"], rope_theta=cfg["rope_theta"],
                        eps=cfg["rms_norm_eps"])
    w_same, w_dense = dict(w), {}
    for k, v in w.items():
        if ".block_sparse_moe.experts." in k:
            pre, rest = k.split(".block_sparse_moe.experts.")
            w_same[k] = w[f"{pre}.block_sparse_moe.experts.0.{rest.split('.', 1)[1]}"]
            if rest.startswith("0."):
                mlp = {"w1.weight": "gate_proj", "w3.weight": "up_proj", "w2.weight": "down_proj"}
                w_dense[f"{pre}.mlp.{mlp[rest[2:]]}.weight"] = v
        elif ".block_sparse_moe.gate." not in k:
            w_dense[k] = v
    extra["one_expert_vs_llama_forward"] = max_diff(
        reference_forward(cfg, w_same, ids), forward_llama(lcfg, w_dense, ids))
    if extra["one_expert_vs_llama_forward"] > 1e-5:
        failures.append(f"{name}: identical experts disagree with a dense forward_llama")
    if spec.get("dead_expert"):
        dead = n_exp - 1
        for i in range(cfg["num_hidden_layers"]):
            r = w[f"model.layers.{i}.block_sparse_moe.gate.weight"]
            if not (torch.equal(r[1], -r[0]) and torch.equal(r[3], -r[2])
                    and torch.equal(r[4], torch.zeros_like(r[4]))):
                failures.append(f"{name}: layer {i} router is not [a, -a, b, -b, 0]")
        for label, cs in (("golden input", counts), ("tokens.h5", counts_h5)):
            for i, c in enumerate(cs):
                if c[dead] != 0:
                    failures.append(f"{name}: {label} layer {i}: dead expert got {c[dead]} tokens")
                if min(c[:dead]) == 0:
                    failures.append(f"{name}: {label} layer {i}: a live expert got no tokens: {c}")
    else:
        for label, cs in (("golden input", counts), ("tokens.h5", counts_h5)):
            for i, c in enumerate(cs):
                if min(c) == 0:
                    failures.append(f"{name}: {label} layer {i}: an expert got no tokens: {c}")


def write_case(out_dir, name, spec, gen, failures):
    cfg = spec["cfg"]
    storage = spec["storage"]
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)

    w32 = make_weights(cfg, gen, spec)
    stored = {k: v.to(storage) for k, v in w32.items()}
    # The reference uses exactly the stored (rounded) values, widened to fp32.
    w_ref = {k: v.to(torch.float32) for k, v in stored.items()}

    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")

    # Remove stale weight files from an earlier run with a different layout.
    for fn in os.listdir(d):
        if fn.endswith(".safetensors") or fn == "model.safetensors.index.json":
            os.remove(os.path.join(d, fn))

    n_shards = spec.get("shards", 1)
    if n_shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), stored)
        files = ["model.safetensors"]
    else:
        assign = shard_assignment(stored, n_shards)
        files = [f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors" for i in range(n_shards)]
        total = 0
        for i, fn in enumerate(files):
            part = {k: v for k, v in stored.items() if assign[k] == i}
            total += write_safetensors(os.path.join(d, fn), part)
        index = {
            "metadata": {"total_size": total},
            "weight_map": {k: files[assign[k]] for k in sorted(stored)},
        }
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2, sort_keys=True)
            f.write("\n")

    # Round trip: what is on disk is bit-identical to what the reference uses.
    back = {}
    for fn in files:
        back.update(read_safetensors(os.path.join(d, fn)))
    if set(back) != set(stored):
        failures.append(f"{name}: tensor set on disk differs")
    for k, v in stored.items():
        if back[k].dtype != v.dtype or not torch.equal(back[k].view(-1).float(), v.view(-1).float()):
            failures.append(f"{name}: {k} does not round-trip")
    if cfg_tied(cfg) and any(k in back for k in ("lm_head.weight", "transformer.classifier.weight")):
        failures.append(f"{name}: tied model must not store an output head")

    vocab = cfg["vocab_size"]
    # Two different sequences; token 1 (BOS) first, the rest random over the whole vocab.
    ids = torch.randint(3, vocab, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    ids[:, 0] = 1
    with torch.no_grad():
        logits = reference_forward(cfg, w_ref, ids)

    # Sanity: finite, spread out, different per sequence and per position.
    if not torch.isfinite(logits).all():
        failures.append(f"{name}: non-finite logits")
    std = logits.std().item()
    amax = logits.abs().max().item()
    if not (0.3 < std < 20.0) or amax > 60.0:
        failures.append(f"{name}: degenerate logits (std {std:.3g}, max |x| {amax:.3g})")
    if (logits[0] - logits[1]).abs().max().item() < 1e-2:
        failures.append(f"{name}: both sequences give the same logits")
    if (logits[:, 1:] - logits[:, :-1]).abs().amax(dim=-1).min().item() < 1e-3:
        failures.append(f"{name}: two consecutive positions give the same logits")

    extra = {}
    # fp32 rounding noise of this case: the same forward in float64. Any correct fp32
    # implementation lands within about this distance of the golden, so the C++ tolerance (1e-4)
    # must sit well above it.
    with torch.no_grad():
        w64 = {k: v.double() for k, v in w_ref.items()}
        noise = (reference_forward(cfg, w64, ids, dtype=torch.float64) - logits.double()).abs().max().item()
    extra["fp32_noise"] = noise
    if noise > 2e-5:
        failures.append(f"{name}: fp32 rounding noise {noise:.3g} too close to the 1e-4 tolerance")

    # The feature under test must change the answer, or the case proves nothing.
    with torch.no_grad():
        if name == "mistral_window":
            full = reference_forward(cfg, w_ref, ids, sliding_window=None)
            win = cfg["sliding_window"]
            diff_before = (full[:, :win] - logits[:, :win]).abs().max().item()
            diff_after = (full[:, win:] - logits[:, win:]).abs().max().item()
            extra["window_effect"] = diff_after
            if diff_before != 0.0:
                failures.append(f"{name}: window changed positions < window ({diff_before})")
            if diff_after < 0.1:
                failures.append(f"{name}: sliding window does not matter (max diff {diff_after})")
        if name == "llama3_tied_ropescaled":
            plain_cfg = dict(cfg, rope_scaling=None)
            plain = reference_forward(plain_cfg, w_ref, ids)
            diff = (plain - logits).abs().max().item()
            extra["rope_scaling_effect"] = diff
            f_scaled = rope_inv_freq(cfg)
            f_plain = rope_inv_freq(plain_cfg)
            ratio = (f_plain / f_scaled).tolist()
            extra["inv_freq_ratio"] = ratio
            kept = sum(1 for r in ratio if abs(r - 1.0) < 1e-6)
            divided = sum(1 for r in ratio if abs(r - 8.0) < 1e-4)
            smoothed = len(ratio) - kept - divided
            if not (kept >= 1 and divided >= 1 and smoothed >= 1):
                failures.append(f"{name}: llama3 branches not all exercised: {ratio}")
            if diff < 0.1:
                failures.append(f"{name}: llama3 scaling does not matter (max diff {diff})")
        if name == "qwen2_bias":
            nob = {k: (torch.zeros_like(v) if k.endswith("_proj.bias") else v) for k, v in w_ref.items()}
            diff = (reference_forward(cfg, nob, ids) - logits).abs().max().item()
            extra["bias_effect"] = diff
            if diff < 0.1:
                failures.append(f"{name}: q/k/v biases do not matter (max diff {diff})")

    # Calibration / evaluation ids (own generator: the draws above stay as they were).
    calib = write_tokens_h5(os.path.join(d, "tokens.h5"), vocab, name, failures)

    # The newer families' features must change the answer too (and MoE routing must be sound).
    with torch.no_grad():
        mt = cfg["model_type"]
        if mt == "phi3":
            check_phi3(name, cfg, w_ref, ids, logits, extra, failures)
        elif mt == "gemma3_text":
            check_gemma3(name, cfg, w_ref, ids, logits, extra, failures)
        elif mt == "openelm":
            check_openelm(name, cfg, w_ref, ids, logits, extra, failures)
        elif mt == "mixtral":
            check_mixtral(name, cfg, spec, w_ref, ids, logits, calib, extra, failures)

    ids.numpy().astype("<i8").tofile(os.path.join(d, "input_ids.i64"))
    logits.numpy().astype("<f4").tofile(os.path.join(d, "logits.f32"))
    golden = {
        "batch": BATCH,
        "seq": SEQ,
        "vocab": vocab,
        "storage_dtype": _ST_DTYPE[storage],
        "shards": n_shards,
        "logits_std": std,
        "logits_max_abs": amax,
    }
    golden.update(extra)
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(golden, f, indent=2, sort_keys=True)
        f.write("\n")
    return golden


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (one subdirectory per case)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(1)  # deterministic summation order
    os.makedirs(args.out, exist_ok=True)
    failures = []
    for name, spec in cases().items():
        gen = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
        g = write_case(args.out, name, spec, gen, failures)
        if not args.quiet:
            keys = ["fp32_noise", "logits_std", "logits_max_abs"]
            keys += sorted(k for k in g if k.endswith("_effect") or k.startswith("router_min_gap"))
            info = ", ".join(f"{k} {g[k]:.3g}" for k in keys if k in g)
            for k in ("expert_tokens", "expert_tokens_h5"):
                if k in g:
                    info += f", {k} {g[k]}"
            print(f"{name}: {info}")
    if failures:
        for f in failures:
            print("FAILED:", f, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
