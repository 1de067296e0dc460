#include "table.h"

#include <algorithm>

namespace nodeha::cli {
namespace {

// Characters that show: ANSI escape sequences and UTF-8 continuation bytes take no room.
size_t visible_width(const std::string& s) {
  size_t width = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\033') {
      while (i < s.size() && s[i] != 'm') ++i;
      continue;
    }
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) ++width;
  }
  return width;
}

}  // namespace

std::string cut_to_width(const std::string& s, size_t width) {
  size_t shown = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\033') {
      while (i < s.size() && s[i] != 'm') ++i;
      continue;
    }
    bool starts = (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
    if (starts && shown++ == width) return s.substr(0, i);
  }
  return s;
}

std::vector<std::string> Table::lines() const {
  std::vector<size_t> width;
  for (const auto& row : rows_)
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], visible_width(row[i]));
    }
  std::vector<std::string> out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - visible_width(row[i]) + 2, ' ');
    }
    out.push_back(std::move(line));
  }
  return out;
}

void Table::print(std::ostream& out) const {
  for (const auto& line : lines()) out << line << '\n';
}

}  // namespace nodeha::cli
