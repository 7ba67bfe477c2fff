// app/terminal: what a command prints from a results file reaches the terminal as text. A value can hold any bytes
// (the file's author chooses them), and escape sequences in it would set the terminal's title or colours, or clear
// it. While a SafeTerminal lives, std::cout writes control characters (C0 but tab and newline, DEL, and the UTF-8
// C1 controls U+0080–U+009F) as visible escapes: ESC as \x1b, U+009B as \u009b.
#pragma once

#include <cstdio>
#include <iostream>
#include <streambuf>

namespace xfer::app {

class SafeTerminal : private std::streambuf {
 public:
  SafeTerminal() : out_(std::cout.rdbuf(this)) {}
  ~SafeTerminal() override {
    if (lead_) out_->sputc(static_cast<char>(lead_));
    std::cout.rdbuf(out_);
  }
  SafeTerminal(const SafeTerminal&) = delete;
  SafeTerminal& operator=(const SafeTerminal&) = delete;

 private:
  int overflow(int ch) override {
    if (ch == traits_type::eof()) return 0;
    const auto c = static_cast<unsigned char>(ch);
    char buf[8];
    if (lead_) {  // the byte after 0xC2: U+0080..U+00BF
      lead_ = 0;
      if (c >= 0x80 && c <= 0x9F) return put(buf, std::snprintf(buf, sizeof buf, "\\u%04x", c)) ? ch : traits_type::eof();
      if (out_->sputc(static_cast<char>(0xC2)) == traits_type::eof()) return traits_type::eof();
    }
    if (c == 0xC2) {
      lead_ = c;
      return ch;
    }
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F)
      return put(buf, std::snprintf(buf, sizeof buf, "\\x%02x", c)) ? ch : traits_type::eof();
    return out_->sputc(static_cast<char>(c)) == traits_type::eof() ? traits_type::eof() : ch;
  }
  int sync() override { return out_->pubsync(); }
  bool put(const char* s, int n) { return out_->sputn(s, n) == n; }

  std::streambuf* out_;
  unsigned char lead_ = 0;
};

}  // namespace xfer::app
