#include "compress/recipe/yaml_options.h"

namespace slmc {

std::string yaml_where(const std::string& file, const YAML::Node& node) {
  const YAML::Mark m = node.Mark();
  return m.is_null() ? file : file + ":" + std::to_string(m.line + 1);
}

YAML::Node load_yaml_file(const std::string& path) {
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail(path, ": cannot open");
  } catch (const YAML::ParserException& e) {
    fail(path, ":", e.mark.line + 1, ": YAML syntax error: ", e.msg);
  }
}

}  // namespace slmc
