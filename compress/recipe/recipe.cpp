#include "compress/recipe/recipe.h"

#include <filesystem>

#include "compress/core/error.h"
#include "compress/recipe/yaml_options.h"

namespace slmc {

namespace {

std::string resolve_relative(const std::string& recipe, const std::string& p) {
  if (p.empty() || std::filesystem::path(p).is_absolute()) return p;
  return (std::filesystem::path(recipe).parent_path() / p).lexically_normal().string();
}

void bind_data(const std::string& file, const YAML::Node& n, const char* section, DataSpec& d,
               bool calibration) {
  d.where = yaml_where(file, n);
  bind_yaml(file, n, section, d);
  SLMC_CHECK(!d.path.empty(), d.where, ": ", section, ".path is required");
  d.path = resolve_relative(file, d.path);
  SLMC_CHECK(d.seq_len >= 2, d.where, ": ", section, ".seq_len must be >= 2, got ", d.seq_len);
  if (calibration)
    SLMC_CHECK(d.samples >= 1, d.where, ": ", section, ".samples must be >= 1, got ", d.samples);
}

Recipe load_recipe_unchecked(const std::string& path) {
  const YAML::Node root = load_yaml_file(path);
  SLMC_CHECK(root.IsMap(), path, ": a recipe must be a mapping with version, stages, ...");
  Recipe r;
  r.file = path;
  const std::set<std::string> top = {"version", "model", "data", "stages", "export", "gates"};
  for (const auto& kv : root) {
    const std::string k = yaml_key(path, kv.first);
    SLMC_CHECK(top.count(k), yaml_where(path, kv.first), ": unknown key ", quoted_excerpt(k),
               " (known: version, model, data, stages, export, gates)");
  }
  if (root["version"]) {
    const YAML::Node v = root["version"];
    try {
      r.version = v.as<int64_t>();
    } catch (const YAML::Exception&) {
      fail(yaml_where(path, v), ": key 'version' must be an integer");
    }
    SLMC_CHECK(r.version == 1, yaml_where(path, v), ": recipe version ", r.version,
               " is not supported (this slmc reads version 1)");
  }
  if (root["model"]) {
    SLMC_CHECK(root["model"].IsScalar(), yaml_where(path, root["model"]),
               ": key 'model' must be a path");
    r.model = resolve_relative(path, root["model"].Scalar());
  }
  if (const YAML::Node data = root["data"]) {
    SLMC_CHECK(data.IsMap(), yaml_where(path, data), ": 'data' must be a mapping");
    for (const auto& kv : data) {
      const std::string k = yaml_key(path, kv.first);
      if (k == "calibration") bind_data(path, kv.second, "data.calibration", r.calibration, true);
      else if (k == "eval") bind_data(path, kv.second, "data.eval", r.eval, false);
      else fail(yaml_where(path, kv.first), ": unknown key ", quoted_excerpt(k), " in data (known: calibration, eval)");
    }
  }
  const YAML::Node stages = root["stages"];
  SLMC_CHECK(stages, path, ": key 'stages' is required (a list like - quantize: {method: rtn})");
  SLMC_CHECK(stages.IsSequence() && stages.size() > 0, yaml_where(path, stages),
             ": 'stages' must be a non-empty list");
  for (const YAML::Node& s : stages) {
    SLMC_CHECK(s.IsMap() && s.size() == 1, yaml_where(path, s),
               ": each stage is a one-key mapping, e.g. '- quantize: {method: gptq, bits: 4}'");
    const auto kv = *s.begin();
    Stage st;
    st.kind = yaml_key(path, kv.first);
    st.where = yaml_where(path, kv.first);
    // Registered pass names are short identifiers; anything else is refused here, quoted.
    SLMC_CHECK(!st.kind.empty() && st.kind.size() <= 64 &&
                   st.kind.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos,
               st.where, ": unknown stage ", quoted_excerpt(st.kind), " (stage names are pass names such as quantize)");
    YAML::Node opts = kv.second;
    if (opts.IsNull()) opts = YAML::Node(YAML::NodeType::Map);
    SLMC_CHECK(opts.IsMap(), yaml_where(path, opts), ": options of stage '", st.kind,
               "' must be a mapping");
    st.pass = make_pass(st.kind, path, opts, st.where);
    r.stages.push_back(std::move(st));
  }
  if (const YAML::Node ex = root["export"]) {
    SLMC_CHECK(ex.IsSequence(), yaml_where(path, ex), ": 'export' must be a list of mappings");
    for (const YAML::Node& e : ex) {
      ExportSpec spec;
      spec.where = yaml_where(path, e);
      bind_yaml(path, e, "export", spec);
      SLMC_CHECK(spec.format == "slm" || spec.format == "hf" || spec.format == "gguf", spec.where,
                 ": export format '", spec.format, "' is not supported (supported: slm, gguf, hf)");
      SLMC_CHECK(!spec.path.empty(), spec.where, ": export.path is required");
      r.exports.push_back(spec);
    }
  }
  if (const YAML::Node g = root["gates"]) {
    r.gates.where = yaml_where(path, g);
    bind_yaml(path, g, "gates", r.gates);
  }
  return r;
}

}  // namespace

Recipe load_recipe(const std::string& path) {
  // Every node access below checks its type first; this is the net for a yaml-cpp conversion
  // nobody foresaw (in a pass's own options, say): bad input exits 2, never "internal error".
  try {
    return load_recipe_unchecked(path);
  } catch (const YAML::Exception& e) {
    fail(path, e.mark.is_null() ? "" : str_cat(":", e.mark.line + 1), ": ", printable(e.msg));
  }
}

}  // namespace slmc
