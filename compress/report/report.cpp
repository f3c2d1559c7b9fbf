#include "compress/report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/report/svg.h"

namespace slmc::report {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string bytes_str(double b) { return with_commas(static_cast<uint64_t>(std::llround(b))); }
std::string ppl_str(double p) { return p > 0 ? fmt("%.4f", p) : "-"; }
std::string kl_str(double k) { return k >= 0 ? fmt("%.6f", k) : "-"; }
std::string top1_str(double t) { return t >= 0 ? fmt("%.2f%%", 100 * t) : "-"; }
std::string pct_str(double s) { return fmt("%.2f%%", 100 * s); }

// Markdown table cells must not contain a bare '|'.
std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

// The plots' data: every point with a measured value, the frontier as a joined series.
std::vector<Series> pareto_series(const RunReport& r, bool kl) {
  Series all{"models", {}, {}, {}, false, true};
  for (const ModelPoint& p : r.points) {
    const double y = kl ? p.kl : p.ppl;
    if (kl ? y < 0 : y <= 0) continue;
    all.x.push_back(p.bytes);
    all.y.push_back(y);
    all.labels.push_back(p.label);
  }
  std::vector<Series> out{all};
  if (!kl) {
    Series front{"frontier", {}, {}, {}, true, false};
    for (size_t i : pareto_front(r.points)) {
      front.x.push_back(r.points[i].bytes);
      front.y.push_back(r.points[i].ppl);
    }
    if (front.x.size() >= 2) out.push_back(front);
  }
  return out;
}

}  // namespace

std::vector<size_t> pareto_front(const std::vector<ModelPoint>& pts) {
  std::vector<size_t> out;
  for (size_t i = 0; i < pts.size(); ++i) {
    if (pts[i].ppl <= 0) continue;
    bool dominated = false;
    for (size_t j = 0; j < pts.size() && !dominated; ++j) {
      if (j == i || pts[j].ppl <= 0) continue;
      const bool no_worse = pts[j].bytes <= pts[i].bytes && pts[j].ppl <= pts[i].ppl;
      const bool better = pts[j].bytes < pts[i].bytes || pts[j].ppl < pts[i].ppl;
      dominated = no_worse && better;
    }
    if (!dominated) out.push_back(i);
  }
  std::sort(out.begin(), out.end(), [&](size_t a, size_t b) {
    return pts[a].bytes < pts[b].bytes || (pts[a].bytes == pts[b].bytes && a < b);
  });
  return out;
}

std::string pareto_ppl_svg(const RunReport& r) {
  PlotSpec s;
  s.title = "Perplexity against size";
  s.x_label = "tensor bytes";
  s.y_label = "perplexity";
  s.x_log = true;
  s.x_si = true;
  return svg_plot(s, pareto_series(r, false));
}

std::string pareto_kl_svg(const RunReport& r) {
  PlotSpec s;
  s.title = "KL divergence from the original against size";
  s.x_label = "tensor bytes";
  s.y_label = "mean KL (nats)";
  s.x_log = true;
  s.x_si = true;
  // KL spans decades between int8 and aggressive compression; the original (0) is left out.
  s.y_log = true;
  return svg_plot(s, pareto_series(r, true));
}

std::string tensor_bits_svg(const RunReport& r) {
  std::vector<std::string> labels, groups;
  std::vector<double> bits;
  for (const TensorRow& t : r.tensors) {
    labels.push_back(t.name);
    bits.push_back(t.bits);
    groups.push_back(t.format);
  }
  return svg_bars("Bits per weight of each tensor", "bits per weight", labels, bits, groups);
}

std::string curves_svg(const RunReport& r) {
  if (r.curves.empty()) return "";
  std::vector<Series> ss;
  for (const Curve& c : r.curves) ss.push_back(Series{c.name, c.step, c.value, {}, true, false});
  PlotSpec s;
  s.title = "Training curves";
  s.x_label = "step";
  s.y_label = "value";
  return svg_plot(s, ss);
}

std::string markdown(const RunReport& r, const std::string& plot_prefix) {
  std::ostringstream o;
  o << "# slmc run: " << md_cell(r.title) << "\n\n";
  if (!r.version.empty()) o << "slmc " << md_cell(r.version) << "\n\n";
  o << "## Stages\n\n| stage | what | seconds | cached |\n|---|---|---|---|\n";
  for (const StageRow& s : r.stages)
    o << "| " << md_cell(s.name) << " | " << md_cell(s.detail) << " | " << fmt("%.1f", s.seconds)
      << " | " << (s.cached ? "yes" : "no") << " |\n";
  o << "\n## Accuracy per byte";
  if (!r.eval_data.empty()) o << " (" << md_cell(r.eval_data) << ")";
  o << "\n\n| model | tensor bytes | parameters | sparsity | perplexity | KL | top-1 |\n"
       "|---|---|---|---|---|---|---|\n";
  for (const ModelPoint& p : r.points)
    o << "| " << md_cell(p.label) << " | " << bytes_str(p.bytes) << " | "
      << with_commas(static_cast<uint64_t>(std::max<int64_t>(0, p.params))) << " | "
      << pct_str(p.sparsity) << " | " << ppl_str(p.ppl) << " | " << kl_str(p.kl) << " | "
      << top1_str(p.top1) << " |\n";
  o << "\n![perplexity against size](" << plot_prefix << "pareto_ppl.svg)\n";
  o << "![KL against size](" << plot_prefix << "pareto_kl.svg)\n";
  if (!r.gates.empty()) {
    o << "\n## Gates\n\n| gate | limit | measured | result |\n|---|---|---|---|\n";
    for (const GateRow& g : r.gates)
      o << "| " << md_cell(g.name) << " | " << fmt("%.6g", g.limit) << " | " << fmt("%.6g", g.value)
        << " | " << (g.passed ? "pass" : "**FAIL**") << " |\n";
  }
  if (!r.curves.empty()) o << "\n## Training\n\n![training curves](" << plot_prefix << "curves.svg)\n";
  if (!r.tensors.empty()) {
    o << "\n## Tensors of the final artifact\n\n![bits per tensor](" << plot_prefix
      << "tensor_bits.svg)\n\n| tensor | format | bits/weight | rel. L2 error | sparsity |\n"
         "|---|---|---|---|---|\n";
    for (const TensorRow& t : r.tensors)
      o << "| " << md_cell(t.name) << " | " << md_cell(t.format) << " | " << fmt("%.3f", t.bits)
        << " | " << fmt("%.5f", t.rel_l2) << " | " << pct_str(t.sparsity) << " |\n";
  }
  if (!r.notes.empty()) {
    o << "\n## Notes\n\n";
    for (const std::string& n : r.notes) o << "- " << md_cell(n) << "\n";
  }
  return o.str();
}

std::string html(const RunReport& r) {
  std::ostringstream o;
  auto e = [](const std::string& s) { return xml_escape(s); };
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>slmc run: "
    << e(r.title) << "</title>\n<style>\n"
    << "body{font-family:sans-serif;margin:2em auto;max-width:1000px;color:#222}\n"
    << "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
       "text-align:right}td:first-child,th:first-child,td.l{text-align:left}\n"
    << ".fail{color:#b00;font-weight:bold}.pass{color:#070}.plots{display:flex;flex-wrap:wrap;gap:1em}\n"
    << "</style></head><body>\n";
  o << "<h1>slmc run: " << e(r.title) << "</h1>\n";
  if (!r.version.empty()) o << "<p>slmc " << e(r.version) << "</p>\n";
  o << "<h2>Stages</h2>\n<table><tr><th>stage</th><th>what</th><th>seconds</th><th>cached</th></tr>\n";
  for (const StageRow& s : r.stages)
    o << "<tr><td>" << e(s.name) << "</td><td class=\"l\">" << e(s.detail) << "</td><td>"
      << fmt("%.1f", s.seconds) << "</td><td>" << (s.cached ? "yes" : "no") << "</td></tr>\n";
  o << "</table>\n<h2>Accuracy per byte" << (r.eval_data.empty() ? "" : " (" + e(r.eval_data) + ")")
    << "</h2>\n<table><tr><th>model</th><th>tensor bytes</th><th>parameters</th><th>sparsity</th>"
       "<th>perplexity</th><th>KL</th><th>top-1</th></tr>\n";
  for (const ModelPoint& p : r.points)
    o << "<tr><td>" << e(p.label) << "</td><td>" << bytes_str(p.bytes) << "</td><td>"
      << with_commas(static_cast<uint64_t>(std::max<int64_t>(0, p.params))) << "</td><td>"
      << pct_str(p.sparsity) << "</td><td>" << ppl_str(p.ppl) << "</td><td>" << kl_str(p.kl)
      << "</td><td>" << top1_str(p.top1) << "</td></tr>\n";
  o << "</table>\n<div class=\"plots\">\n" << pareto_ppl_svg(r) << pareto_kl_svg(r) << "</div>\n";
  if (!r.gates.empty()) {
    o << "<h2>Gates</h2>\n<table><tr><th>gate</th><th>limit</th><th>measured</th><th>result</th></tr>\n";
    for (const GateRow& g : r.gates)
      o << "<tr><td>" << e(g.name) << "</td><td>" << fmt("%.6g", g.limit) << "</td><td>"
        << fmt("%.6g", g.value) << "</td><td class=\"" << (g.passed ? "pass\">pass" : "fail\">FAIL")
        << "</td></tr>\n";
    o << "</table>\n";
  }
  if (!r.curves.empty()) o << "<h2>Training</h2>\n" << curves_svg(r);
  if (!r.tensors.empty()) {
    o << "<h2>Tensors of the final artifact</h2>\n" << tensor_bits_svg(r)
      << "<table><tr><th>tensor</th><th>format</th><th>bits/weight</th><th>rel. L2 error</th>"
         "<th>sparsity</th></tr>\n";
    for (const TensorRow& t : r.tensors)
      o << "<tr><td>" << e(t.name) << "</td><td>" << e(t.format) << "</td><td>"
        << fmt("%.3f", t.bits) << "</td><td>" << fmt("%.5f", t.rel_l2) << "</td><td>"
        << pct_str(t.sparsity) << "</td></tr>\n";
    o << "</table>\n";
  }
  if (!r.notes.empty()) {
    o << "<h2>Notes</h2>\n<ul>\n";
    for (const std::string& n : r.notes) o << "<li>" << e(n) << "</li>\n";
    o << "</ul>\n";
  }
  o << "</body></html>\n";
  return o.str();
}

void write_report(const RunReport& r, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  SLMC_CHECK(!ec, dir, ": cannot create the report directory: ", ec.message());
  const std::filesystem::path d(dir);
  write_file_atomically((d / "pareto_ppl.svg").string(), pareto_ppl_svg(r));
  write_file_atomically((d / "pareto_kl.svg").string(), pareto_kl_svg(r));
  write_file_atomically((d / "tensor_bits.svg").string(), tensor_bits_svg(r));
  if (!r.curves.empty()) write_file_atomically((d / "curves.svg").string(), curves_svg(r));
  write_file_atomically((d / "report.md").string(), markdown(r, ""));
  write_file_atomically((d / "report.html").string(), html(r));
}

}  // namespace slmc::report
