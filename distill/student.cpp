#include "distill/student.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sstream>

#include "compress/core/error.h"
#include "compress/core/json_util.h"
#include "compress/core/tensor_names.h"

namespace slmc::distill {

namespace {

// The whole of `s` as a decimal integer; false if it is not one (or overflows).
bool whole_int(const std::string& s, long long* v) {
  size_t used = 0;
  try {
    *v = std::stoll(s, &used);
  } catch (const std::exception&) {
    return false;
  }
  return !s.empty() && used == s.size();
}

int64_t parse_index(const std::string& s, const std::string& where, int64_t n) {
  long long v = -1;
  SLMC_CHECK(whole_int(s, &v), where, ": keep_layers item '", s.substr(0, 40),
             "' is not a layer index, 'every_other' or 'all'");
  SLMC_CHECK(v >= 0 && v < n, where, ": keep_layers index ", v, " is out of range: the teacher has ",
             n, " layers [0, ", n, ")");
  return static_cast<int64_t>(v);
}

// L2 norm of rows [r0, r1) of a (rows, cols) matrix, and of column c over all rows.
double rows_norm(const HostTensor& t, int64_t r0, int64_t r1) {
  const int64_t cols = t.dim(1);
  double s = 0;
  for (int64_t i = r0 * cols; i < r1 * cols; ++i) s += static_cast<double>(t.data[static_cast<size_t>(i)]) * t.data[static_cast<size_t>(i)];
  return std::sqrt(s);
}
double cols_norm(const HostTensor& t, int64_t c0, int64_t c1) {
  const int64_t rows = t.dim(0), cols = t.dim(1);
  double s = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = c0; c < c1; ++c) {
      const double v = t.data[static_cast<size_t>(r * cols + c)];
      s += v * v;
    }
  return std::sqrt(s);
}

// Rows `keep` (each a block of `block` rows) of a (rows, cols) matrix or a vector.
HostTensor take_rows(const HostTensor& t, const std::vector<int64_t>& keep, int64_t block) {
  const int64_t cols = t.shape.size() == 2 ? t.dim(1) : 1;
  HostTensor o;
  o.shape = t.shape;
  o.shape[0] = static_cast<int64_t>(keep.size()) * block;
  o.source_dtype = t.source_dtype;
  for (int64_t u : keep)
    o.data.insert(o.data.end(), t.data.begin() + u * block * cols,
                  t.data.begin() + (u + 1) * block * cols);
  return o;
}
// Columns `keep` (blocks of `block`) of a (rows, cols) matrix.
HostTensor take_cols(const HostTensor& t, const std::vector<int64_t>& keep, int64_t block) {
  const int64_t rows = t.dim(0), cols = t.dim(1);
  HostTensor o;
  o.shape = {rows, static_cast<int64_t>(keep.size()) * block};
  o.source_dtype = t.source_dtype;
  o.data.reserve(static_cast<size_t>(rows * o.shape[1]));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t u : keep)
      o.data.insert(o.data.end(), t.data.begin() + r * cols + u * block,
                    t.data.begin() + r * cols + (u + 1) * block);
  return o;
}

// The `n` highest-scoring of `scores`' indices, in ascending index order.
std::vector<int64_t> top_units(const std::vector<double>& scores, int64_t n) {
  std::vector<int64_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return scores[static_cast<size_t>(a)] > scores[static_cast<size_t>(b)]; });
  idx.resize(static_cast<size_t>(n));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace

std::vector<int64_t> parse_keep_layers(const PatternList& items, int64_t n) {
  std::vector<int64_t> keep;
  for (size_t i = 0; i < items.items.size(); ++i) {
    const std::string& s = items.items[i];
    const std::string& where = items.where[i];
    if (s == "every_other" || s == "all") {
      SLMC_CHECK(items.items.size() == 1, where, ": keep_layers '", s,
                 "' cannot be combined with other items");
      for (int64_t l = 0; l < n; l += s == "all" ? 1 : 2) keep.push_back(l);
      return keep;
    }
    // "0,2,4" in one item is accepted too.
    std::stringstream ss(s);
    for (std::string part; std::getline(ss, part, ',');) {
      part.erase(0, part.find_first_not_of(' '));
      part.erase(part.find_last_not_of(' ') + 1);
      const int64_t v = parse_index(part, where, n);
      SLMC_CHECK(keep.empty() || v > keep.back(), where, ": keep_layers must be increasing and ",
                 "without repeats, got ", v, " after ", keep.empty() ? -1 : keep.back());
      keep.push_back(v);
    }
  }
  return keep;
}

std::vector<LayerWidths> parse_widths_report(const std::string& text, const std::string& origin,
                                             int64_t n_teacher_layers) {
  namespace cj = checked_json;
  const nlohmann::json j = cj::parse(text, origin, 8);
  SLMC_CHECK(j.is_object() && j.contains("layers") && j["layers"].is_array(), origin,
             ": a widths report is an object with a 'layers' array");
  for (auto it = j.begin(); it != j.end(); ++it)
    SLMC_CHECK(it.key() == "layers", origin, ": unknown key '", it.key().substr(0, 40),
               "' (a widths report has only 'layers')");
  const nlohmann::json& layers = j["layers"];
  SLMC_CHECK(static_cast<int64_t>(layers.size()) == n_teacher_layers, origin, ": 'layers' has ",
             layers.size(), " entries, the teacher has ", n_teacher_layers, " layers");
  std::vector<LayerWidths> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    const nlohmann::json& e = layers[i];
    const std::string w = origin + ": layers[" + std::to_string(i) + "]";
    SLMC_CHECK(e.is_object(), w, " must be an object");
    LayerWidths lw;
    for (auto it = e.begin(); it != e.end(); ++it) {
      const std::string& k = it.key();
      int64_t* dst = k == "n_head" ? &lw.n_head : k == "n_kv_head" ? &lw.n_kv_head
                     : k == "ffn_dim" ? &lw.ffn_dim : nullptr;
      SLMC_CHECK(dst != nullptr, w, ": unknown key '", k.substr(0, 40),
                 "' (known: n_head, n_kv_head, ffn_dim)");
      *dst = cj::get_int(it.value(), w + "." + k, 1, int64_t{1} << 20);
    }
    out.push_back(lw);
  }
  return out;
}

LoadedModel student_from_teacher(const LoadedModel& teacher, const std::vector<int64_t>& keep_in,
                                 const std::vector<LayerWidths>& widths) {
  const ModelSpec& ts = teacher.spec;
  std::vector<int64_t> keep = keep_in;
  if (keep.empty())
    for (int64_t l = 0; l < ts.n_layer(); ++l) keep.push_back(l);
  SLMC_CHECK(widths.empty() || static_cast<int64_t>(widths.size()) == ts.n_layer(),
             "widths: ", widths.size(), " entries for a teacher of ", ts.n_layer(), " layers");
  LoadedModel s;
  s.path = teacher.path + " (student)";
  s.format = "hf";
  s.spec = ts;
  s.spec.layers.clear();
  for (const char* n : {names::kTokenEmbd, names::kOutputNorm, names::kOutput}) {
    auto it = teacher.tensors.find(n);
    if (it != teacher.tensors.end()) s.tensors[n] = it->second;
  }
  for (size_t j = 0; j < keep.size(); ++j) {
    const int64_t l = keep[j];
    SLMC_CHECK(l >= 0 && l < ts.n_layer(), "keep_layers index ", l, " is out of range: the teacher has ",
               ts.n_layer(), " layers");
    LayerSpec ls = ts.layers[static_cast<size_t>(l)];
    const std::string from = "blk." + std::to_string(l) + ".";
    const std::string to = "blk." + std::to_string(j) + ".";
    TensorMap layer;  // suffix -> tensor
    for (const auto& kv : teacher.tensors)
      if (kv.first.compare(0, from.size(), from) == 0) layer[kv.first.substr(from.size())] = kv.second;
    const LayerWidths w = widths.empty() ? LayerWidths{} : widths[static_cast<size_t>(l)];
    const std::string where = "widths: teacher layer " + std::to_string(l);
    if (w.n_head || w.n_kv_head || w.ffn_dim) {
      SLMC_CHECK(!ls.is_moe(), where, " is a mixture of experts; widths apply to dense layers only");
    }
    if (w.ffn_dim && w.ffn_dim != ls.ffn_dim) {
      SLMC_CHECK(w.ffn_dim <= ls.ffn_dim, where, ": ffn_dim ", w.ffn_dim, " exceeds the teacher's ",
                 ls.ffn_dim);
      const HostTensor& g = layer.at(names::kFfnGate);
      const HostTensor& u = layer.at(names::kFfnUp);
      const HostTensor& d = layer.at(names::kFfnDown);
      std::vector<double> score(static_cast<size_t>(ls.ffn_dim));
      for (int64_t c = 0; c < ls.ffn_dim; ++c)
        score[static_cast<size_t>(c)] = rows_norm(g, c, c + 1) * rows_norm(u, c, c + 1) * cols_norm(d, c, c + 1);
      const std::vector<int64_t> kc = top_units(score, w.ffn_dim);
      for (const char* n : {names::kFfnGate, names::kFfnUp, names::kFfnGateBias, names::kFfnUpBias})
        if (layer.count(n)) layer[n] = take_rows(layer[n], kc, 1);
      layer[names::kFfnDown] = take_cols(d, kc, 1);
      ls.ffn_dim = w.ffn_dim;
    }
    const int64_t H = ls.n_head, KV = ls.n_kv_head, hd = ls.head_dim, g = H / KV;
    const int64_t nkv = w.n_kv_head ? w.n_kv_head : KV;
    const int64_t nh = w.n_head ? w.n_head : nkv * g;
    if (nh != H || nkv != KV) {
      SLMC_CHECK(nkv <= KV, where, ": n_kv_head ", nkv, " exceeds the teacher's ", KV);
      SLMC_CHECK(nh % nkv == 0, where, ": n_head ", nh, " is not a multiple of n_kv_head ", nkv);
      SLMC_CHECK(nh / nkv <= g, where, ": n_head ", nh, " / n_kv_head ", nkv, " = ", nh / nkv,
                 " heads per KV group exceeds the teacher's ", g);
      const HostTensor& o = layer.at(names::kAttnOut);
      std::vector<double> head_score(static_cast<size_t>(H));
      for (int64_t h = 0; h < H; ++h) head_score[static_cast<size_t>(h)] = cols_norm(o, h * hd, (h + 1) * hd);
      // Within each KV group the best nh / nkv heads; groups ranked by their kept heads' sum.
      std::vector<std::vector<int64_t>> kept_in_group(static_cast<size_t>(KV));
      std::vector<double> group_score(static_cast<size_t>(KV), 0);
      for (int64_t kvh = 0; kvh < KV; ++kvh) {
        std::vector<double> s(head_score.begin() + kvh * g, head_score.begin() + (kvh + 1) * g);
        for (int64_t h : top_units(s, nh / nkv)) {
          kept_in_group[static_cast<size_t>(kvh)].push_back(kvh * g + h);
          group_score[static_cast<size_t>(kvh)] += s[static_cast<size_t>(h)];
        }
      }
      const std::vector<int64_t> kg = top_units(group_score, nkv);
      std::vector<int64_t> kh;
      for (int64_t kvh : kg)
        kh.insert(kh.end(), kept_in_group[static_cast<size_t>(kvh)].begin(), kept_in_group[static_cast<size_t>(kvh)].end());
      for (const char* n : {names::kAttnQ, names::kAttnQBias})
        if (layer.count(n)) layer[n] = take_rows(layer[n], kh, hd);
      for (const char* n : {names::kAttnK, names::kAttnV, names::kAttnKBias, names::kAttnVBias})
        if (layer.count(n)) layer[n] = take_rows(layer[n], kg, hd);
      layer[names::kAttnOut] = take_cols(o, kh, hd);
      ls.n_head = nh;
      ls.n_kv_head = nkv;
    }
    s.spec.layers.push_back(ls);
    for (auto& kv : layer) s.tensors[to + kv.first] = std::move(kv.second);
  }
  s.spec.validate();
  check_tensors(s.spec, s.tensors, s.path);
  return s;
}

std::vector<int32_t> parse_vocab_map(const std::string& text, const std::string& origin,
                                     int64_t student_vocab, int64_t teacher_vocab) {
  std::vector<int32_t> map;
  std::istringstream is(text);
  std::set<int64_t> seen;
  int64_t line_no = 0;
  for (std::string line; std::getline(is, line);) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    SLMC_CHECK(static_cast<int64_t>(map.size()) < student_vocab, origin, ":", line_no,
               ": more lines than the student's ", student_vocab, " token ids");
    long long v = -2;
    SLMC_CHECK(whole_int(line, &v), origin, ":", line_no, ": '", line.substr(0, 40),
               "' is not a teacher token id or -1");
    SLMC_CHECK(v >= -1 && v < teacher_vocab, origin, ":", line_no, ": teacher id ", v,
               " outside [-1, ", teacher_vocab, ")");
    SLMC_CHECK(v < 0 || seen.insert(v).second, origin, ":", line_no, ": teacher id ", v,
               " is mapped twice");
    map.push_back(static_cast<int32_t>(v));
  }
  SLMC_CHECK(static_cast<int64_t>(map.size()) == student_vocab, origin, ": ", map.size(),
             " lines, the student has ", student_vocab, " token ids (one line each)");
  SLMC_CHECK(!seen.empty(), origin, ": no student id maps to a teacher id");
  return map;
}

}  // namespace slmc::distill
