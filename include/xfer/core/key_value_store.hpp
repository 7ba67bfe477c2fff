// core/key_value_store: a key-value store shared by the processes of a rank group. PJRT plugins ask for one to form a
// multi-process client (a TPU pod slice's hosts, the CUDA plugin's nodes: PJRT_Client_Create's kv callbacks); the MPI
// implementation lives with the sweep (sweep/mpi_kv_store.cpp), LocalKeyValueStore is its in-process core.
// Every method is thread-safe: plugins call the store from their own threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace xfer {

class KeyValueStore {
 public:
  virtual ~KeyValueStore() = default;
  // Sets `key` (a later put replaces the value), visible to every process of the group once this returns.
  virtual void put(const std::string& key, const std::string& value) = 0;
  // The value once some process has put it; nullopt when `timeout` passes first.
  virtual std::optional<std::string> get(const std::string& key, std::chrono::milliseconds timeout) = 0;
  // The value if it is there now.
  virtual std::optional<std::string> try_get(const std::string& key) = 0;
};

// One process's store: a map, a mutex and a condition variable for the blocking get.
class LocalKeyValueStore final : public KeyValueStore {
 public:
  void put(const std::string& key, const std::string& value) override;
  std::optional<std::string> get(const std::string& key, std::chrono::milliseconds timeout) override;
  std::optional<std::string> try_get(const std::string& key) override;

 private:
  std::mutex mu_;
  std::condition_variable put_;
  std::map<std::string, std::string> values_;
};

}  // namespace xfer
