// SentencePiece `.model` files read without libsentencepiece (it cannot share a process with
// LibTorch): a minimal protobuf wire-format reader for ModelProto, the identity normalizer and
// the BPE encoder of sentencepiece's bpe_model.cc, reproduced id for id.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compress/tokenizer/tokenizer.h"
#include "compress/tokenizer/tokenizer_internal.h"

namespace slmc {

// ModelProto.SentencePiece.Type; values are the protobuf enum numbers.
enum class SpmPieceType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};
const char* spm_piece_type_name(SpmPieceType t);

// TrainerSpec.ModelType.
enum class SpmModelType : int32_t { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };
const char* spm_model_type_name(SpmModelType t);

struct SpmPiece {
  std::string piece;                          // ModelProto.pieces.piece (field 1), UTF-8
  float score = 0.0f;                         // field 2
  SpmPieceType type = SpmPieceType::kNormal;  // field 3
};

struct SpmNormalizerSpec {
  bool present = false;
  std::string name;                      // field 1
  std::string precompiled_charsmap;      // field 2
  bool add_dummy_prefix = true;          // field 3
  bool remove_extra_whitespaces = true;  // field 4
  bool escape_whitespaces = true;        // field 5
};

// The fields of sentencepiece_model.proto that change how text is encoded; everything else is
// skipped. Defaults are the proto2 defaults.
struct SpmModelProto {
  std::vector<SpmPiece> pieces;  // ModelProto field 1
  // TrainerSpec (ModelProto field 2)
  bool has_trainer_spec = false;
  SpmModelType model_type = SpmModelType::kUnigram;  // field 3
  int32_t raw_model_type = 1;                        // the enum value as stored
  bool treat_whitespace_as_suffix = false;           // field 24
  bool byte_fallback = false;                        // field 35
  int32_t unk_id = 0;                                // field 40
  int32_t bos_id = 1;                                // field 41
  int32_t eos_id = 2;                                // field 42
  int32_t pad_id = -1;                               // field 43
  std::string unk_piece = "<unk>";                   // field 45
  std::string bos_piece = "<s>";                     // field 46
  std::string eos_piece = "</s>";                    // field 47
  std::string pad_piece = "<pad>";                   // field 48
  SpmNormalizerSpec normalizer;                      // ModelProto field 3
  SpmNormalizerSpec denormalizer;                    // ModelProto field 5
};

// Decodes the protobuf bytes of a `.model` file. Checks the wire format only (every length against
// the bytes left, varint sizes, wire types, enum values); `path` names the file in errors.
SpmModelProto parse_spm_model_proto(std::string_view bytes, const std::string& path);

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Validates `proto` as libsentencepiece does when it loads a model (non-empty unique pieces, one
  // UNKNOWN piece, 256 byte pieces iff byte_fallback) and rejects what slmc does not implement:
  // a model_type other than BPE, or a non-empty normalizer/denormalizer precompiled_charsmap.
  SentencePieceTokenizer(SpmModelProto proto, const std::string& path);
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  std::string kind() const override { return "sentencepiece"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode_piece(int32_t prev, int32_t id) const override;
  std::string piece(int32_t id) const override;

  int32_t unk_id() const { return unk_id_; }
  SpmPieceType type(int32_t id) const;
  float score(int32_t id) const;
  // ModelInterface::PieceToId: control/unknown/byte pieces first, then the others, else unk_id.
  int32_t piece_to_id(std::string_view piece) const;
  // Normalizer::Normalize for a model without precompiled_charsmap: spaces become U+2581, the
  // dummy prefix (or suffix) is added, extra spaces are removed when the spec says so, and each
  // malformed UTF-8 byte becomes U+FFFD.
  std::string normalize(std::string_view text) const;
  // bpe::Model::Encode on normalized text: pieces (views into `normalized`) with their ids, before
  // byte fallback and the merging of unknowns.
  std::vector<std::pair<std::string_view, int32_t>> encode_normalized(
      std::string_view normalized) const;

 private:
  using PieceMap = tokenizer_internal::PieceIndex;

  void id_check(int32_t id) const;
  // PrefixMatcher::PrefixMatch: length of the longest user-defined symbol at the start of `s`
  // (`*found` true), else of one UTF-8 character by its lead byte.
  size_t prefix_match(std::string_view s, bool* found) const;
  // Normalizer::NormalizePrefix: the normalized text of the next input unit and its input length.
  std::pair<std::string_view, size_t> normalize_prefix(std::string_view input) const;

  std::vector<SpmPiece> pieces_;
  SpmNormalizerSpec normalizer_;
  bool treat_whitespace_as_suffix_ = false;
  bool byte_fallback_ = false;
  // Views into pieces_[i].piece; pieces_ is never resized after construction.
  PieceMap pieces_map_;    // NORMAL, USER_DEFINED, UNUSED: the merge targets
  PieceMap reserved_map_;  // CONTROL, UNKNOWN, BYTE
  std::array<std::vector<std::string_view>, 256> user_defined_;  // by first byte, longest first
  std::array<int32_t, 256> byte_ids_{};  // id of <0xXX>, -1 without byte fallback
  // joinable_[a * 256 + b]: some merge target has byte a followed by byte b. Where the bytes on
  // either side of a symbol boundary are not joinable, no merge can ever cross it.
  std::vector<bool> joinable_ = std::vector<bool>(256 * 256, false);
  bool has_user_defined_ = false;
  bool has_unused_ = false;
  int32_t unk_id_ = -1;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
};

// Reads and validates a `.model` file; `bytes` are its contents.
std::unique_ptr<SentencePieceTokenizer> load_sentencepiece(std::string_view bytes,
                                                           const std::string& path);

}  // namespace slmc
