// CLI flags from an options struct's visit() (STYLE 4): one flag per key ("group_size" becomes
// --group-size), with the struct's defaults and help. The same visit() binds YAML and prints the
// resolved configuration, so flags, recipe keys and --help cannot drift apart.
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "compress/recipe/selector.h"

namespace slmc::cli {

class CliBinder {
 public:
  explicit CliBinder(CLI::App* app, std::string group = "") : app_(app), group_(std::move(group)) {}

  static std::string flag(const char* key) {
    std::string f = std::string("--") + key;
    for (char& c : f)
      if (c == '_') c = '-';
    return f;
  }

  template <typename T>
  void operator()(const char* key, T& field, const char* help) {
    add(key, app_->add_option(flag(key), field, help)->capture_default_str());
  }
  void operator()(const char* key, PatternList& field, const char* help) {
    const std::string f = flag(key);
    add(key, app_->add_option_function<std::vector<std::string>>(
                      f,
                      [&field, f](const std::vector<std::string>& v) {
                        field = PatternList();
                        for (const std::string& s : v) field.add(s, f);
                      },
                      std::string(help) + " (repeat the flag or give several values)")
                 ->type_name("PATTERN ..."));
  }

  // Keys the user gave on the command line.
  std::set<std::string> given() const {
    std::set<std::string> s;
    for (const auto& kv : opts_)
      if (kv.second->count() > 0) s.insert(kv.first);
    return s;
  }
  // key -> "--flag", for error messages.
  std::map<std::string, std::string> where() const {
    std::map<std::string, std::string> w;
    for (const auto& kv : opts_) w[kv.first] = flag(kv.first.c_str());
    return w;
  }

 private:
  void add(const char* key, CLI::Option* o) {
    if (!group_.empty()) o->group(group_);
    opts_[key] = o;
  }
  CLI::App* app_;
  std::string group_;
  std::map<std::string, CLI::Option*> opts_;
};

}  // namespace slmc::cli
