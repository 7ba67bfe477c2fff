// Test support: one table of an HDF5 results file as h5py reads it (the analyst's view), every row a JSON object of
// every column — text decoded from UTF-8, numbers as numbers, NaN and infinities as null.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace xfer::test {

// The rows of `table` (e.g. "trials", "runs", "problems") in the file `h5`; a failed read is a test failure and an
// empty array.
nlohmann::json h5_table(const std::string& h5, const std::string& table);

}  // namespace xfer::test
