#include "compress/tokenizer/hf_bpe.h"

#include <algorithm>

#include "compress/core/json_util.h"
#include "compress/tokenizer/unicode.h"

namespace slmc::hf {

namespace {


uint64_t hash_bytes(std::string_view k) {
  uint64_t h = 0xcbf29ce484222325ull ^ k.size();  // FNV-1a
  for (const char c : k) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

uint64_t mix(uint64_t key) {
  key *= 0x9E3779B97F4A7C15ull;
  return key ^ (key >> 31);
}

// The candidate merge with the lowest rank, then the leftmost, sits on top of the heap.
bool heap_after(const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) {
  return a.rank > b.rank || (a.rank == b.rank && a.pos > b.pos);
}

std::string opt_string(const json& obj, const char* key, const Where& w) {
  const json* v = find_key(obj, key);
  if (v == nullptr || v->is_null()) return "";
  return get_string(*v, w[key]);
}

}  // namespace

BpeModel::BpeModel(const json& m, std::vector<std::pair<std::string, int64_t>> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, const Where& w,
                   bool byte_level)
    : byte_level_(byte_level) {
  require_object(m, w);
  if (const json* d = find_key(m, "dropout"); d != nullptr && !d->is_null()) {
    const double p = checked_json::get_number(*d, w["dropout"].what(), 0.0, 1.0);
    if (p != 0.0) w["dropout"].fail(p, " is not supported (BPE dropout makes encoding random)");
  }
  prefix_ = opt_string(m, "continuing_subword_prefix", w);
  suffix_ = opt_string(m, "end_of_word_suffix", w);
  fuse_unk_ = opt_bool(m, "fuse_unk", false, w);
  byte_fallback_ = opt_bool(m, "byte_fallback", false, w);
  ignore_merges_ = opt_bool(m, "ignore_merges", false, w);

  // model.vocab: token -> id, every id named once.
  const Where wv = w["vocab"];
  int64_t max_id = -1;
  for (const auto& [key, id] : vocab) max_id = std::max(max_id, id);
  const auto named = static_cast<int64_t>(vocab.size());
  if (max_id + 1 - named > kMaxHoles) {
    wv.fail("the largest id is ", max_id, " but only ", named, " tokens are named (",
            max_id + 1 - named, " ids without a token; at most ", kMaxHoles, ")");
  }
  tokens_.resize(static_cast<size_t>(max_id + 1));
  named_.assign(static_cast<size_t>(max_id + 1), false);
  for (auto& [key, id] : vocab) {
    const auto i = static_cast<size_t>(id);
    if (named_[i]) {
      wv.fail("id ", id, " is given to both ", tokenizer_internal::quote(tokens_[i]), " and ",
              tokenizer_internal::quote(key));
    }
    if (!valid_utf8(key)) wv.fail("token ", tokenizer_internal::quote(key), " is not valid UTF-8");
    named_[i] = true;
    tokens_[i] = std::move(key);
  }
  for (size_t id = 0; id < tokens_.size(); ++id) {
    if (named_[id] && index_.insert(tokens_[id], static_cast<int32_t>(id)) != static_cast<int32_t>(id)) {
      wv.fail("duplicate key ", tokenizer_internal::quote(tokens_[id]));
    }
  }

  if (const std::string unk = opt_string(m, "unk_token", w); !unk.empty()) {
    unk_id_ = find(unk);
    if (unk_id_ < 0) w["unk_token"].fail(tokenizer_internal::quote(unk), " is not in model.vocab");
  }
  for (int b = 0; b < 256; ++b) {
    static const char* hex = "0123456789ABCDEF";
    byte_tokens_[static_cast<size_t>(b)] = find(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
  }
  if (byte_level_) {
    const auto& alpha = tokenizer_internal::byte_alphabet();
    for (int b = 0; b < 256; ++b) byte_units_[static_cast<size_t>(b)] = find(alpha[static_cast<size_t>(b)]);
    // Each token's raw bytes, when all its characters are in the alphabet.
    std::vector<std::pair<int32_t, std::pair<size_t, size_t>>> spans;
    std::string raw;
    for (size_t id = 0; id < tokens_.size(); ++id) {
      if (!named_[id]) continue;
      raw.clear();
      if (!tokenizer_internal::byte_level_bytes(tokens_[id], &raw)) continue;
      spans.push_back({static_cast<int32_t>(id), {raw_arena_.size(), raw.size()}});
      raw_arena_ += raw;
    }
    for (const auto& [id, span] : spans)
      raw_index_.insert(std::string_view(raw_arena_).substr(span.first, span.second), id);
  }

  // model.merges, in rank order.
  const Where wm = w["merges"];
  size_t cap = 16;
  while (cap < merges.size() * 2) cap *= 2;
  merge_table_.resize(cap);
  merges_.reserve(merges.size());
  joinable_.assign(256 * 256, false);
  can_cut_ = prefix_.empty() && suffix_.empty();
  std::vector<bool> is_byte_token(tokens_.size(), false);
  for (const int32_t t : byte_tokens_)
    if (t >= 0) is_byte_token[static_cast<size_t>(t)] = true;
  std::string merged, raw_a, raw_b;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& a = merges[i].first;
    const std::string& b = merges[i].second;
    const int32_t ia = find(a), ib = find(b);
    if (ia < 0) wm[i].fail("names ", tokenizer_internal::quote(a), ", which is not in model.vocab");
    if (ib < 0) wm[i].fail("names ", tokenizer_internal::quote(b), ", which is not in model.vocab");
    // The merged token: b loses the continuing_subword_prefix it carries.
    merged.assign(a.data(), a.size());
    const bool prefixed = !prefix_.empty() && b.compare(0, prefix_.size(), prefix_) == 0;
    merged.append(b, prefixed ? prefix_.size() : 0, std::string::npos);
    const int32_t im = find(merged);
    if (im < 0) {
      wm[i].fail("merges ", tokenizer_internal::quote(a), " and ", tokenizer_internal::quote(b), " into ",
                 tokenizer_internal::quote(merged), ", which is not in model.vocab");
    }
    add_merge(ia, ib, static_cast<uint32_t>(i), im);
    merges_.emplace_back(ia, ib);
    if (ia == unk_id_ || ib == unk_id_ || is_byte_token[static_cast<size_t>(ia)] ||
        is_byte_token[static_cast<size_t>(ib)]) {
      can_cut_ = false;
    }
    std::string_view la = a, lb = b;  // the bytes on either side of the junction
    if (byte_level_) {
      raw_a.clear();
      raw_b.clear();
      if (!tokenizer_internal::byte_level_bytes(a, &raw_a) ||
          !tokenizer_internal::byte_level_bytes(b, &raw_b)) {
        continue;  // a part no byte-level word can hold: this merge never applies
      }
      la = raw_a;
      lb = raw_b;
    }
    if (la.empty() || lb.empty()) {
      can_cut_ = false;
      continue;
    }
    joinable_[static_cast<uint8_t>(la.back()) * 256 + static_cast<uint8_t>(lb.front())] = true;
  }
}

void BpeModel::add_merge(int32_t left, int32_t right, uint32_t rank, int32_t merged) {
  const uint64_t key = (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
  const size_t mask = merge_table_.size() - 1;
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    MergeSlot& s = merge_table_[i];
    if (s.key == MergeSlot::kEmpty || s.key == key) {  // a repeated pair: the later rank wins
      s = MergeSlot{key, rank, merged};
      return;
    }
  }
}

const BpeModel::MergeSlot* BpeModel::find_merge(int32_t left, int32_t right) const {
  const uint64_t key = (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
  const size_t mask = merge_table_.size() - 1;
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    const MergeSlot& s = merge_table_[i];
    if (s.key == key) return &s;
    if (s.key == MergeSlot::kEmpty) return nullptr;
  }
}

void BpeModel::lock_cache(BpeScratch& sc) const {
  sc.cache_lock = std::unique_lock<std::mutex>(cache_mu_, std::try_to_lock);
  if (sc.cache_lock.owns_lock() && cache_.empty()) cache_.resize(kCacheSlots);
}

void BpeModel::encode(std::string_view word, BpeScratch& sc, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {  // a word the vocabulary holds whole is one token
    const int32_t id = byte_level_ ? raw_index_.find(word) : index_.find(word);
    if (id >= 0) {
      out->push_back(id);
      return;
    }
  }
  if (can_cut_ && word.size() > kCutMin) {
    encode_chunks(word, sc, out);
  } else {
    encode_chunk(word, sc, out);
  }
}

void BpeModel::encode_chunks(std::string_view word, BpeScratch& sc,
                             std::vector<int32_t>* out) const {
  size_t start = 0;
  bool prev_known = false;
  uint8_t prev_last = 0;
  for (size_t i = 0, len = 0; i < word.size(); i += len) {
    bool known;
    if (byte_level_) {
      len = 1;
      known = byte_units_[static_cast<uint8_t>(word[i])] >= 0;
    } else {
      len = unicode::char_len(static_cast<uint8_t>(word[i]));
      known = index_.find(word.substr(i, len)) >= 0;
    }
    const auto first = static_cast<uint8_t>(word[i]);
    if (i > 0 && prev_known && known && !joinable_[prev_last * 256u + first]) {
      encode_chunk(word.substr(start, i - start), sc, out);
      start = i;
    }
    prev_known = known;
    prev_last = static_cast<uint8_t>(word[i + len - 1]);
  }
  encode_chunk(word.substr(start), sc, out);
}

void BpeModel::encode_chunk(std::string_view chunk, BpeScratch& sc,
                            std::vector<int32_t>* out) const {
  CacheSlot* slot = nullptr;
  uint64_t h = 0;
  if (sc.cache_lock.owns_lock() && chunk.size() <= kCacheMaxKey) {
    h = hash_bytes(chunk);
    slot = &cache_[h & (kCacheSlots - 1)];
    if (slot->hash == h && slot->key == chunk) {
      out->insert(out->end(), slot->ids.begin(), slot->ids.end());
      return;
    }
  }
  merge_word(chunk, sc);
  sc.ids.clear();
  for (int32_t i = sc.symbols.empty() ? -1 : 0; i >= 0; i = sc.symbols[static_cast<size_t>(i)].next)
    sc.ids.push_back(sc.symbols[static_cast<size_t>(i)].id);
  out->insert(out->end(), sc.ids.begin(), sc.ids.end());
  if (slot != nullptr) {
    slot->hash = h;
    slot->key.assign(chunk.data(), chunk.size());
    slot->ids.assign(sc.ids.begin(), sc.ids.end());
  }
}

void BpeModel::add_unknown(std::string_view unit, BpeScratch& sc, int32_t* pending_unk) const {
  auto& sy = sc.symbols;
  if (byte_fallback_) {
    bool all = true;
    for (const char c : unit) all = all && byte_tokens_[static_cast<uint8_t>(c)] >= 0;
    if (all) {  // a pending unk stays pending, after these bytes (as the Rust crate does)
      for (const char c : unit) sy.push_back({byte_tokens_[static_cast<uint8_t>(c)], -1, -1});
      return;
    }
  }
  if (unk_id_ < 0) return;  // no unk token: the character is dropped
  if (*pending_unk >= 0 && fuse_unk_) return;
  if (*pending_unk >= 0) sy.push_back({*pending_unk, -1, -1});
  *pending_unk = unk_id_;
}

void BpeModel::merge_word(std::string_view word, BpeScratch& sc) const {
  auto& sy = sc.symbols;
  sy.clear();
  int32_t pending_unk = -1;
  const bool affixes = !prefix_.empty() || !suffix_.empty();
  const auto& alpha = tokenizer_internal::byte_alphabet();
  for (size_t i = 0, len = 0; i < word.size(); i += len) {
    len = byte_level_ ? 1 : unicode::char_len(static_cast<uint8_t>(word[i]));
    std::string_view unit = byte_level_ ? std::string_view(alpha[static_cast<uint8_t>(word[i])])
                                        : word.substr(i, len);
    int32_t id;
    if (affixes) {
      sc.unit.clear();
      if (i > 0) sc.unit += prefix_;
      sc.unit.append(unit);
      if (i + len == word.size()) sc.unit += suffix_;
      unit = sc.unit;
      id = index_.find(unit);
    } else {
      id = byte_level_ ? byte_units_[static_cast<uint8_t>(word[i])] : index_.find(unit);
    }
    if (id >= 0) {
      if (pending_unk >= 0) sy.push_back({pending_unk, -1, -1});
      pending_unk = -1;
      sy.push_back({id, -1, -1});
    } else {
      add_unknown(unit, sc, &pending_unk);
    }
  }
  if (pending_unk >= 0) sy.push_back({pending_unk, -1, -1});
  const auto n = static_cast<int32_t>(sy.size());
  for (int32_t i = 0; i < n; ++i) {
    sy[static_cast<size_t>(i)].prev = i - 1;
    sy[static_cast<size_t>(i)].next = i + 1 < n ? i + 1 : -1;
  }
  if (n < 2) return;

  // Word::merge_all: apply the lowest-ranked merge present, leftmost first, until none is.
  auto& heap = sc.heap;
  heap.clear();
  auto consider = [&](int32_t pos) {
    const BpeScratch::Symbol& s = sy[static_cast<size_t>(pos)];
    const int32_t right = sy[static_cast<size_t>(s.next)].id;
    if (const MergeSlot* m = find_merge(s.id, right)) {
      heap.push_back({m->rank, static_cast<uint32_t>(pos), s.id, right, m->merged});
      return true;
    }
    return false;
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  std::make_heap(heap.begin(), heap.end(), heap_after);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), heap_after);
    const BpeScratch::Candidate c = heap.back();
    heap.pop_back();
    BpeScratch::Symbol& s = sy[c.pos];
    // Stale when either side changed since the candidate was made.
    if (s.id != c.left || s.next < 0 || sy[static_cast<size_t>(s.next)].id != c.right) continue;
    const int32_t r = s.next;
    s.id = c.merged;
    s.next = sy[static_cast<size_t>(r)].next;
    sy[static_cast<size_t>(r)].id = -1;
    if (s.next >= 0) sy[static_cast<size_t>(s.next)].prev = static_cast<int32_t>(c.pos);
    if (s.prev >= 0 && consider(s.prev)) std::push_heap(heap.begin(), heap.end(), heap_after);
    if (s.next >= 0 && consider(static_cast<int32_t>(c.pos))) {
      std::push_heap(heap.begin(), heap.end(), heap_after);
    }
  }
}

}  // namespace slmc::hf
