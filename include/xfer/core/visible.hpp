// core/visible: text that reaches a terminal as text. A value can hold any bytes (a results file's or a folder name's
// author chooses them), and escape sequences in it would set the terminal's title or colours, or clear it. Control
// characters — C0 but tab and newline, DEL, and the UTF-8 C1 controls U+0080–U+009F — are written as visible escapes:
// ESC as \x1b, U+009B as \u009b. Everything else, UTF-8 included, passes unchanged.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace xfer {

// Byte by byte, for streams (app/terminal's SafeTerminal): `emit(const char*, size_t)` receives what to write.
class VisibleText {
 public:
  template <class Emit>
  bool put(unsigned char c, Emit&& emit) {
    char buf[8];
    if (lead_) {  // the byte after 0xC2: U+0080..U+00BF
      lead_ = false;
      if (c >= 0x80 && c <= 0x9F) return emit(buf, std::snprintf(buf, sizeof buf, "\\u%04x", c));
      if (!emit("\xC2", 1)) return false;
    }
    if (c == 0xC2) {
      lead_ = true;
      return true;
    }
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) return emit(buf, std::snprintf(buf, sizeof buf, "\\x%02x", c));
    const char ch = static_cast<char>(c);
    return emit(&ch, 1);
  }
  // A 0xC2 still waiting for its next byte is written as it is.
  template <class Emit>
  bool finish(Emit&& emit) {
    if (!lead_) return true;
    lead_ = false;
    return emit("\xC2", 1);
  }

 private:
  bool lead_ = false;
};

// A whole string (log lines, error messages).
inline std::string visible(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  VisibleText v;
  auto emit = [&](const char* s, int n) {
    out.append(s, static_cast<size_t>(n));
    return true;
  };
  for (const char c : text) v.put(static_cast<unsigned char>(c), emit);
  v.finish(emit);
  return out;
}

}  // namespace xfer
