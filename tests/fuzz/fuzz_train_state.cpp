// Training checkpoints' state (compress/model/train_state.h): the JSON kept in the checkpoint's
// safetensors metadata, and the data-order state string inside it. The tensors of a checkpoint
// go through SafetensorsFile, which fuzz_safetensors covers.
#include <cstddef>
#include <cstdint>
#include <string>

#include "compress/model/train_state.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  slmc::fuzz::expect_ok_or_error([&] {
    const slmc::TrainState s = slmc::TrainState::from_json(text, "fuzz");
    (void)slmc::TrainState::from_json(s.to_json(), "fuzz (round trip)");
    (void)slmc::from_hex(s.torch_rng, "fuzz: torch_rng");
    for (auto order : {slmc::WindowSampler::Order::kRandomOffsets,
                       slmc::WindowSampler::Order::kShuffledWindows}) {
      slmc::WindowSampler w(order, 1000, 10, 1);
      slmc::fuzz::expect_ok_or_error([&] {
        w.restore(s.sampler, "fuzz");
        (void)w.next(3);
      });
    }
  });
  return 0;
}
