#!/usr/bin/python3
"""Golden logits for slmc's decoder: small random checkpoints in the exact Hugging Face layout.

Run with Debian's python3 (python3-torch, numpy):

    /usr/bin/python3 tests/model/gen_goldens.py --out DIR

For every case it writes DIR/<case>/ with
  config.json                      keys as transformers writes them for *ForCausalLM
  model.safetensors                (or model-0000k-of-0000n.safetensors + model.safetensors.index.json)
  input_ids.i64                    (batch, seq) int64, little-endian, row-major
  logits.f32                       (batch, seq, vocab) float32, little-endian, row-major
  golden.json                      {"batch", "seq", "vocab", ...}

The logits come from the reference forward below, written independently of slmc from the public
transformers modeling code (modeling_llama.py / modeling_mistral.py / modeling_qwen2.py and
modeling_rope_utils._compute_llama3_parameters), in float32 like an fp32 HF run:
  * RMSNorm in fp32: weight * (x * rsqrt(mean(x^2) + eps))
  * RoPE in the rotate-half convention: inv_freq = 1 / theta^(arange(0, head_dim, 2) / head_dim),
    emb = cat(freqs, freqs), x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1)
  * GQA by repeat_kv (kv head j serves query heads j*n_rep .. j*n_rep + n_rep - 1)
  * scores * head_dim^-0.5 plus an additive mask of finfo(float32).min, softmax in fp32
  * causal mask kv <= q; Mistral sliding window additionally masks kv <= q - sliding_window
  * Qwen2: biases on q/k/v projections, none on o_proj
  * gated MLP down(silu(gate(x)) * up(x)); tied embeddings reuse embed_tokens as lm_head

Weights stored as BF16/F16 are rounded first and the forward uses the rounded values upcast to
fp32, as a loader that widens to fp32 must.

The script checks its own output (finite, non-degenerate logits; the sliding window and the llama3
scaling actually change the logits; stored weights read back bit-exactly) and exits non-zero if any
check fails, so a broken generator cannot produce goldens that pass vacuously.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

BATCH = 2
SEQ = 24
SEED = 1234

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


# ----------------------------------------------------------------------------------------------
# Random weights with HF names.


def make_weights(cfg, gen):
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


def reference_forward(cfg, w, input_ids, sliding_window="config", dtype=torch.float32):
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


def write_case(out_dir, name, spec, gen, failures):
    cfg = spec["cfg"]
    storage = spec["storage"]
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)

    w32 = make_weights(cfg, gen)
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
    if cfg["tie_word_embeddings"] and "lm_head.weight" in back:
        failures.append(f"{name}: tied model must not store lm_head.weight")

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
            keys = ("fp32_noise", "logits_std", "logits_max_abs", "window_effect", "rope_scaling_effect", "bias_effect")
            info = ", ".join(f"{k} {g[k]:.3g}" for k in keys if k in g)
            print(f"{name}: {info}")
    if failures:
        for f in failures:
            print("FAILED:", f, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
