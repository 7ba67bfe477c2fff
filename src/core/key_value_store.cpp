#include "xfer/core/key_value_store.hpp"

namespace xfer {

void LocalKeyValueStore::put(const std::string& key, const std::string& value) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    values_[key] = value;
  }
  put_.notify_all();
}

std::optional<std::string> LocalKeyValueStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  std::map<std::string, std::string>::const_iterator it;
  if (!put_.wait_for(lock, timeout, [&] { return (it = values_.find(key)) != values_.end(); })) return std::nullopt;
  return it->second;
}

std::optional<std::string> LocalKeyValueStore::try_get(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

}  // namespace xfer
