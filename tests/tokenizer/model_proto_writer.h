// Writes a SentencePiece ModelProto in protobuf wire format, for tests that need model variants
// (tok512.model with other flags, piece types or fields) or malformed files.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "compress/tokenizer/sentencepiece.h"

namespace slmc::test {

inline void put_varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

inline void put_tag(std::string* out, int field, int wire) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire));
}

inline void put_bytes(std::string* out, int field, std::string_view s) {
  put_tag(out, field, 2);
  put_varint(out, s.size());
  out->append(s);
}

inline void put_int(std::string* out, int field, int64_t v) {
  put_tag(out, field, 0);
  put_varint(out, static_cast<uint64_t>(v));
}

inline void put_float(std::string* out, int field, float f) {
  put_tag(out, field, 5);
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(bits >> (8 * i)));
}

inline std::string serialize_normalizer(const SpmNormalizerSpec& n) {
  std::string out;
  put_bytes(&out, 1, n.name);
  if (!n.precompiled_charsmap.empty()) put_bytes(&out, 2, n.precompiled_charsmap);
  put_int(&out, 3, n.add_dummy_prefix);
  put_int(&out, 4, n.remove_extra_whitespaces);
  put_int(&out, 5, n.escape_whitespaces);
  return out;
}

inline std::string serialize(const SpmModelProto& m) {
  std::string out;
  for (const SpmPiece& sp : m.pieces) {
    std::string body;
    put_bytes(&body, 1, sp.piece);
    put_float(&body, 2, sp.score);
    if (sp.type != SpmPieceType::kNormal) put_int(&body, 3, static_cast<int>(sp.type));
    put_bytes(&out, 1, body);
  }
  std::string trainer;
  put_int(&trainer, 3, m.raw_model_type);
  put_int(&trainer, 24, m.treat_whitespace_as_suffix);
  put_int(&trainer, 35, m.byte_fallback);
  put_int(&trainer, 40, m.unk_id);
  put_int(&trainer, 41, m.bos_id);
  put_int(&trainer, 42, m.eos_id);
  put_int(&trainer, 43, m.pad_id);
  put_bytes(&out, 2, trainer);
  put_bytes(&out, 3, serialize_normalizer(m.normalizer));
  if (m.denormalizer.present) put_bytes(&out, 5, serialize_normalizer(m.denormalizer));
  return out;
}

}  // namespace slmc::test
