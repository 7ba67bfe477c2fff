// core/digest: SHA-256 of bytes and files, as lower-case hex. Trial keys, split hashes and backbone checksums.
#pragma once

#include <string>
#include <string_view>

namespace xfer {

std::string sha256_hex(std::string_view bytes);

// Streams the file; throws xfer::Error naming the path if it cannot be read.
std::string sha256_file_hex(const std::string& path);

// Incremental form for large or streamed content (split tables, predictions).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes);
  std::string hex();  // finalises; further updates are an error

 private:
  void* ctx_;
};

}  // namespace xfer
