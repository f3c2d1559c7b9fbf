// model.safetensors.index.json of a sharded checkpoint: the input is the index; the directory
// holds a valid tied llama config and two shards (generated once), so the fuzzer explores the
// weight_map: names, shard file names (path traversal refused), tensors missing from a shard,
// __metadata__ aliases.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "compress/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

std::string make_dir() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("slmc_fuzz_index_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  slmc::ModelSpec s = slmc::make_uniform_spec(slmc::Family::kLlama, 16, 8, 1, 2, 1, 8, 32);
  s.tied_embeddings = true;
  // Write through slmc's own writer, then split the tensors over two shards; the second shard
  // also stores the embedding under lm_head.weight with the alias safetensors writes.
  slmc::TensorMap t;
  for (const slmc::TensorDecl& d : slmc::expected_tensors(s)) {
    slmc::HostTensor h;
    h.shape = d.shape;
    h.data.assign(static_cast<size_t>(slmc::shape_numel(d.shape)), 0.5f);
    t[d.name] = h;
  }
  slmc::save_hf_model(dir.string(), s, t);
  const slmc::SafetensorsFile all((dir / "model.safetensors").string());
  slmc::TensorMap a, b;
  for (const auto& kv : all.entries()) {
    (kv.first.find("layers.0.mlp") != std::string::npos ? b : a)[kv.first] = all.read(kv.first);
  }
  b["lm_head.weight"] = all.read("model.embed_tokens.weight");
  slmc::write_safetensors((dir / "model-00001-of-00002.safetensors").string(), a, slmc::DType::kF32);
  slmc::write_safetensors((dir / "model-00002-of-00002.safetensors").string(), b, slmc::DType::kBF16,
                          {{"format", "pt"}, {"model.embed_tokens.weight", "lm_head.weight"}});
  fs::remove(dir / "model.safetensors");
  return dir.string();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = make_dir();
  {
    std::ofstream f(dir + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  slmc::fuzz::expect_ok_or_error([&] { (void)slmc::load_hf_model(dir); });
  return 0;
}
