// Outputs are never left half-written: write to a temporary sibling, then rename over the target.
#pragma once

#include <functional>
#include <string>

namespace slmc {

// Calls `write(tmp_path)` with a unique temporary path in the target's directory, then renames it
// to `path`. On any exception the temporary file is removed and the exception propagates.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

// Writes `bytes` to `path` atomically.
void write_file_atomically(const std::string& path, const std::string& bytes);

// Reads a whole file; throws slmc::Error naming the path if it cannot.
std::string read_file(const std::string& path);

}  // namespace slmc
