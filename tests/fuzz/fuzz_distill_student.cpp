// The small text inputs of `slmc distill` (distill/student.h): the widths report (JSON), the
// vocabulary map (one teacher id per line) and keep_layers items. The input is split at the first
// two NUL bytes into the three.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "distill/student.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string all(reinterpret_cast<const char*>(data), size);
  const size_t a = all.find('\0');
  const size_t b = a == std::string::npos ? std::string::npos : all.find('\0', a + 1);
  const std::string widths = all.substr(0, a);
  const std::string vmap = a == std::string::npos ? "" : all.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  const std::string keep = b == std::string::npos ? "" : all.substr(b + 1);
  slmc::fuzz::expect_ok_or_error(
      [&] { (void)slmc::distill::parse_widths_report(widths, "fuzz.json", 6); });
  slmc::fuzz::expect_ok_or_error(
      [&] { (void)slmc::distill::parse_vocab_map(vmap, "fuzz.map", 64, 300); });
  slmc::fuzz::expect_ok_or_error([&] {
    slmc::PatternList items;
    std::istringstream is(keep);
    for (std::string line; std::getline(is, line) && items.items.size() < 64;) items.add(line, "fuzz");
    (void)slmc::distill::parse_keep_layers(items, 12);
  });
  return 0;
}
