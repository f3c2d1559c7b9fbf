#include "compress/tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/tokenizer/hf_tokenizer.h"
#include "compress/tokenizer/llama2c_tokenizer.h"
#include "compress/tokenizer/sentencepiece.h"
#include "compress/tokenizer/tokenizer_internal.h"

namespace slmc {

namespace fs = std::filesystem;

namespace tokenizer_internal {

std::string quote(std::string_view s, size_t max_bytes) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max_bytes; ++i) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      out += str_cat("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));  // UTF-8 passes through; it cannot break a line
    }
  }
  if (s.size() > max_bytes) out += "...";
  out += "\"";
  return out;
}

}  // namespace tokenizer_internal

std::vector<int32_t> Tokenizer::eos_ids() const {
  const int32_t e = eos_id();
  return e >= 0 ? std::vector<int32_t>{e} : std::vector<int32_t>{};
}

std::vector<int32_t> Tokenizer::special_ids() const {
  std::vector<int32_t> ids;
  for (const int32_t id : {bos_id(), eos_id()})
    if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  int32_t prev = bos_id();
  for (const int32_t id : ids) {
    out += decode_piece(prev, id);
    prev = id;
  }
  return out;
}

namespace {

std::string lower_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The kind of tokenizer file `path` holds (`bytes` not empty): by extension, else by content.
// "json" is a tokenizer.json of either kind "byte" or "hf".
std::string detect_kind(const std::string& path, const std::string& bytes) {
  const std::string ext = lower_extension(path);
  if (ext == ".model") return "sentencepiece";
  if (ext == ".json") return "json";
  if (ext == ".bin") return "llama2c";
  // Another name: tell the formats apart by their first byte. JSON starts with '{' (after
  // blanks); a ModelProto starts with its first piece, tag 0x0a (field 1, length-delimited).
  const size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && bytes[first] == '{') return "json";
  if (bytes[0] == '\x0a') return "sentencepiece";
  return "llama2c";
}

// slmc's byte-level tokenizer.json (kind "byte", kept so that files and .slm models written
// before kind "hf" load as they did), or any other tokenizer.json (kind "hf", with the config
// files beside it). The byte-level file is a few kilobytes: a larger one is not it.
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path, const std::string& bytes) {
  constexpr size_t kByteJsonMaxBytes = 64 * 1024;
  if (bytes.size() <= kByteJsonMaxBytes && tokenizer_internal::is_byte_tokenizer_json(bytes)) {
    return load_tokenizer_from_bytes("byte", bytes, path);
  }
  std::string dir = fs::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  return load_tokenizer_from_bytes(
      "hf", make_hf_tokenizer_blob(bytes, HfTokenizerConfig::read_dir(dir)), path);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  SLMC_CHECK(!path.empty(), "tokenizer path is empty");
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  SLMC_CHECK(fs::exists(st), path, ": tokenizer file does not exist");
  SLMC_CHECK(!fs::is_directory(st), path,
             ": is a directory, not a tokenizer file (.model, tokenizer.bin or tokenizer.json)");
  const std::string bytes = read_file(path);
  SLMC_CHECK(!bytes.empty(), path, ": tokenizer file is empty");

  const std::string kind = detect_kind(path, bytes);
  if (kind == "json") return load_tokenizer_json(path, bytes);
  return load_tokenizer_from_bytes(kind, bytes, path);
}

std::unique_ptr<Tokenizer> load_tokenizer_from_bytes(const std::string& kind,
                                                     const std::string& bytes,
                                                     const std::string& origin) {
  std::unique_ptr<Tokenizer> tok;
  if (kind == "sentencepiece") {
    SLMC_CHECK(!bytes.empty(), origin, ": SentencePiece tokenizer has no bytes");
    tok = load_sentencepiece(bytes, origin);
  } else if (kind == "llama2c") {
    tok = load_llama2c_tokenizer(bytes, origin);
  } else if (kind == "byte") {
    tok = bytes.empty() ? make_byte_tokenizer()
                        : tokenizer_internal::load_byte_tokenizer_json(bytes, origin);
    tok->source_ = origin;
  } else if (kind == "hf") {
    tok = load_hf_tokenizer_blob(bytes, origin);
    tok->source_ = origin;
  } else {
    std::string known;
    for (const char* k : kTokenizerKinds) known += (known.empty() ? "" : ", ") + std::string(k);
    fail(origin, ": unknown tokenizer kind ", tokenizer_internal::quote(kind), " (known: ", known,
         ")");
  }
  tok->blob_ = bytes;
  return tok;
}

std::string find_tokenizer_beside(const std::string& model_path) {
  if (model_path.empty()) return "";
  std::error_code ec;
  fs::path dir = fs::path(model_path);
  if (!fs::is_directory(dir, ec)) dir = dir.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) return "";

  for (const char* name : {"tokenizer.model", "tokenizer.json", "tokenizer.bin"}) {
    const fs::path p = dir / name;
    if (is_file(p)) return p.string();
  }
  // tok*.model, then tok*.bin, each in name order so the choice does not depend on the
  // directory's listing order.
  std::vector<std::string> models;
  std::vector<std::string> bins;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("tok", 0) != 0 || !is_file(it->path())) continue;
    const std::string ext = lower_extension(name);
    if (ext == ".model") models.push_back(it->path().string());
    if (ext == ".bin") bins.push_back(it->path().string());
  }
  std::sort(models.begin(), models.end());
  std::sort(bins.begin(), bins.end());
  if (!models.empty()) return models.front();
  if (!bins.empty()) return bins.front();
  return "";
}

}  // namespace slmc
