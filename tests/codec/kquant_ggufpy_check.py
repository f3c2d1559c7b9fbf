#!/usr/bin/env python3
"""Holds slmc's K-quant dequantizers to gguf-py's numpy ones (llama.cpp's own Python package, from
node-llama-cpp 3.22.1's bundled release, fetched by bench/llama_cpp.sh --src into the cache).

Usage: kquant_ggufpy_check.py DUMP_HELPER GOLDEN_TXT GGUF_PY_DIR
Every golden block (bytes written by ggml's quantizers) is dequantized by both; the float32 values
must be bit-identical. Exits 1 on any difference, naming the format, input kind and weight."""
import subprocess
import sys

import numpy as np

helper, golden, gguf_py = sys.argv[1:4]
sys.path.insert(0, gguf_py)
from gguf import GGMLQuantizationType, quants  # noqa: E402

TYPES = {"q4_k": GGMLQuantizationType.Q4_K, "q5_k": GGMLQuantizationType.Q5_K,
         "q6_k": GGMLQuantizationType.Q6_K}
text = open(golden).read()
ours = subprocess.run([helper], input=text, capture_output=True, text=True, check=True).stdout.split("\n")
checked = 0
for line, mine in zip(text.split("\n"), ours):
    if not line:
        continue
    name, kind, hexbytes = line.split()
    n2, k2, hexfloats = mine.split()
    assert (n2, k2) == (name, kind), (line[:20], mine[:20])
    qtype = TYPES.get(name[:4])
    if qtype is None:  # q8_k: gguf-py has no Q8_K dequantizer
        continue
    raw = np.frombuffer(bytes.fromhex(hexbytes), dtype=np.uint8)
    ref = quants.dequantize(raw, qtype).astype(np.float32).reshape(-1)
    got = np.frombuffer(bytes.fromhex(hexfloats), dtype=">u4").astype(np.uint32).view(np.float32)
    if ref.shape != got.shape or not np.array_equal(ref.view(np.uint32), got.view(np.uint32)):
        bad = np.nonzero(ref.view(np.uint32) != got.view(np.uint32))[0]
        print(f"{name} kind {kind}: {len(bad)} values differ from gguf-py, first weight {bad[0]}: "
              f"gguf-py {ref[bad[0]]!r}, slmc {got[bad[0]]!r}")
        sys.exit(1)
    checked += 1
print(f"{checked} golden rows dequantized bit-identically to gguf-py")
sys.exit(0 if checked == 48 else 1)  # 6 formats x 8 input kinds
