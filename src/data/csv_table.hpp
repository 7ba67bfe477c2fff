// data/csv_table: a small RFC 4180 reader for the datasets' CSV files (quoted fields, header row), with line numbers
// for error messages.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace xfer::data {

struct CsvTable {
  std::string path;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int> lines;  // source line of each row

  static CsvTable read(const std::string& path);
  // Column index; throws Error (input) naming the file and the columns it has.
  int column(const std::string& name) const;
  int find_column(const std::string& name) const;  // -1 if absent
  std::string where(size_t row) const { return path + ":" + std::to_string(lines[row]); }
};

}  // namespace xfer::data
