// app/terminal: what a command prints from a results file reaches the terminal as text. While a SafeTerminal lives,
// std::cout writes control characters as visible escapes (core/visible: ESC as \x1b, U+009B as \u009b).
#pragma once

#include <iostream>
#include <streambuf>

#include "xfer/core/visible.hpp"

namespace xfer::app {

class SafeTerminal : private std::streambuf {
 public:
  SafeTerminal() : out_(std::cout.rdbuf(this)) {}
  ~SafeTerminal() override {
    text_.finish([this](const char* s, int n) { return put(s, n); });
    std::cout.rdbuf(out_);
  }
  SafeTerminal(const SafeTerminal&) = delete;
  SafeTerminal& operator=(const SafeTerminal&) = delete;

 private:
  int overflow(int ch) override {
    if (ch == traits_type::eof()) return 0;
    return text_.put(static_cast<unsigned char>(ch), [this](const char* s, int n) { return put(s, n); })
               ? ch
               : traits_type::eof();
  }
  int sync() override { return out_->pubsync(); }
  bool put(const char* s, int n) { return out_->sputn(s, n) == n; }

  std::streambuf* out_;
  VisibleText text_;
};

}  // namespace xfer::app
