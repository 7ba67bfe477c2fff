// store/table: each HDF5 table of the results file declared once, as a list of columns (name, HDF5 type, width for
// text, the row struct's member, a one-line description) — HighFive's compound-type idea. The compound type, the
// packing and unpacking of rows, reading, appending, rewriting and the table's `description` attribute are all
// derived from that list, so a column is written in one place.
#pragma once

#include <hdf5.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include <zlib.h>
#include <vector>

#include <fmt/format.h>

#include "h5.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"

namespace xfer::store::table {

// f64, i64, i32 and flag (int8 0/1) are numbers; text is fixed-width null-padded UTF-8 (width bytes), vtext an
// HDF5 variable-length string (h5py and pandas read both as bytes/str).
enum class Type { f64, i64, i32, flag, text, vtext };

// When a column is written: with the row (`once`), or again on every update of the row (`state`). Updates write
// only the state columns, so a table's variable-length text, written once, leaves no garbage in the file's heap.
enum class Written { once, state };

// CRC-32 (IEEE 802.3) from zlib itself: Python's zlib.crc32 gives the same value over the same bytes.
inline uint32_t crc32(const std::string& bytes) {
  return static_cast<uint32_t>(::crc32_z(0L, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

template <class Row>
struct Column {
  std::string name;
  Type type = Type::f64;
  size_t width = 0;  // text only
  Written written = Written::once;
  std::string description;
  // Accessors through one representation per kind: numbers as double or int64, text as string.
  std::function<double(const Row&)> get_f64;
  std::function<void(Row&, double)> set_f64;
  std::function<int64_t(const Row&)> get_int;
  std::function<void(Row&, int64_t)> set_int;
  std::function<std::string(const Row&)> get_text;
  std::function<void(Row&, std::string)> set_text;

  // A checksum column: the CRC-32 of the row's other columns written with it (once or state), set by the table's
  // one writer and checked when the row is read back — HDF5 has no checksum on a table's rows.
  bool checksum = false;
  // A column added after the format was first released: a file written before lacks it, is read with the column's
  // default and written without it (HDF5 cannot add a field to an existing compound dataset). Never a checksummed one.
  bool added_later = false;

  Column changes() const {
    Column c = *this;
    c.written = Written::state;
    return c;
  }
  Column later() const {
    Column c = *this;
    c.added_later = true;
    return c;
  }
  Column as_checksum() const {
    Column c = *this;
    c.checksum = true;
    return c;
  }
};

template <class Row>
Column<Row> column(std::string name, Type type, size_t width, std::string description) {
  Column<Row> c;
  c.name = std::move(name);
  c.type = type;
  c.width = width;
  c.description = std::move(description);
  return c;
}

// Column builders from a member pointer: the member's C++ type picks the HDF5 type.
template <class Row>
Column<Row> col(std::string name, double Row::*m, std::string description) {
  auto c = column<Row>(std::move(name), Type::f64, 0, std::move(description));
  c.get_f64 = [m](const Row& r) { return r.*m; };
  c.set_f64 = [m](Row& r, double v) { r.*m = v; };
  return c;
}
template <class Row>
Column<Row> col(std::string name, int64_t Row::*m, std::string description) {
  auto c = column<Row>(std::move(name), Type::i64, 0, std::move(description));
  c.get_int = [m](const Row& r) { return r.*m; };
  c.set_int = [m](Row& r, int64_t v) { r.*m = v; };
  return c;
}
template <class Row>
Column<Row> col(std::string name, int32_t Row::*m, std::string description) {
  auto c = column<Row>(std::move(name), Type::i32, 0, std::move(description));
  c.get_int = [m](const Row& r) { return static_cast<int64_t>(r.*m); };
  c.set_int = [m](Row& r, int64_t v) { r.*m = static_cast<int32_t>(v); };
  return c;
}
template <class Row>
Column<Row> col(std::string name, bool Row::*m, std::string description) {
  auto c = column<Row>(std::move(name), Type::flag, 0, std::move(description));
  c.get_int = [m](const Row& r) { return (r.*m) ? 1 : 0; };
  c.set_int = [m](Row& r, int64_t v) { r.*m = v != 0; };
  return c;
}
constexpr size_t kVariable = 0;  // width of a variable-length text column
template <class Row>
Column<Row> col(std::string name, std::string Row::*m, size_t width, std::string description) {
  auto c = column<Row>(std::move(name), width == kVariable ? Type::vtext : Type::text, width, std::move(description));
  c.get_text = [m](const Row& r) { return r.*m; };
  c.set_text = [m](Row& r, std::string v) { r.*m = std::move(v); };
  return c;
}
// One element of a fixed-size array member (mean/std per channel): pandas wants flat columns, not sub-arrays.
template <class Row, size_t N>
Column<Row> col(std::string name, std::array<double, N> Row::*m, size_t i, std::string description) {
  auto c = column<Row>(std::move(name), Type::f64, 0, std::move(description));
  c.get_f64 = [m, i](const Row& r) { return (r.*m)[i]; };
  c.set_f64 = [m, i](Row& r, double v) { (r.*m)[i] = v; };
  return c;
}
// A list of integers as space-separated text ("30 60 90").
template <class Row>
Column<Row> col(std::string name, std::vector<int32_t> Row::*m, size_t width, std::string description) {
  auto c = column<Row>(std::move(name), width == kVariable ? Type::vtext : Type::text, width, std::move(description));
  c.get_text = [m](const Row& r) {
    std::string s;
    for (int32_t v : r.*m) s += (s.empty() ? "" : " ") + std::to_string(v);
    return s;
  };
  c.set_text = [m](Row& r, std::string v) {
    (r.*m).clear();
    size_t at = 0;
    try {
      while (at < v.size()) {
        size_t used = 0;
        (r.*m).push_back(static_cast<int32_t>(std::stol(v.substr(at), &used)));
        at += used;
        while (at < v.size() && v[at] == ' ') ++at;
      }
    } catch (const std::exception&) {
      // Not a list of integers (a damaged row): kept as far as it parsed; the row's checksum says it is damaged.
    }
  };
  return c;
}

// A selection of a table's columns as one packed HDF5 compound type (memory layout == file layout of the fields).
template <class Row>
class Layout {
 public:
  Layout(std::vector<const Column<Row>*> cols) : cols_(std::move(cols)) {
    for (const auto* c : cols_) {
      offset_.push_back(size_);
      size_ += field_size(*c);
    }
    type_ = h5::Handle(h5::check(H5Tcreate(H5T_COMPOUND, size_), "compound type"), H5Tclose);
    for (size_t i = 0; i < cols_.size(); ++i) {
      const auto& c = *cols_[i];
      hid_t t = -1;
      h5::Handle owned;
      switch (c.type) {
        case Type::f64: t = H5T_NATIVE_DOUBLE; break;
        case Type::i64: t = H5T_NATIVE_INT64; break;
        case Type::i32: t = H5T_NATIVE_INT32; break;
        case Type::flag: t = H5T_NATIVE_INT8; break;
        case Type::text:
        case Type::vtext:
          owned = h5::Handle(h5::check(H5Tcopy(H5T_C_S1), "string type"), H5Tclose);
          h5::check_status(H5Tset_size(owned, c.type == Type::text ? c.width : H5T_VARIABLE), "string size");
          if (c.type == Type::text) H5Tset_strpad(owned, H5T_STR_NULLPAD);
          H5Tset_cset(owned, H5T_CSET_UTF8);
          t = owned;
          break;
      }
      h5::check_status(H5Tinsert(type_, c.name.c_str(), offset_[i], t), "field " + c.name);
    }
  }
  hid_t type() const { return type_.id(); }
  size_t size() const { return size_; }
  const std::vector<const Column<Row>*>& columns() const { return cols_; }
  bool has_vtext() const {
    for (const auto* c : cols_)
      if (c->type == Type::vtext) return true;
    return false;
  }

  // Packed rows; variable-length text points into `strings`, which lives as long as the buffer.
  struct Packed {
    std::vector<char> bytes;
    std::deque<std::string> strings;
  };

  // `where(row)` names the row in an error: "file: /table, row <key>".
  void pack(const Row& r, char* dst, Packed& keep, const std::function<std::string()>& where) const {
    for (size_t i = 0; i < cols_.size(); ++i) {
      const auto& c = *cols_[i];
      char* p = dst + offset_[i];
      switch (c.type) {
        case Type::f64: {
          const double v = c.get_f64(r);
          std::memcpy(p, &v, 8);
          break;
        }
        case Type::i64: {
          const int64_t v = c.get_int(r);
          std::memcpy(p, &v, 8);
          break;
        }
        case Type::i32: {
          const int32_t v = static_cast<int32_t>(c.get_int(r));
          std::memcpy(p, &v, 4);
          break;
        }
        case Type::flag: *p = static_cast<char>(c.get_int(r) != 0); break;
        case Type::text: {
          const std::string s = c.get_text(r);
          if (s.size() > c.width)
            throw Error::input(fmt::format("{}, column {}: the value is {} bytes, the column holds {} (\"{}\"); "
                                           "text is never cut",
                                           where(), c.name, s.size(), c.width, s));
          std::memset(p, 0, c.width);
          std::memcpy(p, s.data(), s.size());
          break;
        }
        case Type::vtext: {
          keep.strings.push_back(c.get_text(r));
          const char* s = keep.strings.back().c_str();
          std::memcpy(p, &s, sizeof s);
          break;
        }
      }
    }
  }

  void unpack(const char* src, Row& r) const {
    for (size_t i = 0; i < cols_.size(); ++i) {
      const auto& c = *cols_[i];
      const char* p = src + offset_[i];
      switch (c.type) {
        case Type::f64: {
          double v;
          std::memcpy(&v, p, 8);
          c.set_f64(r, v);
          break;
        }
        case Type::i64: {
          int64_t v;
          std::memcpy(&v, p, 8);
          c.set_int(r, v);
          break;
        }
        case Type::i32: {
          int32_t v;
          std::memcpy(&v, p, 4);
          c.set_int(r, v);
          break;
        }
        case Type::flag: c.set_int(r, *p != 0); break;
        case Type::text: c.set_text(r, std::string(p, strnlen(p, c.width))); break;
        case Type::vtext: {
          const char* s;
          std::memcpy(&s, p, sizeof s);
          c.set_text(r, s ? std::string(s) : std::string());
          break;
        }
      }
    }
  }

 private:
  static size_t field_size(const Column<Row>& c) {
    switch (c.type) {
      case Type::f64:
      case Type::i64: return 8;
      case Type::i32: return 4;
      case Type::flag: return 1;
      case Type::text: return c.width;
      case Type::vtext: return sizeof(char*);
    }
    return 0;
  }
  std::vector<const Column<Row>*> cols_;
  std::vector<size_t> offset_;
  size_t size_ = 0;
  h5::Handle type_;
};

template <class Row>
class Table {
 public:
  // `row_name(row)` says which row an error is about (its key, name or id).
  Table(std::string what, std::string description, hsize_t chunk, std::function<std::string(const Row&)> row_name,
        std::vector<Column<Row>> columns, int deflate = 0)
      : what_(std::move(what)),
        description_(std::move(description)),
        chunk_(chunk),
        deflate_(deflate),
        row_name_(std::move(row_name)),
        columns_(std::move(columns)) {
    std::vector<const Column<Row>*> all, state;
    for (const auto& c : columns_) {
      all.push_back(&c);
      if (c.written == Written::state) state.push_back(&c);
    }
    all_ = std::make_unique<Layout<Row>>(all);
    if (!state.empty()) state_ = std::make_unique<Layout<Row>>(state);
  }

  const Layout<Row>& all() const { return *all_; }
  const std::vector<Column<Row>>& columns() const { return columns_; }

  // The columns a checksum column covers (in table order), empty if the table has none for `group`.
  std::vector<std::string> checksummed(Written group) const {
    std::vector<std::string> out;
    if (!checksum_of(group)) return out;
    for (const auto& c : columns_)
      if (c.written == group && !c.checksum) out.push_back(c.name);
    return out;
  }
  // The CRC-32 of a row's `group` columns, each as bytes Python's struct can rebuild: a number as 8 little-endian
  // bytes ('<d' or '<q'), a text as its byte length ('<I') then its bytes.
  uint32_t crc(const Row& r, Written group) const {
    std::string bytes;
    auto put = [&](const void* p, size_t n) { bytes.append(static_cast<const char*>(p), n); };
    for (const auto& c : columns_) {
      if (c.written != group || c.checksum) continue;
      switch (c.type) {
        case Type::f64: {
          const double v = c.get_f64(r);
          put(&v, 8);
          break;
        }
        case Type::i64:
        case Type::i32:
        case Type::flag: {
          const int64_t v = c.get_int(r);
          put(&v, 8);
          break;
        }
        case Type::text:
        case Type::vtext: {
          const std::string v = c.get_text(r);
          const uint32_t n = static_cast<uint32_t>(v.size());
          put(&n, 4);
          bytes += v;
          break;
        }
      }
    }
    return crc32(bytes);
  }
  // The row with its checksum columns set (what the writer stores).
  Row sealed(Row r) const {
    for (const auto& c : columns_)
      if (c.checksum) c.set_int(r, static_cast<int64_t>(crc(r, c.written)));
    return r;
  }
  // For a row read with every column: "" if its checksums hold, else which of them fail.
  std::string damage(const Row& r) const {
    std::string out;
    for (const auto& c : columns_)
      if (c.checksum && static_cast<uint32_t>(c.get_int(r)) != crc(r, c.written))
        out += (out.empty() ? "" : ", ") + c.name;
    return out;
  }
  const Layout<Row>& state() const { return *state_; }
  // A narrow layout for reading a few columns (HDF5 matches compound fields by name and reads nothing else).
  std::unique_ptr<Layout<Row>> only(const std::vector<std::string>& names) const {
    std::vector<const Column<Row>*> cols;
    for (const auto& n : names)
      for (const auto& c : columns_)
        if (c.name == n) cols.push_back(&c);
    return std::make_unique<Layout<Row>>(cols);
  }

  // The columns `dset` holds: all of them, or — for a file written before a column was added — all but the missing
  // `added_later` ones (read as their defaults, not written). Any other column missing means a foreign or damaged
  // table: an input error naming `file` and the table.
  std::unique_ptr<Layout<Row>> in_file(hid_t dset, const std::string& file, const std::string& name) const {
    const auto names = h5::member_names(dset);
    std::vector<const Column<Row>*> cols;
    for (const auto& c : columns_) {
      if (std::find(names.begin(), names.end(), c.name) != names.end()) {
        cols.push_back(&c);
      } else if (!c.added_later || c.checksum) {
        throw Error::input(fmt::format("{}: /{} has no column {} (not a results file of this format, or damaged)",
                                       file, name, c.name));
      }
    }
    return std::make_unique<Layout<Row>>(cols);
  }

  // The `description` attribute: what the table is, then one line per column.
  std::string description() const {
    std::string s = description_ + "\nColumns:";
    for (const auto& c : columns_) s += "\n  " + c.name + ": " + c.description;
    return s;
  }

  void create(hid_t loc, const std::string& name) const {
    h5::create_table(loc, name, all_->type(), chunk_, description(), deflate_);
  }

  // Appends rows with every column (or those of `layout`); `file` and `name` name the table in errors.
  void append(hid_t dset, const std::vector<Row>& rows, const std::string& file, const std::string& name) const {
    append(dset, *all_, rows, file, name);
  }
  void append(hid_t dset, const Layout<Row>& layout, const std::vector<Row>& rows, const std::string& file,
              const std::string& name) const {
    if (rows.empty()) return;
    auto packed = pack(layout, rows, file, name);
    h5::append(dset, layout.type(), packed.bytes.data(), rows.size());
  }
  // Rewrites rows [first, first + rows.size()) through `layout` (all columns, or only the state ones).
  void write(hid_t dset, const Layout<Row>& layout, hsize_t first, const std::vector<Row>& rows,
             const std::string& file, const std::string& name) const {
    if (rows.empty()) return;
    auto packed = pack(layout, rows, file, name);
    h5::write_rows(dset, layout.type(), packed.bytes.data(), first, rows.size());
  }
  std::vector<Row> read(hid_t dset, const Layout<Row>& layout, hsize_t first, hsize_t n) const {
    std::vector<Row> out(n);
    if (n == 0) return out;
    std::vector<char> buf(layout.size() * n);
    h5::read_rows(dset, layout.type(), buf.data(), first, n);
    for (hsize_t i = 0; i < n; ++i) layout.unpack(buf.data() + i * layout.size(), out[i]);
    reclaim(layout, buf, n);
    return out;
  }
  std::vector<Row> read_all(hid_t dset, const Layout<Row>& layout) const { return read(dset, layout, 0, h5::rows(dset)); }
  // Every row through `layout`, one scratch Row at a time (in blocks): for indexes and the ledger, which keep a
  // few fields of many rows and need not build a full Row for each.
  void for_each(hid_t dset, const Layout<Row>& layout, const std::function<void(size_t, const Row&)>& f) const {
    const hsize_t n = h5::rows(dset), block = 65536;
    std::vector<char> buf(layout.size() * static_cast<size_t>(std::min(block, n)));
    Row scratch;  // the layout's columns are overwritten for each row
    for (hsize_t first = 0; first < n; first += block) {
      const hsize_t m = std::min(block, n - first);
      h5::read_rows(dset, layout.type(), buf.data(), first, m);
      for (hsize_t i = 0; i < m; ++i) {
        layout.unpack(buf.data() + i * layout.size(), scratch);
        f(static_cast<size_t>(first + i), scratch);
      }
      reclaim(layout, buf, m);
    }
  }
  std::vector<Row> read_all(hid_t dset) const { return read_all(dset, *all_); }

  // SHA-256 of the rows' values (every column, in order): what "the same content" means for write-once tables.
  std::string digest(const std::vector<Row>& rows) const {
    std::string text;
    for (const auto& r : rows) {
      for (const auto& c : columns_) {
        switch (c.type) {
          case Type::f64: text += fmt::format("{}", c.get_f64(r)); break;
          case Type::i64:
          case Type::i32:
          case Type::flag: text += std::to_string(c.get_int(r)); break;
          case Type::text:
          case Type::vtext: text += c.get_text(r); break;
        }
        text += '\x1f';
      }
      text += '\x1e';
    }
    return sha256_hex(text);
  }

  std::string name_of(const Row& r) const { return row_name_(r); }

 private:
  // HDF5 allocated the variable-length strings it read; give them back.
  static void reclaim(const Layout<Row>& layout, std::vector<char>& buf, hsize_t n) {
    if (!layout.has_vtext() || n == 0) return;
    hsize_t count[1] = {n};
    h5::Handle space(h5::check(H5Screate_simple(1, count, nullptr), "memory space"), H5Sclose);
    H5Dvlen_reclaim(layout.type(), space, H5P_DEFAULT, buf.data());
  }
  typename Layout<Row>::Packed pack(const Layout<Row>& layout, const std::vector<Row>& rows, const std::string& file,
                                    const std::string& name) const {
    typename Layout<Row>::Packed p;
    p.bytes.assign(layout.size() * rows.size(), 0);
    for (size_t i = 0; i < rows.size(); ++i)
      layout.pack(sealed(rows[i]), p.bytes.data() + i * layout.size(), p,
                  [&] { return fmt::format("{}: /{}, {} {}", file, name, what_, row_name_(rows[i])); });
    return p;
  }
  const Column<Row>* checksum_of(Written group) const {
    for (const auto& c : columns_)
      if (c.checksum && c.written == group) return &c;
    return nullptr;
  }

  std::string what_;  // what a row is: "trial", "model", "sample", ...
  std::string description_;
  hsize_t chunk_;
  int deflate_;
  std::function<std::string(const Row&)> row_name_;
  std::vector<Column<Row>> columns_;
  std::unique_ptr<Layout<Row>> all_, state_;
};

}  // namespace xfer::store::table
