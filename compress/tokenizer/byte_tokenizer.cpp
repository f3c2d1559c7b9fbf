// The byte-level tokenizer of slmc's own models, and its Hugging Face tokenizer.json form.
#include <array>
#include <nlohmann/json.hpp>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/json_util.h"
#include "compress/tokenizer/tokenizer.h"
#include "compress/tokenizer/tokenizer_internal.h"

namespace slmc {

namespace tokenizer_internal {

const std::array<std::string, 256>& byte_alphabet() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      const uint32_t cp = printable ? b : 256 + n++;
      std::string s;
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else {  // every code point here is below U+0800: two bytes
        s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
      }
      t[b] = s;
    }
    return t;
  }();
  return table;
}

bool byte_level_bytes(std::string_view token, std::string* out) {
  // The alphabet reversed: code point (all below U+0144) -> byte, -1 outside the alphabet.
  static const std::array<int16_t, 0x144> byte_of = [] {
    std::array<int16_t, 0x144> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) {
      const std::string& c = byte_alphabet()[static_cast<size_t>(b)];
      const uint32_t cp = c.size() == 1 ? static_cast<uint8_t>(c[0])
                                        : ((static_cast<uint8_t>(c[0]) & 0x1fu) << 6) |
                                              (static_cast<uint8_t>(c[1]) & 0x3fu);
      t[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  const size_t start = out->size();
  for (size_t i = 0; i < token.size();) {
    const auto c0 = static_cast<uint8_t>(token[i]);
    uint32_t cp = c0;
    size_t len = 1;
    if (c0 >= 0x80) {  // the alphabet's other characters have two bytes
      if (c0 < 0xc0 || c0 >= 0xe0 || i + 1 >= token.size()) {
        out->resize(start);
        return false;
      }
      cp = ((c0 & 0x1fu) << 6) | (static_cast<uint8_t>(token[i + 1]) & 0x3fu);
      len = 2;
    }
    if (cp >= byte_of.size() || byte_of[cp] < 0) {
      out->resize(start);
      return false;
    }
    out->push_back(static_cast<char>(byte_of[cp]));
    i += len;
  }
  return true;
}

}  // namespace tokenizer_internal

namespace {

using tokenizer_internal::byte_alphabet;

constexpr int32_t kByteBos = 256;
constexpr int32_t kByteEos = 257;
constexpr int32_t kByteVocab = 258;
constexpr const char* kBosPiece = "<s>";
constexpr const char* kEosPiece = "</s>";

class ByteTokenizer final : public Tokenizer {
 public:
  explicit ByteTokenizer(const std::string& source) { source_ = source; }

  std::string kind() const override { return "byte"; }
  int64_t vocab_size() const override { return kByteVocab; }
  int32_t bos_id() const override { return kByteBos; }
  int32_t eos_id() const override { return kByteEos; }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<uint8_t>(text[i]);
    return ids;
  }

  // Every token but BOS/EOS is a raw byte, so nothing is stripped after BOS (as run.c leaves
  // its <0xXX> byte tokens alone).
  std::string decode_piece(int32_t prev, int32_t id) const override {
    check(id);
    if (id >= 256) return "";
    return std::string(1, static_cast<char>(id));
  }

  // The vocabulary key of tokenizer.json: the byte's GPT-2 alphabet character, "<s>", "</s>".
  std::string piece(int32_t id) const override {
    check(id);
    if (id == kByteBos) return kBosPiece;
    if (id == kByteEos) return kEosPiece;
    return byte_alphabet()[id];
  }

 private:
  void check(int32_t id) const {
    SLMC_CHECK(id >= 0 && id < kByteVocab, source_.empty() ? "byte tokenizer" : source_,
               ": token id ", id, " is out of range for a vocabulary of ", kByteVocab);
  }
};

nlohmann::ordered_json added_token(int32_t id, const char* content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

nlohmann::ordered_json byte_level(bool add_prefix_space) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", add_prefix_space},
          {"trim_offsets", true},
          {"use_regex", true}};
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(""); }

void write_byte_tokenizer_json(const std::string& path) {
  using nlohmann::ordered_json;
  ordered_json vocab = ordered_json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_alphabet()[b]] = b;
  vocab[kBosPiece] = kByteBos;
  vocab[kEosPiece] = kByteEos;
  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = {added_token(kByteBos, kBosPiece), added_token(kByteEos, kEosPiece)};
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = byte_level(false);
  j["post_processor"] = nullptr;
  j["decoder"] = byte_level(false);
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", ordered_json::array()}};
  write_file_atomically(path, j.dump(2) + "\n");
}

namespace tokenizer_internal {
namespace {

// Why `j` is not slmc's byte-level tokenizer.json, or "" if it is.
std::string byte_json_mismatch(const nlohmann::json& j) {
  using nlohmann::json;
  const auto is_null_or_absent = [&](const char* key) {
    return !j.contains(key) || j[key].is_null();
  };
  const auto type_of = [](const json& o) -> std::string {
    if (!o.is_object()) return o.is_null() ? "null" : "not an object";
    const auto it = o.find("type");
    if (it == o.end() || !it->is_string()) return "without a type";
    return quote(it->get<std::string>());
  };
  if (!j.is_object()) return "the top level is not an object";
  if (!j.contains("model") || !j["model"].is_object()) return "no \"model\" object";
  const json& model = j["model"];
  if (type_of(model) != "\"BPE\"") return "model.type is " + type_of(model) + " (expected \"BPE\")";
  if (!model.contains("merges") || !model["merges"].is_array()) return "model.merges is not a list";
  if (!model["merges"].empty()) {
    return "model.merges has " + std::to_string(model["merges"].size()) +
           " entries (expected none)";
  }
  if (model.contains("byte_fallback") && model["byte_fallback"] != false) {
    return "model.byte_fallback is set";
  }
  if (!model.contains("vocab") || !model["vocab"].is_object())
    return "model.vocab is not an object";
  const json& vocab = model["vocab"];
  for (const auto& [key, value] : vocab.items()) {
    int64_t want = -1;
    if (key == kBosPiece) want = kByteBos;
    if (key == kEosPiece) want = kByteEos;
    for (int b = 0; b < 256 && want < 0; ++b) {
      if (key == byte_alphabet()[b]) want = b;
    }
    if (want < 0) return "model.vocab has " + quote(key) + ", not a GPT-2 byte character";
    if (!value.is_number_integer() || value.get<int64_t>() != want) {
      return "model.vocab maps " + quote(key) + " to " + value.dump() + " (expected " +
             std::to_string(want) + ")";
    }
  }
  for (int b = 0; b < 256; ++b) {
    if (!vocab.contains(byte_alphabet()[b])) {
      return "model.vocab lacks byte " + std::to_string(b) + " " + quote(byte_alphabet()[b]);
    }
  }
  if (!j.contains("added_tokens") || !j["added_tokens"].is_array()) {
    return "added_tokens is not a list";
  }
  bool has_bos = false;
  bool has_eos = false;
  for (const json& t : j["added_tokens"]) {
    if (!t.is_object() || !t.contains("id") || !t.contains("content")) {
      return "an added_tokens entry lacks id or content";
    }
    if (t["id"] == kByteBos && t["content"] == kBosPiece) {
      has_bos = true;
    } else if (t["id"] == kByteEos && t["content"] == kEosPiece) {
      has_eos = true;
    } else {
      return "added token " + t["content"].dump() + " with id " + t["id"].dump() +
             " (expected only <s> 256 and </s> 257)";
    }
  }
  if (!has_bos || !has_eos) return "added_tokens lacks <s> (256) or </s> (257)";
  if (!is_null_or_absent("normalizer")) return "it has a normalizer";
  if (!j.contains("pre_tokenizer") || type_of(j["pre_tokenizer"]) != "\"ByteLevel\"") {
    return "pre_tokenizer is " +
           (j.contains("pre_tokenizer") ? type_of(j["pre_tokenizer"]) : std::string("absent")) +
           " (expected ByteLevel)";
  }
  if (j["pre_tokenizer"].contains("add_prefix_space") &&
      j["pre_tokenizer"]["add_prefix_space"] != false) {
    return "pre_tokenizer.add_prefix_space is not false";
  }
  if (!j.contains("decoder") || type_of(j["decoder"]) != "\"ByteLevel\"") {
    return "decoder is not ByteLevel";
  }
  if (!is_null_or_absent("post_processor") && type_of(j["post_processor"]) != "\"ByteLevel\"") {
    return "post_processor is " + type_of(j["post_processor"]) + " (expected none)";
  }
  return "";
}

}  // namespace

bool is_byte_tokenizer_json(std::string_view bytes) {
  try {
    return byte_json_mismatch(checked_json::parse(bytes, "tokenizer.json")).empty();
  } catch (const Error&) {
    return false;  // not even JSON: the caller's full reader reports why
  }
}

std::unique_ptr<Tokenizer> load_byte_tokenizer_json(std::string_view bytes,
                                                    const std::string& path) {
  const nlohmann::json j = checked_json::parse(bytes, path);
  const std::string why = byte_json_mismatch(j);
  if (!why.empty()) {
    fail(path, ": unsupported tokenizer.json: ", why,
         " (tokenizer kind \"byte\" holds only the byte-level tokenizer.json slmc writes; other "
         "tokenizer.json files are kind \"hf\")");
  }
  return std::make_unique<ByteTokenizer>(path);
}

}  // namespace tokenizer_internal
}  // namespace slmc
