// The quantize pass on in-memory models, pinned bit for bit (with tests/cli/quantize_pin_test.cpp
// on stories260K). Recorded on main's code before the calibration walk moved into compress/model's
// layer-wise driver; covers what stories260K cannot: mixture-of-experts layers (routed Hessians,
// coverage notes, starved experts falling back to rtn), an untied head (AWQ's output_norm fold,
// asym_calib on the head), true-sequential stages with the asymmetric stream, and the sensitivity
// measurement of target_bpw on both methods.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "compress/recipe/yaml_options.h"
#include "quantize/quantize_pass.h"
#include "tests/recipe/tiny_model.h"

namespace slmc {
namespace {

using slmc::testing::random_calibration;
using slmc::testing::tiny_model;

void fnv1a(uint64_t& h, const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
}

// Every packed tensor (name, format, bytes) and every fp32 value of the model, in name order.
uint64_t model_hash(const CompressedModel& m) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& [name, q] : m.packed) {
    fnv1a(h, name.data(), name.size() + 1);
    const uint32_t id = static_cast<uint32_t>(q.format);
    fnv1a(h, &id, sizeof id);
    fnv1a(h, q.bytes.data(), q.bytes.size());
  }
  for (const auto& [name, t] : m.model.tensors) {
    fnv1a(h, name.data(), name.size() + 1);
    fnv1a(h, t.data.data(), t.data.size() * sizeof(float));
  }
  return h;
}

struct PinCase {
  const char* name;
  bool moe;
  bool tied;
  const char* yaml;
  uint64_t hash;           // model_hash after the pass, main's code
  std::string notes = "";  // joined report notes that must appear (coverage)
};

// ctest lists parameterised cases by their printed value: the case name.
void PrintTo(const PinCase& c, std::ostream* os) { *os << c.name; }

class QuantizePassPin : public ::testing::TestWithParam<PinCase> {};

TEST_P(QuantizePassPin, StoredBytesUnchanged) {
  const PinCase& c = GetParam();
  CompressedModel m =
      c.moe ? tiny_model(64, 64, 96, 2, c.tied, 11, 4, 2) : tiny_model(128, 256, 128, 2, c.tied, 5);
  const CalibrationSet cal = random_calibration(m.model.spec.vocab, 6, 32, 9);
  PassContext ctx;
  ctx.calibration = &cal;
  quant::register_quantize_pass();
  auto p = make_pass("quantize", "pin.yaml", YAML::Load(c.yaml), "pin.yaml:1");
  const PassReport r = p->run(m, ctx);
  const uint64_t h = model_hash(m);
  EXPECT_EQ(h, c.hash) << c.name << ": 0x" << std::hex << h;
  std::string notes;
  for (const std::string& n : r.notes) notes += n + "\n";
  EXPECT_NE(notes.find(c.notes), std::string::npos) << notes;
}

INSTANTIATE_TEST_SUITE_P(
    All, QuantizePassPin,
    ::testing::Values(
        PinCase{"moe_gptq", true, false, "{method: gptq, bits: 4, moe_min_tokens: 60}",
                0x1d3775246ee20b57ull, "calibration tokens per expert"},
        PinCase{"moe_awq", true, true, "{method: awq, bits: 4, moe_min_tokens: 60}",
                0x839b1a981154bd39ull, "calibration tokens per expert"},
        PinCase{"untied_gptq_seq", false, false,
                "{method: gptq, bits: 4, true_sequential: true, calib_batch: 4}",
                0x0a82b9f16b1b63efull},
        PinCase{"untied_awq", false, false, "{method: awq, bits: 4, calib_batch: 5}",
                0x7010f1dc1fdfe844ull},
        PinCase{"tied_rtn_mix", false, true, "{method: rtn, target_bpw: 5.0, sens_samples: 2}",
                0x3ef50b88e676efe8ull, "target_bpw 5.000"},
        PinCase{
            "untied_gptq_mix", false, false,
            "{method: gptq, target_bpw: 4.5, sens_samples: 2, mix_formats: \"q4_0,q4_g64,q8_0\"}",
            0x0fa2884538e943b9ull, "target_bpw 4.500"}),
    [](const ::testing::TestParamInfo<PinCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace slmc
