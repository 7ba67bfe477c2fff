#include "csv_table.hpp"

#include <fstream>
#include <sstream>

#include "xfer/core/error.hpp"

namespace xfer::data {

CsvTable CsvTable::read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error::input(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  CsvTable t;
  t.path = path;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  int line = 1, row_line = 1;
  size_t i = 0;
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF && static_cast<unsigned char>(text[1]) == 0xBB &&
      static_cast<unsigned char>(text[2]) == 0xBF)
    i = 3;  // UTF-8 byte-order mark
  auto end_row = [&] {
    row.push_back(field);
    field.clear();
    const bool blank = row.size() == 1 && row[0].empty();
    if (!blank) {
      if (t.header.empty()) t.header = row;
      else t.rows.push_back(row), t.lines.push_back(row_line);
    }
    row.clear();
    any = false;
  };
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
        else quoted = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"' && field.empty()) {
      quoted = any = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_row();
      ++line;
      row_line = line;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted) throw Error::input(path + ":" + std::to_string(row_line) + ": unterminated quoted field");
  if (any || !field.empty()) end_row();
  if (t.header.empty()) throw Error::input(path + ": empty file, expected a header row");
  for (auto& h : t.header) {
    while (!h.empty() && (h.back() == ' ')) h.pop_back();
    while (!h.empty() && (h.front() == ' ')) h.erase(h.begin());
  }
  return t;
}

int CsvTable::find_column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return static_cast<int>(i);
  return -1;
}

int CsvTable::column(const std::string& name) const {
  const int c = find_column(name);
  if (c < 0) {
    std::string have;
    for (const auto& h : header) have += (have.empty() ? "" : ", ") + h;
    throw Error::input(path + ":1: no column '" + name + "' (the header has: " + have + ")");
  }
  return c;
}

}  // namespace xfer::data
