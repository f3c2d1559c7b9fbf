// Test helper for kquant_ggufpy_check.py: reads kquant_golden.txt lines ("name kind hex") on stdin
// and prints, per line, "name kind" and the float32 bits (hex) of dequantize_row_ref's output.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "quantize/codec/formats.h"

int main() {
  std::string name, hex;
  int kind;
  while (std::cin >> name >> kind >> hex) {
    slmc::codec::Format f;
    const std::string base = name.substr(0, 4);  // q4_k_w -> q4_k
    if (!slmc::codec::format_from_name(base, &f)) {
      std::fprintf(stderr, "unknown format %s\n", name.c_str());
      return 1;
    }
    std::vector<uint8_t> b(hex.size() / 2);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    const int64_t n = static_cast<int64_t>(b.size()) / slmc::codec::format_info(f).block_bytes *
                      slmc::codec::format_info(f).block_size;
    std::vector<float> y(static_cast<size_t>(n));
    slmc::codec::dequantize_row_ref(f, b.data(), n, y.data());
    std::printf("%s %d ", name.c_str(), kind);
    for (float v : y) {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      std::printf("%08x", u);
    }
    std::printf("\n");
  }
  return 0;
}
