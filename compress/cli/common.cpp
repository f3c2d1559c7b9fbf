#include "compress/cli/common.h"

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/io/h5.h"
#include "export/format/gguf_model.h"
#include "export/format/slm_format.h"

namespace slmc::cli {

std::unique_ptr<Tokenizer> resolve_tokenizer(const std::string& model_path,
                                             const std::string& explicit_path, bool required) {
  if (!explicit_path.empty()) return load_tokenizer(explicit_path);
  if (format::is_slm_file(model_path)) {  // an .slm carries its tokenizer: nothing beside counts
    const format::SlmFile f(model_path);
    if (!f.tokenizer_kind().empty()) {
      const std::string bytes(reinterpret_cast<const char*>(f.tokenizer_data()),
                              f.tokenizer_bytes());
      return load_tokenizer_from_bytes(f.tokenizer_kind(), bytes,
                                       model_path + " (embedded tokenizer)");
    }
    SLMC_CHECK(!required, model_path, ": the .slm file embeds no tokenizer; pass --tokenizer");
    return nullptr;
  }
  if (format::is_gguf_file(model_path)) {  // a GGUF carries its vocabulary
    if (auto t = format::gguf_tokenizer(format::GgufFile(model_path))) return t;
    SLMC_CHECK(!required, model_path, ": the GGUF file has no tokenizer; pass --tokenizer");
    return nullptr;
  }
  const std::string found = find_tokenizer_beside(model_path);
  if (!found.empty()) return load_tokenizer(found);
  SLMC_CHECK(!required, model_path,
             ": no tokenizer found beside the model (tokenizer.model, tokenizer.json, "
             "tokenizer.bin, tok*.model, tok*.bin); pass --tokenizer");
  return nullptr;
}

namespace {
void check_ids(const std::vector<int32_t>& ids, int64_t vocab, const std::string& path) {
  for (size_t i = 0; i < ids.size(); ++i)
    SLMC_CHECK(ids[i] >= 0 && ids[i] < vocab, path, ": token id ", ids[i], " at position ", i,
               " is outside the model's vocab [0, ", vocab, ")");
}

std::vector<int32_t> tokenize_text(const std::string& path, const Tokenizer* tok) {
  SLMC_CHECK(tok != nullptr, path, ": text data needs a tokenizer; pass --tokenizer");
  const std::string text = read_file(path);
  SLMC_CHECK(!text.empty(), path, ": empty text file");
  return tok->encode(text);
}
}  // namespace

std::vector<int32_t> load_token_stream(const std::string& path, const Tokenizer* tok,
                                       int64_t vocab) {
  std::vector<int32_t> ids = is_hdf5_file(path) ? read_tokens_h5(path).tokens : tokenize_text(path, tok);
  SLMC_CHECK(!ids.empty(), path, ": no tokens");
  check_ids(ids, vocab, path);
  return ids;
}

std::vector<Window> load_eval_windows(const std::string& path, const Tokenizer* tok, int64_t vocab,
                                      int64_t ctx, int32_t bos) {
  if (is_hdf5_file(path)) {
    TokenData d = read_tokens_h5(path);
    check_ids(d.tokens, vocab, path);
    if (d.rows > 0) {
      SLMC_CHECK(d.cols >= 2, path, ": rows of `tokens` need at least 2 tokens, got ", d.cols);
      std::vector<Window> out;
      for (int64_t r = 0; r < d.rows; ++r) {
        const int32_t* row = d.tokens.data() + r * d.cols;
        const int64_t len = std::min(d.cols, ctx + 1);
        Window w;
        w.input.assign(row, row + len - 1);
        w.targets.assign(row + 1, row + len);
        out.push_back(std::move(w));
      }
      return out;
    }
    SLMC_CHECK(!d.tokens.empty(), path, ": dataset `tokens` is empty");
    return bos_windows(d.tokens, ctx, bos);
  }
  return bos_windows(load_token_stream(path, tok, vocab), ctx, bos);
}

}  // namespace slmc::cli
