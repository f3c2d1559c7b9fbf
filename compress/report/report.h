// The report of a recipe run (`slmc run`): what each stage made, how accurate each output is for
// its size, per-tensor bits and errors, training curves, and the gates. Rendered as Markdown
// (with sibling .svg plots) and as one self-contained HTML file with inline SVG.
// Torch-free: the runner fills a RunReport; this library only formats it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slmc::report {

// One model on the accuracy-per-byte plane: the original, or a stage's output / an artifact.
struct ModelPoint {
  std::string label;     // "original", "distill", "quantize", "model.gguf", ...
  double bytes = 0;      // tensor bytes as stored (the artifact's, or fp32 for in-memory models)
  double ppl = 0;        // perplexity on the eval data (0 = not measured)
  double kl = -1;        // mean KL(original || this), nats (< 0 = not measured)
  double top1 = -1;      // top-1 agreement with the original (< 0 = not measured)
  int64_t params = 0;    // parameters (after structured pruning or distillation to a smaller net)
  double sparsity = 0;   // share of exactly-zero weights in the linears
};

struct StageRow {
  std::string name;      // as in the recipe: "distill", "prune", "quantize", "export slm", ...
  std::string detail;    // one line: method and key options
  double seconds = 0;
  bool cached = false;   // reused from the stage cache instead of run
};

struct TensorRow {
  std::string name;
  std::string format;    // "q4_0", "q4_k", "f32", ...
  double bits = 0;       // bits per weight as stored
  double rel_l2 = 0;     // ||w - q|| / ||w|| against the stage's input
  double sparsity = 0;   // share of exact zeros
};

struct Curve {
  std::string name;      // "distill: train loss", "distill: held-out ppl"
  std::vector<double> step, value;
};

struct GateRow {
  std::string name;      // "max_kl"
  double limit = 0;
  double value = 0;
  bool passed = true;
};

struct RunReport {
  std::string title;     // the recipe file
  std::string version;   // slmc version
  std::string eval_data; // what accuracy was measured on ("" = none)
  std::vector<StageRow> stages;
  std::vector<ModelPoint> points;  // points[0] is the original
  std::vector<TensorRow> tensors;  // of the final artifact
  std::vector<Curve> curves;
  std::vector<GateRow> gates;
  std::vector<std::string> notes;
};

// The plots, as standalone SVG documents (also embedded in the HTML).
std::string pareto_ppl_svg(const RunReport& r);   // perplexity vs bytes, frontier joined
std::string pareto_kl_svg(const RunReport& r);    // KL vs bytes
std::string tensor_bits_svg(const RunReport& r);  // per-tensor bits, coloured by format
std::string curves_svg(const RunReport& r);       // training curves ("" if none)

// Markdown; plots are referenced as `<plot_prefix>pareto_ppl.svg` etc. (the files
// write_report() writes beside it).
std::string markdown(const RunReport& r, const std::string& plot_prefix);
// One HTML file with every plot inline: no script, no external reference.
std::string html(const RunReport& r);

// Writes DIR/report.md, DIR/report.html and the .svg plots, each atomically.
void write_report(const RunReport& r, const std::string& dir);

// Indices of the points on the accuracy-per-byte frontier: no other point is at most as large
// and at most as bad (by `ppl`), with one of the two strictly better. Sorted by bytes.
std::vector<size_t> pareto_front(const std::vector<ModelPoint>& pts);

}  // namespace slmc::report
