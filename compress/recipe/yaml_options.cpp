#include "compress/recipe/yaml_options.h"

#include <set>
#include <sstream>
#include <vector>

#include <yaml-cpp/eventhandler.h>

#include "compress/core/atomic_file.h"

namespace slmc {

std::string yaml_where(const std::string& file, const YAML::Node& node) {
  const YAML::Mark m = node.Mark();
  return m.is_null() ? file : file + ":" + std::to_string(m.line + 1);
}

std::string yaml_key(const std::string& file, const YAML::Node& key) {
  SLMC_CHECK(key.IsScalar(), yaml_where(file, key), ": a mapping key must be a plain string, got ",
             key.IsMap() ? "a mapping" : key.IsSequence() ? "a list" : "null");
  return key.Scalar();
}

namespace {

// Records where each document starts; nothing else.
class DocumentStarts final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;
  void OnDocumentStart(const YAML::Mark& m) override { marks.push_back(m); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Keys scalar and unique in every mapping, depth bounded (an alias may make the graph cyclic).
void check_node(const std::string& file, const YAML::Node& n, int depth) {
  SLMC_CHECK(depth <= kMaxYamlDepth, yaml_where(file, n), ": nested deeper than ", kMaxYamlDepth,
             " levels");
  if (n.IsMap()) {
    std::set<std::string> keys;
    for (const auto& kv : n) {
      const std::string k = yaml_key(file, kv.first);
      SLMC_CHECK(keys.insert(k).second, yaml_where(file, kv.first), ": key ", quoted_excerpt(k),
                 " appears twice in one mapping");
      check_node(file, kv.second, depth + 1);
    }
  } else if (n.IsSequence()) {
    for (const YAML::Node& item : n) check_node(file, item, depth + 1);
  }
}

}  // namespace

YAML::Node load_yaml_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    // One document. Counted with a bounded loop, never YAML::LoadAll: yaml-cpp 0.7 (Debian 12)
    // reports a token it cannot consume (`  a:\n ,\n`) as a new empty document forever, and its
    // LoadAll appends them until the machine runs out of memory (fixed upstream in 0.8.0).
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentStarts docs;
    while (docs.marks.size() < 3 && parser.HandleNextDocument(docs)) {
    }
    if (docs.marks.size() > 1) {
      const YAML::Mark& second = docs.marks[1];
      SLMC_CHECK(docs.marks.size() == 3 && docs.marks[2].pos == second.pos, path, ":", second.line + 1,
                 ": a second YAML document (after '---'); the file must hold one");
      fail(path, ":", second.line + 1, ":", second.column + 1,
           ": YAML syntax error: text after the document that is not YAML");
    }
    YAML::Node root = YAML::Load(text);
    check_node(path, root, 0);
    return root;
  } catch (const YAML::ParserException& e) {
    fail(path, ":", e.mark.line + 1, ": YAML syntax error: ", printable(e.msg));
  } catch (const YAML::Exception& e) {
    fail(path, ":", e.mark.line + 1, ": ", printable(e.msg));
  }
}

}  // namespace slmc
