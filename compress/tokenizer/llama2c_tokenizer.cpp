#include "compress/tokenizer/llama2c_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <queue>

#include "compress/core/error.h"
#include "compress/tokenizer/tokenizer_internal.h"

namespace slmc {


namespace {

int32_t read_i32(std::string_view b, size_t off) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<uint8_t>(b[off + i])) << (8 * i);
  return static_cast<int32_t>(v);
}

float read_f32(std::string_view b, size_t off) {
  const int32_t v = read_i32(b, off);
  float f;
  std::memcpy(&f, &v, sizeof(f));
  return f;
}

// run.c's sscanf(piece, "<0x%02hhX>", ...) on the pieces llama2.c's export writes: "<0x" two hex
// digits ">". Returns the byte, or -1.
int byte_piece_value(std::string_view p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = p[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

// run.c starts best_score at -1e10: merges scoring no more than that never happen.
constexpr float kNoMergeScore = -1e10f;

}  // namespace

Llama2cTokenizer::Llama2cTokenizer(std::vector<std::string> vocab, std::vector<float> scores,
                                   int32_t max_token_length, const std::string& path)
    : vocab_(std::move(vocab)), scores_(std::move(scores)), max_token_length_(max_token_length) {
  source_ = path;
  SLMC_CHECK(vocab_.size() == scores_.size(), path, ": llama2.c tokenizer: ", vocab_.size(),
             " tokens but ", scores_.size(), " scores");
  SLMC_CHECK(vocab_.size() >= 3, path, ": llama2.c tokenizer has ", vocab_.size(),
             " tokens; it needs at least <unk>, BOS and EOS");
  SLMC_CHECK(vocab_.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()), path,
             ": llama2.c tokenizer has too many tokens (", vocab_.size(), ")");
  // The header's max_token_length is a claim: every token was checked against it on load, and
  // the encoder sizes its buffers from the longest token actually present, never from the claim
  // (a 4 KB file claiming 1.4 GB would otherwise make every encode() reserve 2.8 GB).
  int32_t longest = 0;
  for (const std::string& v : vocab_) {
    SLMC_CHECK(v.size() <= static_cast<size_t>(max_token_length), path, ": llama2.c tokenizer: token ",
               quoted_excerpt(v), " of ", v.size(), " bytes is longer than max_token_length ",
               max_token_length);
    longest = std::max(longest, static_cast<int32_t>(v.size()));
  }
  max_token_length_ = longest;
  for (size_t i = 0; i < vocab_.size(); ++i) {
    const std::string& v = vocab_[i];
    ids_.insert(v, static_cast<int32_t>(i));  // the first id wins
    for (size_t k = 0; k + 1 < v.size(); ++k) {
      joinable_[static_cast<uint8_t>(v[k]) * 256 + static_cast<uint8_t>(v[k + 1])] = true;
    }
  }
}

void Llama2cTokenizer::id_check(int32_t id) const {
  SLMC_CHECK(id >= 0 && static_cast<size_t>(id) < vocab_.size(), source_, ": token id ", id,
             " is out of range for a vocabulary of ", vocab_.size());
}

std::string Llama2cTokenizer::piece(int32_t id) const {
  id_check(id);
  return vocab_[id];
}

float Llama2cTokenizer::score(int32_t id) const {
  id_check(id);
  return scores_[id];
}

int32_t Llama2cTokenizer::lookup(std::string_view s) const { return ids_.find(s); }

std::vector<int32_t> Llama2cTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> tokens;
  if (text.empty()) return tokens;
  SLMC_CHECK(text.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()), source_,
             ": text of ", text.size(), " bytes is too long to encode at once");
  const int32_t dummy_prefix = lookup(" ");
  SLMC_CHECK(dummy_prefix >= 0, source_,
             ": llama2.c tokenizer has no \" \" token for the dummy prefix run.c adds");
  tokens.reserve(text.size() + 1);
  tokens.push_back(dummy_prefix);

  // One token per UTF-8 character: a lead byte starts a character, up to 3 continuation bytes
  // extend it; a character missing from the vocabulary becomes its bytes.
  char buf[4];
  size_t len = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c & 0xc0) != 0x80) len = 0;
    buf[len++] = c;
    const char next = i + 1 < text.size() ? text[i + 1] : '\0';
    if ((next & 0xc0) == 0x80 && len < 4) continue;
    const int32_t id = lookup(std::string_view(buf, len));
    if (id >= 0) {
      tokens.push_back(id);
    } else {
      for (size_t k = 0; k < len; ++k) {
        const int32_t b = static_cast<uint8_t>(buf[k]) + kByteOffset;
        SLMC_CHECK(b < static_cast<int32_t>(vocab_.size()), source_, ": llama2.c tokenizer of ",
                   vocab_.size(), " tokens has no byte token for 0x",
                   "0123456789abcdef"[(b - kByteOffset) >> 4],
                   "0123456789abcdef"[(b - kByteOffset) & 15], " (id ", b, ")");
        tokens.push_back(b);
      }
    }
    len = 0;
  }

  // run.c merges, each round, the adjacent pair whose concatenation is the best-scoring token,
  // the leftmost among equals, rescanning the whole sequence (quadratic). A priority queue of
  // candidate pairs, highest score then leftmost first, makes the same choices: it holds every
  // current pair, and an entry whose symbols changed since it was pushed is skipped. A merged
  // token's bytes are its parts' bytes, so no merge can cross a boundary where the last byte
  // before and the first byte after never follow each other in any token: the queue is drained
  // at each such boundary, which keeps it small and gives the same merges.
  const int32_t n = static_cast<int32_t>(tokens.size());
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    uint32_t version;  // bumped whenever the symbol changes
    bool alive;
  };
  struct Pair {
    float score;
    int32_t left;
    int32_t right;
    int32_t merged;
    uint32_t left_version;
    uint32_t right_version;
  };
  struct Worse {
    bool operator()(const Pair& a, const Pair& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };
  std::vector<Symbol> sym(n);
  for (int32_t i = 0; i < n; ++i)
    sym[i] = Symbol{tokens[i], i - 1, i + 1 < n ? i + 1 : -1, 0, true};
  std::priority_queue<Pair, std::vector<Pair>, Worse> agenda;
  std::string merged;
  merged.reserve(2 * static_cast<size_t>(max_token_length_) + 8);
  const auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    merged.assign(vocab_[sym[l].id]);
    merged.append(vocab_[sym[r].id]);
    const int32_t id = lookup(merged);
    if (id < 0 || !(scores_[id] > kNoMergeScore)) return;  // also drops NaN, as run.c does
    agenda.push(Pair{scores_[id], l, r, id, sym[l].version, sym[r].version});
  };
  for (int32_t i = 1; i <= n; ++i) {
    if (i < n) {
      const std::string& a = vocab_[sym[i - 1].id];
      const std::string& b = vocab_[sym[i].id];
      if (a.empty() || b.empty() ||
          joinable_[static_cast<uint8_t>(a.back()) * 256 + static_cast<uint8_t>(b[0])]) {
        try_pair(i - 1, i);
        continue;
      }
    }
    while (!agenda.empty()) {
      const Pair p = agenda.top();
      agenda.pop();
      Symbol& l = sym[p.left];
      Symbol& r = sym[p.right];
      if (!l.alive || !r.alive || l.next != p.right || l.version != p.left_version ||
          r.version != p.right_version) {
        continue;
      }
      l.id = p.merged;
      ++l.version;
      r.alive = false;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = p.left;
      try_pair(l.prev, p.left);
      try_pair(p.left, l.next);
    }
  }

  std::vector<int32_t> out;
  out.reserve(tokens.size());
  for (int32_t i = 0; i != -1; i = sym[i].next) out.push_back(sym[i].id);
  return out;
}

std::string Llama2cTokenizer::decode_piece(int32_t prev, int32_t id) const {
  id_check(id);
  if (id == kUnk || id == kBos || id == kEos) return "";
  std::string_view p = vocab_[id];
  // Following BOS, sentencepiece's decoder strips the leading space (run.c, PR #89).
  if (prev == kBos && !p.empty() && p[0] == ' ') p.remove_prefix(1);
  const int b = byte_piece_value(p);
  if (b >= 0) return std::string(1, static_cast<char>(b));
  return std::string(p);
}

std::unique_ptr<Llama2cTokenizer> load_llama2c_tokenizer(std::string_view bytes,
                                                         const std::string& path) {
  SLMC_CHECK(bytes.size() >= 4, path, ": llama2.c tokenizer: ", bytes.size(),
             " bytes is too short for the int32 max_token_length header");
  const int32_t max_token_length = read_i32(bytes, 0);
  SLMC_CHECK(max_token_length > 0, path, ": llama2.c tokenizer: max_token_length is ",
             max_token_length, " (must be positive)");
  std::vector<std::string> vocab;
  std::vector<float> scores;
  size_t off = 4;
  while (off < bytes.size()) {
    const size_t i = vocab.size();
    const size_t left = bytes.size() - off;
    SLMC_CHECK(left >= 8, path, ": llama2.c tokenizer: token ", i, " at byte ", off,
               " needs 8 bytes of score and length but only ", left, " are left (truncated file?)");
    const float score = read_f32(bytes, off);
    const int32_t len = read_i32(bytes, off + 4);
    SLMC_CHECK(len >= 0, path, ": llama2.c tokenizer: token ", i, " at byte ", off,
               " has negative length ", len);
    SLMC_CHECK(len <= max_token_length, path, ": llama2.c tokenizer: token ", i, " at byte ", off,
               " has length ", len, " > max_token_length ", max_token_length);
    SLMC_CHECK(static_cast<size_t>(len) <= left - 8, path, ": llama2.c tokenizer: token ", i,
               " at byte ", off, " has length ", len, " but only ", left - 8,
               " bytes are left (truncated file?)");
    std::string s(bytes.substr(off + 8, static_cast<size_t>(len)));
    SLMC_CHECK(s.find('\0') == std::string::npos, path, ": llama2.c tokenizer: token ", i, " ",
               quoted_excerpt(s), " contains a NUL byte");
    vocab.push_back(std::move(s));
    scores.push_back(score);
    off += 8 + static_cast<size_t>(len);
  }
  return std::make_unique<Llama2cTokenizer>(std::move(vocab), std::move(scores), max_token_length,
                                            path);
}

}  // namespace slmc
