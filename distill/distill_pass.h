// The `distill` recipe stage: the model so far is the teacher; the student is made from it
// (keep_layers) and trained with run_distill on the stage's `data`; the student replaces the
// model for the next stage. Keys: `data` and `val_data` (text or HDF5 tokens, relative to the
// recipe) and DistillOptions's (distill/README.md), without student / widths / teacher_cache /
// vocab_map (the output shape must follow from the stage's input: use `slmc distill` for those).
#pragma once

namespace slmc::distill {

void register_distill_pass();

}  // namespace slmc::distill
