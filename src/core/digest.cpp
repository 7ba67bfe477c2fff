#include "xfer/core/digest.hpp"

#include <fstream>
#include <memory>
#include <vector>

#include <openssl/evp.h>

#include "xfer/core/error.hpp"

namespace xfer {

namespace {
std::string to_hex(const unsigned char* bytes, unsigned n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (unsigned i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}
EVP_MD_CTX* as_ctx(void* p) { return static_cast<EVP_MD_CTX*>(p); }
}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(as_ctx(ctx_), EVP_sha256(), nullptr) != 1)
    throw Error("SHA-256: OpenSSL could not initialise a digest context");
}

Sha256::~Sha256() { EVP_MD_CTX_free(as_ctx(ctx_)); }

void Sha256::update(std::string_view bytes) {
  if (EVP_DigestUpdate(as_ctx(ctx_), bytes.data(), bytes.size()) != 1) throw Error("SHA-256: update failed");
}

std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (EVP_DigestFinal_ex(as_ctx(ctx_), md, &n) != 1) throw Error("SHA-256: finalisation failed");
  return to_hex(md, n);
}

std::string sha256_hex(std::string_view bytes) {
  // One context per thread, re-initialised for each digest: keys for 10^5 trials without 10^5 allocations.
  thread_local std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1 || EVP_DigestFinal_ex(ctx.get(), md, &n) != 1)
    throw Error("SHA-256: OpenSSL digest failed");
  return to_hex(md, n);
}

std::string sha256_file_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading (checksum)");
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) h.update(std::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  if (in.bad()) throw Error(path + ": read error while computing its checksum");
  return h.hex();
}

}  // namespace xfer
