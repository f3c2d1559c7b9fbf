#include "compress/tokenizer/sentencepiece.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <queue>
#include <unordered_map>

#include "compress/core/error.h"
#include "compress/tokenizer/tokenizer_internal.h"

namespace slmc {


namespace {

// ---------------------------------------------------------------------------------------------
// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/)

enum WireType : int {
  kWireVarint = 0,
  kWireFixed64 = 1,
  kWireLen = 2,
  kWireStartGroup = 3,
  kWireEndGroup = 4,
  kWireFixed32 = 5,
};

constexpr int kMaxGroupDepth = 64;

// Reads one message's bytes; every read is checked against the bytes left. Offsets in errors
// are from the start of the file.
class WireReader {
 public:
  WireReader(std::string_view data, size_t base, const std::string& path, const char* message)
      : data_(data), base_(base), path_(path), message_(message) {}

  bool done() const { return pos_ >= data_.size(); }

  [[noreturn]] void malformed(const std::string& what, size_t at) const {
    fail(path_, ": malformed SentencePiece model: ", message_, ": ", what, " at byte ", base_ + at);
  }

  uint64_t varint() {
    const size_t start = pos_;
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos_ >= data_.size()) malformed("varint runs past the end of the message", start);
      const uint8_t b = static_cast<uint8_t>(data_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) return v;
    }
    malformed("varint longer than 10 bytes", start);
  }

  // Reads a tag: its field number (>= 1) and wire type (0..5).
  void tag(uint32_t* field, int* wire) {
    const size_t start = pos_;
    const uint64_t t = varint();
    const uint64_t f = t >> 3;
    if (f == 0 || f > 0x1fffffff) malformed(str_cat("invalid field number ", f), start);
    *field = static_cast<uint32_t>(f);
    *wire = static_cast<int>(t & 7);
    if (*wire > kWireFixed32) {
      malformed(str_cat("invalid wire type ", *wire, " for field ", f), start);
    }
  }

  uint32_t fixed32() {
    if (data_.size() - pos_ < 4) malformed("32-bit value runs past the end of the message", pos_);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
      v |= static_cast<uint32_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return v;
  }

  void fixed64() {
    if (data_.size() - pos_ < 8) malformed("64-bit value runs past the end of the message", pos_);
    pos_ += 8;
  }

  std::string_view bytes() {
    const size_t start = pos_;
    const uint64_t len = varint();
    const size_t left = data_.size() - pos_;
    if (len > left) {
      malformed(
          str_cat("length ", len, " runs past the end of the message (", left, " bytes left)"),
          start);
    }
    const std::string_view v = data_.substr(pos_, static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return v;
  }

  // A reader for an embedded message whose bytes were returned by bytes().
  WireReader sub(std::string_view bytes, const char* message) const {
    return WireReader(bytes, base_ + static_cast<size_t>(bytes.data() - data_.data()), path_,
                      message);
  }

  // Skips the value of a field this reader does not interpret, as protobuf does for unknown
  // fields (and for known fields sent with an unexpected wire type).
  void skip(uint32_t field, int wire, int depth = 0) {
    switch (wire) {
      case kWireVarint:
        varint();
        return;
      case kWireFixed64:
        fixed64();
        return;
      case kWireLen:
        bytes();
        return;
      case kWireFixed32:
        fixed32();
        return;
      case kWireStartGroup: {
        if (depth >= kMaxGroupDepth) malformed("groups nested too deeply", pos_);
        while (true) {
          if (done()) malformed(str_cat("group of field ", field, " is not terminated"), pos_);
          uint32_t f = 0;
          int w = 0;
          const size_t start = pos_;
          tag(&f, &w);
          if (w == kWireEndGroup) {
            if (f != field) {
              malformed(str_cat("end-group tag of field ", f, " closes the group of field ", field),
                        start);
            }
            return;
          }
          skip(f, w, depth + 1);
        }
      }
      default:  // kWireEndGroup outside a group
        malformed(str_cat("unexpected end-group tag of field ", field), pos_);
    }
  }

  size_t pos() const { return pos_; }

 private:
  std::string_view data_;
  size_t base_;
  size_t pos_ = 0;
  const std::string& path_;
  const char* message_;
};

int32_t as_int32(uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

float as_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

void parse_piece(WireReader r, size_t index, const std::string& path, SpmPiece* p) {
  while (!r.done()) {
    uint32_t field = 0;
    int wire = 0;
    r.tag(&field, &wire);
    if (field == 1 && wire == kWireLen) {
      p->piece = std::string(r.bytes());
    } else if (field == 2 && wire == kWireFixed32) {
      p->score = as_float(r.fixed32());
    } else if (field == 3 && wire == kWireVarint) {
      const int32_t t = as_int32(r.varint());
      if (t < 1 || t > 6) {
        fail(path, ": SentencePiece model: pieces[", index, "] has unknown type ", t,
             " (expected 1..6: NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE)");
      }
      p->type = static_cast<SpmPieceType>(t);
    } else {
      r.skip(field, wire);
    }
  }
}

// Fields of a repeated embedded message merge into what was read before, as in protobuf.
void parse_trainer_spec(WireReader r, SpmModelProto* m) {
  m->has_trainer_spec = true;
  while (!r.done()) {
    uint32_t field = 0;
    int wire = 0;
    r.tag(&field, &wire);
    if (wire == kWireVarint &&
        (field == 3 || field == 24 || field == 35 || (field >= 40 && field <= 43))) {
      const uint64_t v = r.varint();
      switch (field) {
        case 3:
          m->raw_model_type = as_int32(v);
          m->model_type = static_cast<SpmModelType>(m->raw_model_type);
          break;
        case 24:
          m->treat_whitespace_as_suffix = v != 0;
          break;
        case 35:
          m->byte_fallback = v != 0;
          break;
        case 40:
          m->unk_id = as_int32(v);
          break;
        case 41:
          m->bos_id = as_int32(v);
          break;
        case 42:
          m->eos_id = as_int32(v);
          break;
        case 43:
          m->pad_id = as_int32(v);
          break;
      }
    } else if (wire == kWireLen && field >= 45 && field <= 48) {
      const std::string s(r.bytes());
      switch (field) {
        case 45:
          m->unk_piece = s;
          break;
        case 46:
          m->bos_piece = s;
          break;
        case 47:
          m->eos_piece = s;
          break;
        case 48:
          m->pad_piece = s;
          break;
      }
    } else {
      r.skip(field, wire);
    }
  }
}

void parse_normalizer_spec(WireReader r, SpmNormalizerSpec* n) {
  n->present = true;
  while (!r.done()) {
    uint32_t field = 0;
    int wire = 0;
    r.tag(&field, &wire);
    if (wire == kWireLen && field == 1) {
      n->name = std::string(r.bytes());
    } else if (wire == kWireLen && field == 2) {
      n->precompiled_charsmap = std::string(r.bytes());
    } else if (wire == kWireVarint && field >= 3 && field <= 5) {
      const bool v = r.varint() != 0;
      if (field == 3) n->add_dummy_prefix = v;
      if (field == 4) n->remove_extra_whitespaces = v;
      if (field == 5) n->escape_whitespaces = v;
    } else {
      r.skip(field, wire);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// UTF-8 exactly as sentencepiece's util.h / util.cc

constexpr std::string_view kSpaceSymbol = "\xe2\x96\x81";      // U+2581
constexpr std::string_view kReplacementChar = "\xef\xbf\xbd";  // U+FFFD
constexpr uint32_t kUnicodeError = 0xfffd;

// string_util::OneCharLen: the length of a UTF-8 character from its lead byte alone.
inline size_t one_char_len(char c) {
  return static_cast<size_t>("\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[static_cast<uint8_t>(c) >> 4]);
}

inline bool is_trail_byte(char c) { return static_cast<signed char>(c) < -0x40; }

inline bool is_valid_codepoint(uint32_t c) { return c < 0xd800 || (c >= 0xe000 && c <= 0x10ffff); }

// string_util::DecodeUTF8.
uint32_t decode_utf8(std::string_view s, size_t* mblen) {
  const size_t len = s.size();
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i])); };
  if (b(0) < 0x80) {
    *mblen = 1;
    return b(0);
  } else if (len >= 2 && (b(0) & 0xe0) == 0xc0) {
    const uint32_t cp = ((b(0) & 0x1f) << 6) | (b(1) & 0x3f);
    if (is_trail_byte(s[1]) && cp >= 0x80 && is_valid_codepoint(cp)) {
      *mblen = 2;
      return cp;
    }
  } else if (len >= 3 && (b(0) & 0xf0) == 0xe0) {
    const uint32_t cp = ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f);
    if (is_trail_byte(s[1]) && is_trail_byte(s[2]) && cp >= 0x800 && is_valid_codepoint(cp)) {
      *mblen = 3;
      return cp;
    }
  } else if (len >= 4 && (b(0) & 0xf8) == 0xf0) {
    const uint32_t cp =
        ((b(0) & 0x07) << 18) | ((b(1) & 0x3f) << 12) | ((b(2) & 0x3f) << 6) | (b(3) & 0x3f);
    if (is_trail_byte(s[1]) && is_trail_byte(s[2]) && is_trail_byte(s[3]) && cp >= 0x10000 &&
        is_valid_codepoint(cp)) {
      *mblen = 4;
      return cp;
    }
  }
  *mblen = 1;
  return kUnicodeError;
}

// string_util::IsValidDecodeUTF8 (a literal U+FFFD is valid).
inline bool is_valid_decode_utf8(std::string_view s, size_t* mblen) {
  return decode_utf8(s, mblen) != kUnicodeError || *mblen == 3;
}

// PieceToByte: "<0xXX>" with upper-case hex digits, as ByteToPiece writes it; else -1.
int piece_to_byte(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = p[i];
    if (c >= '0' && c <= '9') {
      v = v * 16 + (c - '0');
    } else if (c >= 'A' && c <= 'F') {
      v = v * 16 + (c - 'A' + 10);
    } else {
      return -1;
    }
  }
  return v;
}

inline bool starts_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}
inline bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

}  // namespace

const char* spm_piece_type_name(SpmPieceType t) {
  switch (t) {
    case SpmPieceType::kNormal:
      return "NORMAL";
    case SpmPieceType::kUnknown:
      return "UNKNOWN";
    case SpmPieceType::kControl:
      return "CONTROL";
    case SpmPieceType::kUserDefined:
      return "USER_DEFINED";
    case SpmPieceType::kUnused:
      return "UNUSED";
    case SpmPieceType::kByte:
      return "BYTE";
  }
  return "unknown";
}

const char* spm_model_type_name(SpmModelType t) {
  switch (t) {
    case SpmModelType::kUnigram:
      return "UNIGRAM";
    case SpmModelType::kBpe:
      return "BPE";
    case SpmModelType::kWord:
      return "WORD";
    case SpmModelType::kChar:
      return "CHAR";
  }
  return "unknown";
}

SpmModelProto parse_spm_model_proto(std::string_view bytes, const std::string& path) {
  SpmModelProto m;
  WireReader r(bytes, 0, path, "ModelProto");
  while (!r.done()) {
    uint32_t field = 0;
    int wire = 0;
    r.tag(&field, &wire);
    if (wire != kWireLen || (field != 1 && field != 2 && field != 3 && field != 5)) {
      r.skip(field, wire);
      continue;
    }
    const std::string_view body = r.bytes();
    switch (field) {
      case 1:
        m.pieces.emplace_back();
        parse_piece(r.sub(body, "ModelProto.pieces"), m.pieces.size() - 1, path, &m.pieces.back());
        break;
      case 2:
        parse_trainer_spec(r.sub(body, "ModelProto.trainer_spec"), &m);
        break;
      case 3:
        parse_normalizer_spec(r.sub(body, "ModelProto.normalizer_spec"), &m.normalizer);
        break;
      case 5:
        parse_normalizer_spec(r.sub(body, "ModelProto.denormalizer_spec"), &m.denormalizer);
        break;
    }
  }
  return m;
}

// ---------------------------------------------------------------------------------------------

SentencePieceTokenizer::SentencePieceTokenizer(SpmModelProto proto, const std::string& path)
    : pieces_(std::move(proto.pieces)),
      normalizer_(std::move(proto.normalizer)),
      treat_whitespace_as_suffix_(proto.treat_whitespace_as_suffix),
      byte_fallback_(proto.byte_fallback) {
  source_ = path;
  if (proto.model_type != SpmModelType::kBpe) {
    const char* name = proto.raw_model_type >= 1 && proto.raw_model_type <= 4
                           ? spm_model_type_name(proto.model_type)
                           : "unknown";
    fail(path, ": unsupported SentencePiece model: trainer_spec.model_type is ", name, " (",
         proto.raw_model_type, proto.has_trainer_spec ? "" : ", the default: no trainer_spec",
         "); slmc implements only BPE (2)");
  }
  if (!normalizer_.precompiled_charsmap.empty()) {
    fail(path,
         ": unsupported SentencePiece model: normalizer_spec.precompiled_charsmap is not "
         "empty (",
         normalizer_.precompiled_charsmap.size(), " bytes, normalizer_spec.name ",
         quoted_excerpt(normalizer_.name), "); slmc implements only the identity normalizer");
  }
  if (!proto.denormalizer.precompiled_charsmap.empty()) {
    fail(path,
         ": unsupported SentencePiece model: denormalizer_spec.precompiled_charsmap is "
         "not empty (",
         proto.denormalizer.precompiled_charsmap.size(),
         " bytes); slmc implements only the identity denormalizer");
  }
  SLMC_CHECK(!pieces_.empty(), path, ": SentencePiece model has no pieces");
  SLMC_CHECK(pieces_.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()), path,
             ": SentencePiece model has too many pieces (", pieces_.size(), ")");

  // ModelInterface::InitializePieces.
  constexpr size_t kMaxPieceSize = 8000;
  byte_ids_.fill(-1);
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const SpmPiece& sp = pieces_[i];
    const int32_t id = static_cast<int32_t>(i);
    SLMC_CHECK(sp.piece.size() < kMaxPieceSize, path, ": SentencePiece model: pieces[", i,
               "] is too long (", sp.piece.size(), " bytes)");
    SLMC_CHECK(!sp.piece.empty(), path, ": SentencePiece model: pieces[", i, "] is empty");
    SLMC_CHECK(sp.piece.find('\0') == std::string::npos, path, ": SentencePiece model: pieces[", i,
               "] ", quoted_excerpt(sp.piece), " contains a NUL byte");
    const bool is_normal = sp.type == SpmPieceType::kNormal ||
                           sp.type == SpmPieceType::kUserDefined ||
                           sp.type == SpmPieceType::kUnused;
    PieceMap& map = is_normal ? pieces_map_ : reserved_map_;
    const int32_t first = map.insert(sp.piece, id);
    SLMC_CHECK(first == id, path, ": SentencePiece model: pieces[", i, "] ", quoted_excerpt(sp.piece),
               " is already defined as pieces[", first, "]");
    if (sp.type == SpmPieceType::kUserDefined) {
      user_defined_[static_cast<uint8_t>(sp.piece[0])].push_back(sp.piece);
      has_user_defined_ = true;
    }
    if (sp.type == SpmPieceType::kUnused) has_unused_ = true;
    if (sp.type == SpmPieceType::kUnknown) {
      SLMC_CHECK(unk_id_ < 0, path, ": SentencePiece model: pieces[", i,
                 "] is a second UNKNOWN piece (the first is pieces[", unk_id_, "])");
      unk_id_ = id;
    }
    if (sp.type == SpmPieceType::kByte) {
      SLMC_CHECK(byte_fallback_, path, ": SentencePiece model: byte piece pieces[", i, "] ",
                 quoted_excerpt(sp.piece), " found although trainer_spec.byte_fallback is false");
      const int b = piece_to_byte(sp.piece);
      SLMC_CHECK(b >= 0, path, ": SentencePiece model: byte piece pieces[", i, "] ",
                 quoted_excerpt(sp.piece), " is not of the form <0xXX>");
      byte_ids_[b] = id;
    }
  }
  SLMC_CHECK(unk_id_ >= 0, path, ": SentencePiece model has no UNKNOWN piece");
  if (byte_fallback_) {
    for (int b = 0; b < 256; ++b) {
      SLMC_CHECK(byte_ids_[b] >= 0, path,
                 ": SentencePiece model: trainer_spec.byte_fallback is "
                 "true but there is no byte piece <0x",
                 "0123456789ABCDEF"[b >> 4], "0123456789ABCDEF"[b & 15], ">");
    }
  }
  pieces_map_.for_each([&](std::string_view piece, int32_t) {
    for (size_t k = 0; k + 1 < piece.size(); ++k) {
      joinable_[static_cast<uint8_t>(piece[k]) * 256 + static_cast<uint8_t>(piece[k + 1])] = true;
    }
  });
  for (auto& bucket : user_defined_) {
    std::stable_sort(bucket.begin(), bucket.end(),
                     [](std::string_view a, std::string_view b) { return a.size() > b.size(); });
  }

  // SentencePieceProcessor::bos_id()/eos_id(): the id of bos_piece/eos_piece if it is CONTROL.
  // An empty piece name means the default (ModelInterface's RETURN_PIECE).
  const auto control_id = [&](const std::string& name, const char* fallback) {
    const int32_t id = piece_to_id(name.empty() ? std::string_view(fallback) : name);
    return pieces_[id].type == SpmPieceType::kControl ? id : -1;
  };
  bos_id_ = control_id(proto.bos_piece, "<s>");
  eos_id_ = control_id(proto.eos_piece, "</s>");
}

void SentencePieceTokenizer::id_check(int32_t id) const {
  SLMC_CHECK(id >= 0 && static_cast<size_t>(id) < pieces_.size(), source_, ": token id ", id,
             " is out of range for a vocabulary of ", pieces_.size());
}

SpmPieceType SentencePieceTokenizer::type(int32_t id) const {
  id_check(id);
  return pieces_[id].type;
}

float SentencePieceTokenizer::score(int32_t id) const {
  id_check(id);
  return pieces_[id].score;
}

std::string SentencePieceTokenizer::piece(int32_t id) const {
  id_check(id);
  return pieces_[id].piece;
}

int32_t SentencePieceTokenizer::piece_to_id(std::string_view piece) const {
  if (const int32_t id = reserved_map_.find(piece); id >= 0) return id;
  if (const int32_t id = pieces_map_.find(piece); id >= 0) return id;
  return unk_id_;
}

size_t SentencePieceTokenizer::prefix_match(std::string_view s, bool* found) const {
  if (has_user_defined_) {
    for (std::string_view sym : user_defined_[static_cast<uint8_t>(s[0])]) {
      if (starts_with(s, sym)) {
        *found = true;
        return sym.size();
      }
    }
  }
  *found = false;
  return std::min(s.size(), one_char_len(s[0]));
}

std::pair<std::string_view, size_t> SentencePieceTokenizer::normalize_prefix(
    std::string_view input) const {
  if (has_user_defined_) {
    bool found = false;
    const size_t n = prefix_match(input, &found);
    if (found) return {input.substr(0, n), n};
  }
  size_t mblen = 0;
  if (!is_valid_decode_utf8(input, &mblen)) return {kReplacementChar, 1};
  return {input.substr(0, mblen), mblen};
}

std::string SentencePieceTokenizer::normalize(std::string_view input) const {
  std::string out;
  if (input.empty()) return out;
  const SpmNormalizerSpec& spec = normalizer_;

  if (spec.remove_extra_whitespaces) {  // heading spaces
    while (!input.empty()) {
      const auto p = normalize_prefix(input);
      if (p.first != " ") break;
      input.remove_prefix(p.second);
    }
  }
  if (input.empty()) return out;

  out.reserve(input.size() * 3 / 2 + 8);
  const std::string_view space = spec.escape_whitespaces ? kSpaceSymbol : std::string_view(" ");
  if (!treat_whitespace_as_suffix_ && spec.add_dummy_prefix) out.append(space);

  bool is_prev_space = spec.remove_extra_whitespaces;
  while (!input.empty()) {
    const auto p = normalize_prefix(input);
    std::string_view sp = p.first;
    while (is_prev_space && !sp.empty() && sp[0] == ' ') sp.remove_prefix(1);
    if (!sp.empty()) {
      for (const char c : sp) {
        if (c == ' ' && spec.escape_whitespaces) {
          out.append(kSpaceSymbol);
        } else {
          out.push_back(c);
        }
      }
      is_prev_space = sp.back() == ' ';
    }
    input.remove_prefix(p.second);
    if (!spec.remove_extra_whitespaces) is_prev_space = false;
  }

  if (spec.remove_extra_whitespaces) {  // trailing spaces
    while (ends_with(out, space)) out.resize(out.size() - space.size());
  }
  if (treat_whitespace_as_suffix_ && spec.add_dummy_prefix) out.append(space);
  return out;
}

std::vector<std::pair<std::string_view, int32_t>> SentencePieceTokenizer::encode_normalized(
    std::string_view normalized) const {
  // bpe::Model::SampleEncode with alpha = 0 (what Encode calls).
  struct Symbol {
    int32_t prev;  // -1 at the start
    int32_t next;  // -1 at the end
    const char* data;
    uint32_t size;  // 0 once merged into its left neighbour
    bool freeze;    // a user-defined symbol: never merged
  };
  struct SymbolPair {
    int32_t left;
    int32_t right;
    float score;
    size_t size;  // bytes of the merged piece: detects pairs made stale by other merges
  };
  // The highest score first; among equal scores the leftmost.
  struct Worse {
    bool operator()(const SymbolPair& a, const SymbolPair& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };

  std::vector<std::pair<std::string_view, int32_t>> out;
  if (normalized.empty()) return out;
  SLMC_CHECK(normalized.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()), source_,
             ": text of ", normalized.size(), " bytes is too long to encode at once");

  std::vector<Symbol> symbols;
  symbols.reserve(normalized.size());
  std::priority_queue<SymbolPair, std::vector<SymbolPair>, Worse> agenda;
  // Merged UNUSED piece -> the two symbols it was made of, to undo the merge at the end.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;

  const auto view = [&](int32_t i) { return std::string_view(symbols[i].data, symbols[i].size); };
  const auto maybe_add_pair = [&](int32_t left, int32_t right) {
    if (left == -1 || right == -1 || symbols[left].freeze || symbols[right].freeze) return;
    const std::string_view piece(symbols[left].data, symbols[left].size + symbols[right].size);
    const int32_t id = pieces_map_.find(piece);
    if (id < 0) return;
    const SpmPiece& p = pieces_[id];
    agenda.push(SymbolPair{left, right, p.score, piece.size()});
    if (p.type == SpmPieceType::kUnused) rev_merge[piece] = {view(left), view(right)};
  };

  std::string_view rest = normalized;
  int32_t index = 0;
  while (!rest.empty()) {
    bool found = false;
    const size_t n = prefix_match(rest, &found);
    Symbol s{index == 0 ? -1 : index - 1, -1, rest.data(), static_cast<uint32_t>(n), found};
    rest.remove_prefix(n);
    s.next = rest.empty() ? -1 : index + 1;
    ++index;
    symbols.push_back(s);
  }

  // sentencepiece pushes every adjacent pair, then merges until the agenda is empty. Merges on
  // either side of a boundary no merge can cross do not interact, so draining the agenda one
  // segment between such boundaries at a time gives the same pieces, with a heap that stays small
  // (and in cache) instead of one over the whole text. Not with UNUSED pieces: their rev_merge
  // entries are last-write-wins across the whole text, so the order of pushes must stay global.
  const bool split = !has_unused_;
  const int32_t n = static_cast<int32_t>(symbols.size());
  for (int32_t i = 1; i <= n; ++i) {
    if (i < n) {
      const Symbol& a = symbols[i - 1];
      const Symbol& b = symbols[i];
      const bool crossable = joinable_[static_cast<uint8_t>(a.data[a.size - 1]) * 256 +
                                       static_cast<uint8_t>(b.data[0])];
      if (crossable || !split) {
        maybe_add_pair(i - 1, i);
        continue;
      }
    }
    while (!agenda.empty()) {
      const SymbolPair top = agenda.top();
      agenda.pop();
      Symbol& left = symbols[top.left];
      Symbol& right = symbols[top.right];
      if (left.size == 0 || right.size == 0 || left.size + right.size != top.size) continue;
      left.size += right.size;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.left;
      right.size = 0;
      maybe_add_pair(left.prev, top.left);
      maybe_add_pair(top.left, left.next);
    }
  }

  // Resegments merged UNUSED pieces into the pieces they were made of, left to right.
  std::vector<std::string_view> stack;
  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    stack.push_back(view(i));
    while (!stack.empty()) {
      const std::string_view w = stack.back();
      stack.pop_back();
      const int32_t id = piece_to_id(w);
      if (!has_unused_ || pieces_[id].type != SpmPieceType::kUnused) {
        out.emplace_back(w, id);
        continue;
      }
      const auto p = rev_merge.find(w);
      if (p == rev_merge.end()) {
        out.emplace_back(w, id);
        continue;
      }
      stack.push_back(p->second.second);
      stack.push_back(p->second.first);
    }
  }
  return out;
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text) const {
  const std::string normalized = normalize(text);
  const auto pieces = encode_normalized(normalized);
  // SentencePieceProcessor::PopulateSentencePieceText.
  std::vector<int32_t> ids;
  ids.reserve(pieces.size());
  bool is_prev_unk = false;
  for (const auto& [w, id] : pieces) {
    const SpmPieceType t = pieces_[id].type;
    const bool is_unk = t == SpmPieceType::kUnknown;
    if (t == SpmPieceType::kControl) {
      ids.push_back(id);
    } else if (is_unk && byte_fallback_) {
      for (const char c : w) ids.push_back(byte_ids_[static_cast<uint8_t>(c)]);
    } else if (!(is_prev_unk && is_unk)) {  // a run of unknowns becomes one unknown
      ids.push_back(id);
    }
    is_prev_unk = is_unk;
  }
  return ids;
}

std::string SentencePieceTokenizer::decode_piece(int32_t prev, int32_t id) const {
  id_check(id);
  const SpmPiece& p = pieces_[id];
  switch (p.type) {
    case SpmPieceType::kControl:
    case SpmPieceType::kUnknown:
      return "";
    case SpmPieceType::kByte:
      return std::string(1, static_cast<char>(piece_to_byte(p.piece)));
    default:
      break;
  }
  std::string_view s = p.piece;
  if (bos_id_ >= 0 && prev == bos_id_ && starts_with(s, kSpaceSymbol)) {
    s.remove_prefix(kSpaceSymbol.size());
  }
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    if (starts_with(s, kSpaceSymbol)) {
      out.push_back(' ');
      s.remove_prefix(kSpaceSymbol.size());
    } else {
      out.push_back(s[0]);
      s.remove_prefix(1);
    }
  }
  return out;
}

std::unique_ptr<SentencePieceTokenizer> load_sentencepiece(std::string_view bytes,
                                                           const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(parse_spm_model_proto(bytes, path), path);
}

}  // namespace slmc
