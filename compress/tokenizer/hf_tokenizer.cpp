// tokenizer.json: the added vocabulary (matched before the model), normalizer, pre-tokenizer,
// BPE model, post-processor template and decoder wired together as the Rust crate's
// Tokenizer::encode / decode do; the config files beside it; the .slm blob.
#include "compress/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <system_error>
#include <unordered_map>
#include <unordered_set>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/json_util.h"
#include "compress/tokenizer/hf_bpe.h"
#include "compress/tokenizer/hf_json.h"
#include "compress/tokenizer/hf_pipeline.h"
#include "compress/tokenizer/tokenizer_internal.h"
#include "compress/tokenizer/unicode.h"

namespace slmc {

namespace fs = std::filesystem;
using hf::json;
using hf::Where;
using tokenizer_internal::quote;

namespace {

using hf::kMaxHoles;
using hf::kMaxId;
constexpr std::string_view kBlobMagic = "slmc-hf-tokenizer 1\n";

struct AddedToken {
  std::string content;  // as written
  int32_t id = -1;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = true;
};

// Leftmost-longest matching of the added tokens' contents (the Rust crate uses an Aho-Corasick
// automaton with MatchKind::LeftmostLongest; scanning positions left to right and taking the
// longest entry at the first position that has one is the same).
class TokenTrie {
 public:
  void add(std::string_view s, int32_t value) {
    if (s.empty()) return;
    first_[static_cast<uint8_t>(s[0])] = true;
    int32_t n = 0;
    for (const char c : s) {
      const auto b = static_cast<uint8_t>(c);
      auto& kids = nodes_[static_cast<size_t>(n)].kids;
      auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, int32_t{-1}));
      if (it != kids.end() && it->first == b) {
        n = it->second;
      } else {
        const auto next = static_cast<int32_t>(nodes_.size());
        kids.insert(it, {b, next});
        nodes_.emplace_back();
        n = next;
      }
    }
    nodes_[static_cast<size_t>(n)].value = value;
  }
  bool empty() const { return nodes_.size() == 1; }
  bool may_start(uint8_t c) const { return first_[c]; }
  // The length of the longest entry starting at s[pos] (its value in *value), or 0.
  size_t longest(std::string_view s, size_t pos, int32_t* value) const {
    size_t best = 0;
    int32_t n = 0;
    for (size_t i = pos; i < s.size(); ++i) {
      const auto& kids = nodes_[static_cast<size_t>(n)].kids;
      const auto b = static_cast<uint8_t>(s[i]);
      auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, int32_t{-1}));
      if (it == kids.end() || it->first != b) break;
      n = it->second;
      if (nodes_[static_cast<size_t>(n)].value >= 0) {
        best = i + 1 - pos;
        *value = nodes_[static_cast<size_t>(n)].value;
      }
    }
    return best;
  }

 private:
  struct Node {
    int32_t value = -1;
    std::vector<std::pair<uint8_t, int32_t>> kids;  // sorted by byte
  };
  std::vector<Node> nodes_ = std::vector<Node>(1);
  std::array<bool, 256> first_{};
};

// The code point ending at s[end) (s valid UTF-8, end > 0).
uint32_t last_char(std::string_view s, size_t end) {
  size_t k = end - 1;
  while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
  size_t len;
  return unicode::decode(s, k, &len);
}

// Where the run of White_Space ending at `end` starts.
size_t white_space_start(std::string_view s, size_t end) {
  while (end > 0) {
    size_t k = end - 1;
    while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
    size_t len;
    if (!unicode::is_white_space(unicode::decode(s, k, &len))) break;
    end = k;
  }
  return end;
}

// Where the run of White_Space starting at `begin` ends.
size_t white_space_end(std::string_view s, size_t begin) {
  size_t len = 0;
  while (begin < s.size() && unicode::is_white_space(unicode::decode(s, begin, &len))) begin += len;
  return begin;
}

// A token given in tokenizer_config.json: a string, null, or an AddedToken object with
// "content" (older files).
std::optional<std::string> config_token(const json& j, const char* key, const Where& w) {
  const json* v = hf::find_key(j, key);
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (v->is_object()) return hf::get_string(hf::require_key(*v, "content", w[key]), w[key]["content"]);
  if (!v->is_string()) {
    w[key].fail("must be a string, null or {\"content\": ...}, got ", checked_json::excerpt(*v));
  }
  return v->get<std::string>();
}

std::optional<bool> config_bool(const json& j, const char* key, const Where& w) {
  const json* v = hf::find_key(j, key);
  if (v == nullptr || v->is_null()) return std::nullopt;
  return hf::get_bool(*v, w[key]);
}

// An id or a list of ids (generation_config.json's eos_token_id).
std::vector<int64_t> config_ids(const json& j, const char* key, const Where& w) {
  const json* v = hf::find_key(j, key);
  std::vector<int64_t> ids;
  if (v == nullptr || v->is_null()) return ids;
  if (v->is_array()) {
    if (v->size() > 1024) w[key].fail("lists ", v->size(), " ids (at most 1024)");
    for (size_t i = 0; i < v->size(); ++i)
      ids.push_back(checked_json::get_int((*v)[i], w[key][i].what(), 0, kMaxId));
  } else {
    ids.push_back(checked_json::get_int(*v, w[key].what(), 0, kMaxId));
  }
  return ids;
}

json parse_object(std::string_view text, const std::string& origin) {
  json j = checked_json::parse(text, origin);
  if (!j.is_object()) fail(origin, ": the top level must be an object, got ", checked_json::excerpt(j));
  return j;
}

}  // namespace

HfTokenizerConfig HfTokenizerConfig::read_dir(const std::string& dir) {
  HfTokenizerConfig cfg;
  std::error_code ec;
  const std::string tc = (fs::path(dir) / "tokenizer_config.json").string();
  if (fs::is_regular_file(tc, ec)) {
    const json j = parse_object(read_file(tc), tc);
    const Where w(tc, "");
    cfg.add_bos_token = config_bool(j, "add_bos_token", w);
    cfg.add_eos_token = config_bool(j, "add_eos_token", w);
    cfg.bos_token = config_token(j, "bos_token", w);
    cfg.eos_token = config_token(j, "eos_token", w);
    cfg.pad_token = config_token(j, "pad_token", w);
  }
  const std::string gc = (fs::path(dir) / "generation_config.json").string();
  if (fs::is_regular_file(gc, ec)) {
    const json j = parse_object(read_file(gc), gc);
    cfg.eos_token_ids = config_ids(j, "eos_token_id", Where(gc, ""));
  }
  return cfg;
}

std::string make_hf_tokenizer_blob(std::string_view tokenizer_json, const HfTokenizerConfig& cfg) {
  json c = json::object();  // std::map keys: sorted, so the dump is deterministic
  if (cfg.add_bos_token) c["add_bos_token"] = *cfg.add_bos_token;
  if (cfg.add_eos_token) c["add_eos_token"] = *cfg.add_eos_token;
  if (cfg.bos_token) c["bos_token"] = *cfg.bos_token;
  if (cfg.eos_token) c["eos_token"] = *cfg.eos_token;
  if (cfg.pad_token) c["pad_token"] = *cfg.pad_token;
  if (!cfg.eos_token_ids.empty()) c["eos_token_ids"] = cfg.eos_token_ids;
  std::string blob(kBlobMagic);
  blob += c.dump();  // one line: dump() escapes control characters inside strings
  blob += '\n';
  blob.append(tokenizer_json.data(), tokenizer_json.size());
  return blob;
}

std::unique_ptr<HfTokenizer> load_hf_tokenizer_blob(std::string_view blob,
                                                    const std::string& origin) {
  if (blob.substr(0, kBlobMagic.size()) != kBlobMagic) {
    fail(origin, ": not an hf tokenizer blob (it must start with \"slmc-hf-tokenizer 1\")");
  }
  blob.remove_prefix(kBlobMagic.size());
  const size_t nl = blob.find('\n');
  if (nl == std::string_view::npos) fail(origin, ": hf tokenizer blob: no line with its config");
  const std::string where = origin + " (config line)";
  const json j = parse_object(blob.substr(0, nl), where);
  const Where w(where, "");
  HfTokenizerConfig cfg;
  cfg.add_bos_token = config_bool(j, "add_bos_token", w);
  cfg.add_eos_token = config_bool(j, "add_eos_token", w);
  cfg.bos_token = config_token(j, "bos_token", w);
  cfg.eos_token = config_token(j, "eos_token", w);
  cfg.pad_token = config_token(j, "pad_token", w);
  cfg.eos_token_ids = config_ids(j, "eos_token_ids", w);
  return std::make_unique<HfTokenizer>(blob.substr(nl + 1), cfg, origin);
}

// ---- the tokenizer ----------------------------------------------------------------------------

struct HfTokenizer::Impl {
  std::string origin;
  HfTokenizerConfig cfg;
  std::unique_ptr<hf::Normalizer> normalizer;
  std::unique_ptr<hf::PreTokenizer> pre;
  std::unique_ptr<hf::Decoder> decoder;
  std::unique_ptr<hf::BpeModel> model;
  std::vector<AddedToken> added;
  std::vector<int32_t> added_of_id;  // id -> index into `added`, -1
  TokenTrie raw_trie;   // added tokens with normalized false: matched in the raw text
  TokenTrie norm_trie;  // normalized true: their normalized content, in the normalized text
  // The post-processor's single-sequence template: ids, with the sequence where a marker is.
  struct TemplateItem {
    bool sequence = false;
    std::vector<int32_t> ids;
  };
  std::vector<TemplateItem> single;
  int32_t vocab_size = 0;
  int32_t bos = -1, eos = -1, pad = -1;
  std::vector<int32_t> eos_list;
  std::vector<int32_t> specials;
  std::vector<std::string> split_patterns;

  void check_id(int32_t id) const {
    SLMC_CHECK(id >= 0 && id < vocab_size, origin, ": token id ", id,
               " is out of range for a vocabulary of ", vocab_size);
  }
  const AddedToken* added_token(int32_t id) const {
    const int32_t a = added_of_id[static_cast<size_t>(id)];
    return a < 0 ? nullptr : &added[static_cast<size_t>(a)];
  }
  // The token string of an id ("" for an id nothing names).
  std::string token(int32_t id) const {
    if (const AddedToken* t = added_token(id)) return t->content;
    return model->has(id) ? model->token(id) : std::string();
  }
  int32_t find(std::string_view s) const {
    for (const AddedToken& t : added)  // few; the model's index covers the rest
      if (t.content == s) return t.id;
    return model->find(s);
  }

  void parse_added(const json& list, const Where& w);
  void parse_post_processor(const json& j, const Where& w);
  void resolve_specials();

  // The Rust crate's AddedVocabulary::find_matches: calls fn(begin, end, added index or -1)
  // for the pieces of `s`, added tokens (single_word, lstrip, rstrip applied) and the text
  // between them.
  template <typename F>
  void split_added(const TokenTrie& trie, std::string_view s, F&& fn) const {
    size_t start_offset = 0;
    for (size_t pos = 0; pos < s.size();) {
      if (!trie.may_start(static_cast<uint8_t>(s[pos]))) {
        ++pos;
        continue;
      }
      int32_t v = -1;
      const size_t len = trie.longest(s, pos, &v);
      if (len == 0) {
        ++pos;
        continue;
      }
      size_t start = pos, stop = pos + len;
      const AddedToken& t = added[static_cast<size_t>(v)];
      if (t.single_word) {
        const bool word_before = start > 0 && unicode::is_word(last_char(s, start));
        size_t l = 0;
        const bool word_after = stop < s.size() && unicode::is_word(unicode::decode(s, stop, &l));
        if (word_before || word_after) {  // not a word of its own: text
          pos = stop;
          continue;
        }
      }
      if (t.lstrip) start = std::max(white_space_start(s, start), start_offset);
      if (t.rstrip) stop = white_space_end(s, stop);
      if (start_offset < start) fn(start_offset, start, -1);
      fn(start, stop, v);
      start_offset = stop;
      pos = stop;
    }
    if (start_offset < s.size()) fn(start_offset, s.size(), -1);
  }

  void encode(std::string_view text, std::vector<int32_t>* out) const;
  void encode_section(std::string_view s, bool at_origin, hf::Scratch& sc, hf::BpeScratch& bs,
                      std::vector<int32_t>* out) const;
  void encode_words(std::string_view s, bool at_origin, hf::Scratch& sc, hf::BpeScratch& bs,
                    std::vector<int32_t>* out) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;
};

void HfTokenizer::Impl::parse_added(const json& list, const Where& w) {
  if (list.is_null()) return;
  if (!list.is_array()) w.fail("must be a list, got ", checked_json::excerpt(list));
  std::unordered_map<int32_t, size_t> by_id;
  std::unordered_set<std::string> contents;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    const Where wi = w[i];
    hf::require_object(e, wi);
    AddedToken t;
    t.id = static_cast<int32_t>(
        checked_json::get_int(hf::require_key(e, "id", wi), wi["id"].what(), 0, kMaxId));
    t.content = hf::get_string(hf::require_key(e, "content", wi), wi["content"]);
    if (!valid_utf8(t.content)) wi["content"].fail("is not valid UTF-8");
    t.special = hf::opt_bool(e, "special", false, wi);
    t.single_word = hf::opt_bool(e, "single_word", false, wi);
    t.lstrip = hf::opt_bool(e, "lstrip", false, wi);
    t.rstrip = hf::opt_bool(e, "rstrip", false, wi);
    t.normalized = hf::opt_bool(e, "normalized", !t.special, wi);
    const int32_t in_vocab = model->find(t.content);
    if (in_vocab >= 0 && in_vocab != t.id) {
      wi.fail(quote(t.content), " has id ", t.id, " but model.vocab gives it id ", in_vocab);
    }
    if (in_vocab < 0 && model->has(t.id)) {
      wi.fail("id ", t.id, " of ", quote(t.content), " is the id of ", quote(model->token(t.id)),
              " in model.vocab");
    }
    if (const auto it = by_id.find(t.id); it != by_id.end()) {
      wi.fail("id ", t.id, " is given to both ", quote(added[it->second].content), " and ",
              quote(t.content));
    }
    if (!contents.insert(t.content).second) wi.fail(quote(t.content), " is listed twice");
    by_id[t.id] = added.size();
    added.push_back(std::move(t));
  }
}

void HfTokenizer::Impl::parse_post_processor(const json& j, const Where& w) {
  if (j.is_null()) return;
  const std::string type = hf::type_of(j, w);
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    const json& list = hf::require_key(j, "processors", w);
    if (!list.is_array()) w["processors"].fail("must be a list, got ", checked_json::excerpt(list));
    for (size_t i = 0; i < list.size(); ++i) parse_post_processor(list[i], w["processors"][i]);
    return;
  }
  if (type != "TemplateProcessing") {
    w["type"].fail("post-processor type ", quote(type),
                   " is not supported (supported: TemplateProcessing, ByteLevel, Sequence)");
  }
  if (!single.empty()) w.fail("a second TemplateProcessing is not supported");
  const json& specials_j = hf::require_key(j, "special_tokens", w);
  if (!specials_j.is_object()) {
    w["special_tokens"].fail("must be an object, got ", checked_json::excerpt(specials_j));
  }
  const json& items = hf::require_key(j, "single", w);
  const Where wl = w["single"];
  if (!items.is_array()) wl.fail("must be a list, got ", checked_json::excerpt(items));
  bool has_sequence = false;
  for (size_t i = 0; i < items.size(); ++i) {
    const json& it = items[i];
    const Where wi = wl[i];
    TemplateItem item;
    if (const json* seq = hf::find_key(it, "Sequence")) {
      const std::string id = hf::get_string(hf::require_key(*seq, "id", wi["Sequence"]), wi["Sequence"]["id"]);
      if (id != "A") wi["Sequence"]["id"].fail("is ", quote(id), " (a single sequence is \"A\")");
      item.sequence = true;
      has_sequence = true;
    } else if (const json* sp = hf::find_key(it, "SpecialToken")) {
      const std::string name =
          hf::get_string(hf::require_key(*sp, "id", wi["SpecialToken"]), wi["SpecialToken"]["id"]);
      const json* def = hf::find_key(specials_j, name.c_str());
      if (def == nullptr) wi["SpecialToken"]["id"].fail(quote(name), " is not in special_tokens");
      const Where wd = w["special_tokens"][name.c_str()];
      const json& ids = hf::require_key(*def, "ids", wd);
      if (!ids.is_array()) wd["ids"].fail("must be a list, got ", checked_json::excerpt(ids));
      for (size_t k = 0; k < ids.size(); ++k) {
        item.ids.push_back(static_cast<int32_t>(
            checked_json::get_int(ids[k], wd["ids"][k].what(), 0, vocab_size - 1)));
      }
    } else {
      wi.fail("must be {\"Sequence\": ...} or {\"SpecialToken\": ...}, got ", checked_json::excerpt(it));
    }
    single.push_back(std::move(item));
  }
  if (!has_sequence) wl.fail("has no {\"Sequence\": {\"id\": \"A\"}}");
}

void HfTokenizer::Impl::resolve_specials() {
  const auto id_of = [&](const std::optional<std::string>& tok, const char* key) {
    if (!tok) return -1;
    const int32_t id = find(*tok);
    if (id < 0) fail(origin, ": tokenizer_config.json ", key, " ", quote(*tok), " is not a token of it");
    return id;
  };
  bos = id_of(cfg.bos_token, "bos_token");
  if (bos < 0 && !cfg.bos_token) {  // the template's special token before the sequence
    for (const TemplateItem& it : single) {
      if (it.sequence) break;
      if (!it.ids.empty()) {
        bos = it.ids.front();
        break;
      }
    }
  }
  eos = id_of(cfg.eos_token, "eos_token");
  pad = id_of(cfg.pad_token, "pad_token");
  for (const int64_t id : cfg.eos_token_ids) {
    SLMC_CHECK(id < vocab_size, origin, ": generation_config.json eos_token_id ", id,
               " is out of range for a vocabulary of ", vocab_size);
  }
  if (eos < 0 && !cfg.eos_token_ids.empty()) eos = static_cast<int32_t>(cfg.eos_token_ids.front());
  if (eos >= 0) eos_list.push_back(eos);
  for (const int64_t id : cfg.eos_token_ids)
    if (std::find(eos_list.begin(), eos_list.end(), id) == eos_list.end())
      eos_list.push_back(static_cast<int32_t>(id));
  for (const AddedToken& t : added)
    if (t.special) specials.push_back(t.id);
  for (const int32_t id : {bos, eos})
    if (id >= 0 && std::find(specials.begin(), specials.end(), id) == specials.end()) specials.push_back(id);
  std::sort(specials.begin(), specials.end());
}

HfTokenizer::HfTokenizer(std::string_view tokenizer_json, const HfTokenizerConfig& cfg,
                         const std::string& origin)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.origin = origin;
  m.cfg = cfg;
  source_ = origin;
  hf::TokenizerJson parsed = hf::parse_tokenizer_json(tokenizer_json, origin, kMaxId);
  const json& j = parsed.doc;
  if (!j.is_object()) fail(origin, ": the top level must be an object, got ", checked_json::excerpt(j));
  const Where top(m.origin, "");

  const json& model_j = hf::require_key(j, "model", top);
  hf::require_object(model_j, top["model"]);
  std::string type = "BPE";  // a file without model.type is BPE when it has merges
  if (hf::find_key(model_j, "type") != nullptr) {
    type = hf::type_of(model_j, top["model"]);
  } else if (hf::find_key(model_j, "merges") == nullptr) {
    top["model"].fail("has no \"type\" (and no merges, so it is not a BPE model)");
  }
  if (type != "BPE") {
    top["model"]["type"].fail("model type ", quote(type),
                              " is not supported (slmc reads BPE tokenizer.json files)");
  }
  const json null_json;
  const auto part = [&](const char* key) -> const json& {
    const json* v = hf::find_key(j, key);
    return v != nullptr ? *v : null_json;
  };
  m.normalizer = hf::make_normalizer(part("normalizer"), top["normalizer"]);
  bool byte_level = false;
  m.pre = hf::make_pre_tokenizer(part("pre_tokenizer"), top["pre_tokenizer"], &byte_level);
  if (m.pre) m.pre->patterns(&m.split_patterns);
  m.decoder = hf::make_decoder(part("decoder"), top["decoder"]);
  // parse_tokenizer_json took model.vocab and model.merges when they had the right shape.
  if (!parsed.has_vocab) {
    const json& v = hf::require_key(model_j, "vocab", top["model"]);
    top["model"]["vocab"].fail("must be an object of token: id, got ", checked_json::excerpt(v));
  }
  if (!parsed.has_merges) {
    const json& v = hf::require_key(model_j, "merges", top["model"]);
    top["model"]["merges"].fail("must be a list, got ", checked_json::excerpt(v));
  }
  m.model = std::make_unique<hf::BpeModel>(model_j, std::move(parsed.vocab), parsed.merges,
                                           top["model"], byte_level);
  parsed.merges = {};
  m.parse_added(part("added_tokens"), top["added_tokens"]);

  // Ids: the model's and the added tokens', with at most kMaxHoles unnamed.
  int64_t max_id = m.model->size() - 1, named = 0;
  for (int32_t id = 0; id < m.model->size(); ++id) named += m.model->has(id) ? 1 : 0;
  for (const AddedToken& t : m.added) {
    max_id = std::max<int64_t>(max_id, t.id);
    if (!m.model->has(t.id)) ++named;
  }
  if (max_id + 1 - named > kMaxHoles) {
    top["added_tokens"].fail("ids go up to ", max_id, " for ", named, " tokens (", max_id + 1 - named,
                             " ids without a token; at most ", kMaxHoles, ")");
  }
  m.vocab_size = static_cast<int32_t>(max_id + 1);
  m.added_of_id.assign(static_cast<size_t>(m.vocab_size), -1);
  hf::Scratch sc;
  for (size_t i = 0; i < m.added.size(); ++i) {
    const AddedToken& t = m.added[i];
    m.added_of_id[static_cast<size_t>(t.id)] = static_cast<int32_t>(i);
    if (!t.normalized) {
      m.raw_trie.add(t.content, static_cast<int32_t>(i));
    } else {
      m.norm_trie.add(m.normalizer ? m.normalizer->apply(t.content, sc) : t.content,
                      static_cast<int32_t>(i));
    }
  }
  m.parse_post_processor(part("post_processor"), top["post_processor"]);
  m.resolve_specials();
}

HfTokenizer::~HfTokenizer() = default;

int64_t HfTokenizer::vocab_size() const { return impl_->vocab_size; }
int32_t HfTokenizer::bos_id() const { return impl_->bos; }
int32_t HfTokenizer::eos_id() const { return impl_->eos; }
std::vector<int32_t> HfTokenizer::eos_ids() const { return impl_->eos_list; }
std::vector<int32_t> HfTokenizer::special_ids() const { return impl_->specials; }

int32_t HfTokenizer::token_id(std::string_view token) const { return impl_->find(token); }

std::string HfTokenizer::piece(int32_t id) const {
  impl_->check_id(id);
  return impl_->token(id);
}

void HfTokenizer::Impl::encode(std::string_view text, std::vector<int32_t>* out) const {
  std::string fixed;
  if (unicode::to_valid(text, &fixed)) text = fixed;
  hf::Scratch sc;
  hf::BpeScratch bs;
  model->lock_cache(bs);
  split_added(raw_trie, text, [&](size_t b, size_t e, int32_t tok) {
    if (tok >= 0) {
      out->push_back(added[static_cast<size_t>(tok)].id);
    } else {
      encode_section(text.substr(b, e - b), b == 0, sc, bs, out);
    }
  });
}

void HfTokenizer::Impl::encode_section(std::string_view s, bool at_origin, hf::Scratch& sc,
                                       hf::BpeScratch& bs, std::vector<int32_t>* out) const {
  std::string normalized;
  if (normalizer) {
    normalized = normalizer->apply(s, sc);
    s = normalized;
  }
  if (norm_trie.empty()) {
    encode_words(s, at_origin, sc, bs, out);
    return;
  }
  split_added(norm_trie, s, [&](size_t b, size_t e, int32_t tok) {
    if (tok >= 0) {
      out->push_back(added[static_cast<size_t>(tok)].id);
    } else {
      encode_words(s.substr(b, e - b), at_origin && b == 0, sc, bs, out);
    }
  });
}

void HfTokenizer::Impl::encode_words(std::string_view s, bool at_origin, hf::Scratch& sc,
                                     hf::BpeScratch& bs, std::vector<int32_t>* out) const {
  if (s.empty()) return;
  if (!pre) {
    model->encode(s, bs, out);
    return;
  }
  pre->split(s, at_origin, sc, [&](std::string_view word, bool) { model->encode(word, bs, out); });
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3);
  impl_->encode(text, &out);
  return out;
}

std::vector<int32_t> HfTokenizer::encode_with_specials(std::string_view text) const {
  if (impl_->single.empty()) return encode(text);
  std::vector<int32_t> out;
  for (const Impl::TemplateItem& it : impl_->single) {
    if (it.sequence) {
      impl_->encode(text, &out);
    } else {
      out.insert(out.end(), it.ids.begin(), it.ids.end());
    }
  }
  return out;
}

std::string HfTokenizer::Impl::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    check_id(id);
    const AddedToken* t = added_token(id);
    if (t != nullptr && t->special && skip_special) continue;
    if (t == nullptr && !model->has(id)) continue;  // an id nothing names
    tokens.push_back(token(id));
  }
  if (!decoder) {  // the Rust crate joins the tokens with spaces
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  hf::DecodeState st;
  decoder->decode(&tokens, st);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids) const {
  return impl_->decode(ids, /*skip_special=*/true);
}

std::string HfTokenizer::decode_with_specials(const std::vector<int32_t>& ids) const {
  return impl_->decode(ids, /*skip_special=*/false);
}

std::string HfTokenizer::decode_piece(int32_t prev, int32_t id) const {
  const Impl& m = *impl_;
  m.check_id(id);
  const AddedToken* t = m.added_token(id);
  if ((t != nullptr && t->special) || (t == nullptr && !m.model->has(id))) return "";
  const bool first = prev < 0 || prev == m.bos;
  std::vector<std::string> tokens{m.token(id)};
  if (!m.decoder) return first ? tokens[0] : " " + tokens[0];
  hf::DecodeState st;
  st.stream = true;
  st.first = first;
  m.decoder->decode(&tokens, st);
  std::string out;
  for (const std::string& s : tokens) out += s;
  return out;
}

HfVocabInfo HfTokenizer::vocab_info() const {
  const Impl& m = *impl_;
  HfVocabInfo v;
  v.model_type = "BPE";
  v.byte_level = m.model->byte_level();
  v.split_patterns = m.split_patterns;
  v.tokens.resize(static_cast<size_t>(m.vocab_size));
  v.types.resize(static_cast<size_t>(m.vocab_size));
  for (int32_t id = 0; id < m.vocab_size; ++id) {
    const auto i = static_cast<size_t>(id);
    v.tokens[i] = m.token(id);
    if (const AddedToken* t = m.added_token(id)) {
      v.types[i] = t->special ? HfVocabInfo::kControl : HfVocabInfo::kUserDefined;
    } else if (!m.model->has(id)) {
      v.types[i] = HfVocabInfo::kUnused;
    } else if (id == m.model->unk_id()) {
      v.types[i] = HfVocabInfo::kUnknown;
    } else {
      v.types[i] = HfVocabInfo::kNormal;
    }
  }
  if (m.model->byte_fallback()) {
    for (int b = 0; b < 256; ++b) {
      const int32_t id = m.model->byte_token(b);
      if (id >= 0 && m.added_token(id) == nullptr) v.types[static_cast<size_t>(id)] = HfVocabInfo::kByte;
    }
  }
  v.merges.reserve(m.model->merges().size());
  for (const auto& [a, b] : m.model->merges()) v.merges.emplace_back(m.model->token(a), m.model->token(b));
  v.bos_id = m.bos;
  v.eos_id = m.eos;
  v.pad_id = m.pad;
  v.unk_id = m.model->unk_id();
  v.eos_ids = m.eos_list;
  bool seen_sequence = false, special_before = false, special_after = false;
  for (const Impl::TemplateItem& it : m.single) {
    if (it.sequence) {
      seen_sequence = true;
    } else if (!it.ids.empty()) {
      (seen_sequence ? special_after : special_before) = true;
    }
  }
  v.add_bos = m.cfg.add_bos_token.value_or(special_before);
  v.add_eos = m.cfg.add_eos_token.value_or(special_after);
  return v;
}

}  // namespace slmc
