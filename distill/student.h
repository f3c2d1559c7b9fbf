// Students made from the teacher (torch-free): a subset of its layers, optionally with fewer
// attention heads and MLP channels per layer, initialised with the teacher's weights.
//
//   keep_layers   teacher layers the student keeps, in order: indices ("0", "2", "4"), or one of
//                 "every_other" (0, 2, 4, ...) or "all". Student layer j is teacher layer keep[j].
//   widths        a widths report, JSON: {"layers": [{"n_head": 8, "n_kv_head": 4,
//                 "ffn_dim": 512}, ...]} with one entry per TEACHER layer (every key optional; a
//                 missing key keeps the teacher's width). The units kept are the most important
//                 by weight magnitude: an MLP channel c scores |gate[c,:]| |up[c,:]| |down[:,c]|
//                 (L2 norms), an attention head the L2 norm of its attention-output columns; a
//                 KV group scores the sum over its kept heads. Kept units stay in teacher order.
//                 A report may cut KV groups (n_kv_head) and heads per group (n_head / n_kv_head).
// Vocabulary map (when the student's vocabulary differs from the teacher's): a text file with one
// teacher token id per line, line i giving the teacher id of student id i, or -1 for a student
// token the teacher does not have. The training data must use mapped ids only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compress/io/model_loader.h"
#include "compress/recipe/selector.h"

namespace slmc::distill {

// Widths of one layer; 0 keeps the teacher's.
struct LayerWidths {
  int64_t n_head = 0, n_kv_head = 0, ffn_dim = 0;
};

// Teacher layer of each student layer; throws naming the item's origin for an index out of
// [0, n_teacher_layers), a repeat, a decreasing order, or an unknown word.
std::vector<int64_t> parse_keep_layers(const PatternList& items, int64_t n_teacher_layers);

// Parses a widths report (format above); throws naming `origin` and the entry.
std::vector<LayerWidths> parse_widths_report(const std::string& json_text, const std::string& origin,
                                             int64_t n_teacher_layers);

// The student: teacher layers `keep` (empty = all) with `widths` per teacher layer (empty = the
// teacher's). Throws naming the layer and the value for widths the layer cannot take (more
// units than the teacher has, n_head not a multiple of n_kv_head, more heads per KV group than
// the teacher's, MoE layers).
LoadedModel student_from_teacher(const LoadedModel& teacher, const std::vector<int64_t>& keep,
                                 const std::vector<LayerWidths>& widths);

// Parses a vocabulary map (format above) for a student of `student_vocab` ids and a teacher of
// `teacher_vocab`; throws naming `origin` and the line.
std::vector<int32_t> parse_vocab_map(const std::string& text, const std::string& origin,
                                     int64_t student_vocab, int64_t teacher_vocab);

}  // namespace slmc::distill
