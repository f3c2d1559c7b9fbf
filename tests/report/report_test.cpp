#include "compress/report/report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "compress/report/svg.h"
#include "tests/test_util.h"

namespace slmc::report {
namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

RunReport sample() {
  RunReport r;
  r.title = "recipes/demo.yaml";
  r.version = "0.1.0";
  r.eval_data = "eval <held-out> & more";
  r.stages = {{"distill", "keep_layers every other, kl 1.0", 12.5, false},
              {"prune", "wanda 2:4", 3.25, true},
              {"quantize", "gptq q4_0", 4.0, false}};
  r.points = {{"original", 4.0e6, 6.20, -1, -1, 1000000, 0.0},
              {"distill", 2.0e6, 6.90, 0.05, 0.81, 500000, 0.0},
              {"prune", 2.0e6, 7.40, 0.09, 0.77, 500000, 0.5},
              {"quantize", 0.6e6, 7.55, 0.10, 0.76, 500000, 0.5},
              {"worse and bigger", 3.0e6, 9.0, 0.3, 0.5, 700000, 0.0}};
  r.tensors = {{"blk.0.attn_q.weight", "q4_0", 4.5, 0.11, 0.5},
               {"blk.0.ffn_down.weight", "q8_0", 8.5, 0.01, 0.5},
               {"token_embd.weight", "q8_0", 8.5, 0.009, 0.0}};
  r.curves = {{"distill: train loss", {0, 100, 200}, {3.2, 2.1, 1.9}},
              {"distill: held-out loss", {0, 100, 200}, {3.3, 2.3, 2.0}}};
  r.gates = {{"max_kl", 0.2, 0.10, true}, {"max_bytes", 500000, 600000, false}};
  r.notes = {"a note with | a pipe and <angle> brackets"};
  return r;
}

TEST(Svg, NiceTicksOnLinearAndLogAxes) {
  EXPECT_EQ(nice_ticks(0, 1, 5, false), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  const std::vector<double> t = nice_ticks(-3, 7, 5, false);
  EXPECT_EQ(t.front(), -2);
  EXPECT_EQ(t.back(), 6);
  EXPECT_EQ(nice_ticks(1e3, 1e7, 5, true), (std::vector<double>{1e3, 1e4, 1e5, 1e6, 1e7}));
  EXPECT_EQ(nice_ticks(1.5e5, 9e6, 5, true), (std::vector<double>{2e5, 5e5, 1e6, 2e6, 5e6}));
  EXPECT_TRUE(nice_ticks(1, 1, 5, false).empty());
  EXPECT_EQ(tick_label(1.5e6, true), "1.5M");
  EXPECT_EQ(tick_label(0.05, false), "0.05");
  EXPECT_EQ(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

TEST(Report, ParetoFrontLeavesOutDominatedPoints) {
  const RunReport r = sample();
  // "worse and bigger" (3 MB, ppl 9) is dominated by "distill" (2 MB, 6.9); "prune" by "distill".
  EXPECT_EQ(pareto_front(r.points), (std::vector<size_t>{3, 1, 0}));
}

TEST(Report, PlotsAreWellFormedXmlAndSelfContained) {
  const RunReport r = sample();
  const std::string page = html(r);
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("http://", page.find("<body")), page.find("http://www.w3.org/2000/svg"));
  EXPECT_EQ(count(page, "<svg"), 4u);  // pareto ppl, pareto kl, curves, tensor bits
  EXPECT_EQ(count(page, "<svg"), count(page, "</svg>"));
  EXPECT_NE(page.find("&lt;held-out&gt; &amp; more"), std::string::npos);
  EXPECT_NE(page.find("class=\"fail\">FAIL"), std::string::npos);
  // An independent XML parser (Python's) accepts every plot.
  slmc::testing::TempDir dir;
  write_report(r, dir.str());
  for (const char* f : {"pareto_ppl.svg", "pareto_kl.svg", "tensor_bits.svg", "curves.svg"}) {
    const std::string cmd = "/usr/bin/python3 -c \"import sys,xml.etree.ElementTree as E; "
                            "E.parse(sys.argv[1])\" " + dir.file(f);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << f;
  }
  // The KL plot is on a log axis: the original (KL not measured) is not a point.
  EXPECT_EQ(count(pareto_kl_svg(r), "<circle"), 4u);
  EXPECT_EQ(count(pareto_ppl_svg(r), "<circle"), 5u);
}

TEST(Report, MarkdownTablesHaveOneRowPerEntryAndEscapePipes) {
  const RunReport r = sample();
  const std::string md = markdown(r, "plots/");
  EXPECT_NE(md.find("| prune | wanda 2:4 | 3.2 | yes |"), std::string::npos) << md;
  EXPECT_NE(md.find("| quantize | 600,000 | 500,000 | 50.00% | 7.5500 | 0.100000 | 76.00% |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| max_bytes | 500000 | 600000 | **FAIL** |"), std::string::npos) << md;
  EXPECT_NE(md.find("![perplexity against size](plots/pareto_ppl.svg)"), std::string::npos);
  EXPECT_NE(md.find("a note with \\| a pipe"), std::string::npos);
  EXPECT_EQ(count(md, "| blk."), 2u);
}

TEST(Report, EmptyAndNonFinitePointsDrawAPlotThatSaysSo) {
  PlotSpec s;
  s.title = "t";
  s.x_log = true;
  const std::string empty = svg_plot(s, {});
  EXPECT_NE(empty.find("no data"), std::string::npos);
  Series bad{"b", {0.0, -1, 10}, {1, 2, NAN}, {}, false, true};
  const std::string svg = svg_plot(s, {bad});
  EXPECT_NE(svg.find("3 point(s) not drawable"), std::string::npos);
  EXPECT_EQ(count(svg, "<circle"), 0u);
}

}  // namespace
}  // namespace slmc::report
