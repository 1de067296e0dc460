// Plain-text tables for people: each column as wide as its widest cell, two spaces apart. Cells
// may carry colour (ANSI escapes) and UTF-8: widths count what shows.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace nodeha::cli {

// The first `width` characters that show of `s` (escape sequences kept whole, UTF-8 never split).
std::string cut_to_width(const std::string& s, size_t width);

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : rows_{std::move(headers)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // The headers and rows, one line each, without a newline.
  std::vector<std::string> lines() const;
  void print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;  // the headers first
};

}  // namespace nodeha::cli
