// Decode speed as llama-bench measures it (tg): `gen` single-token forwards from an empty context.
// One definition for `slmc bench` and the recipe runner's min_decode_tok_s gate.
#pragma once

#include <cstdint>
#include <functional>

#include "export/runtime/model.h"

namespace slmc::runtime {

// Resets `session`, then runs token(0), token(1), ... token(gen - 1) one at a time (logits of the
// last token into `logits`, vocab floats) and returns tokens per second of that loop.
double timed_decode_tok_s(Session& session, int64_t gen, const std::function<int32_t(int64_t)>& token,
                          float* logits);

}  // namespace slmc::runtime
