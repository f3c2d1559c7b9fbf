// Loading a GGUF file (llama.cpp's model file) as a LoadedModel: the architecture's metadata
// become a ModelSpec and every tensor is dequantized to fp32 with the codec's reference, in slmc's
// canonical names and rotate-half RoPE order (export/format/gguf_model.h maps both ways).
#pragma once

#include <string>

#include "compress/io/model_loader.h"

namespace slmc {

// Throws slmc::Error naming the file and the field for anything malformed or unsupported.
LoadedModel load_gguf_model(const std::string& path);

}  // namespace slmc
