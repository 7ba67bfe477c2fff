// app: CLI11 validators whose messages say what was given and what is expected, in the words of the README
// (CLI11's own Range prints the limits of double).
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace xfer::app {

// A number ≥ min (or > min when `strictly`); `why` is added to the message, e.g. "three heartbeats".
inline CLI::Validator at_least(double min, bool strictly = false, const std::string& why = "") {
  return CLI::Validator(
      [=](std::string& v) -> std::string {
        double x = 0;
        try {
          size_t n = 0;
          x = std::stod(v, &n);
          if (n != v.size()) throw std::invalid_argument(v);
        } catch (const std::exception&) {
          return "expected a number, got '" + v + "'";
        }
        if (strictly ? x > min : x >= min) return "";
        return fmt::format("got {}, expected {} {:g}{}", v, strictly ? "more than" : "at least", min,
                           why.empty() ? "" : " (" + why + ")");
      },
      fmt::format("{}{:g}", strictly ? ">" : ">=", min));
}

}  // namespace xfer::app
