// Shared memory for the same-host transport (docs/protocol.md section 7).
//
// SharedMemory: one named object, RAII (POSIX shm_open + mmap; a named file mapping on Windows).
// SlotPool: a ring of equal slots inside one SharedMemory, handed out as leases that return their slot when the
// last reference goes away. The engine creates a fresh pool per handshake and unlinks its name after WELCOME, so
// the kernel reclaims the memory once both processes have unmapped it or died.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "protocol.hpp"

namespace nrb::detail {

class SharedMemory {
 public:
  SharedMemory() = default;
  // Creates a new object (fails if the name exists) of `size` bytes and maps it read/write. Throws
  // std::system_error.
  static SharedMemory create(const std::string& name, size_t size);
  // Maps an existing object read/write (what a renderer does; used by tests). Throws std::system_error.
  static SharedMemory open(const std::string& name);

  SharedMemory(SharedMemory&& other) noexcept { swap(other); }
  SharedMemory& operator=(SharedMemory&& other) noexcept {
    SharedMemory tmp(std::move(other));
    swap(tmp);
    return *this;
  }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory();

  // Removes the name; the mapping stays valid. Idempotent; a no-op for objects opened with open().
  void unlink() noexcept;

  uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  const std::string& name() const noexcept { return name_; }
  bool valid() const noexcept { return data_ != nullptr; }

  // "/nrb-<pid>-<random>": unique enough that create() practically never collides (it retries if it does).
  static std::string make_name();

 private:
  void swap(SharedMemory& o) noexcept;

  std::string name_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owner_ = false;  // created (and so must unlink) rather than opened
#ifdef _WIN32
  void* mapping_ = nullptr;  // HANDLE
#endif
};

class SlotPool : public std::enable_shared_from_this<SlotPool> {
 public:
  // One reserved slot; returns it to the pool when destroyed. Keeps the pool (and its mapping) alive.
  class Lease {
   public:
    Lease(std::shared_ptr<SlotPool> pool, uint32_t index) noexcept : pool_(std::move(pool)), index_(index) {}
    ~Lease() { pool_->release(index_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    uint32_t index() const noexcept { return index_; }
    uint8_t* data() const noexcept { return pool_->slot_data(index_); }
    uint64_t size() const noexcept { return pool_->slot_size(); }
    const SlotPool& pool() const noexcept { return *pool_; }

   private:
    std::shared_ptr<SlotPool> pool_;
    uint32_t index_;
  };

  // Creates the shared-memory object with `slots` slots of `slot_size` bytes (rounded up to 64). Throws
  // std::system_error / std::invalid_argument.
  static std::shared_ptr<SlotPool> create(uint32_t slots, uint64_t slot_size);

  // A free slot, or nullptr when every slot is leased. Thread-safe.
  std::shared_ptr<Lease> acquire();

  wire::ShmPool spec() const;
  uint32_t slot_count() const noexcept { return slots_; }
  uint64_t slot_size() const noexcept { return slot_size_; }
  uint8_t* slot_data(uint32_t index) const noexcept { return shm_.data() + uint64_t(index) * slot_size_; }
  uint32_t free_slots() const;
  // Unlinks the name (after WELCOME, or when the handshake failed). Thread-safe, idempotent.
  void unlink();

 private:
  SlotPool(SharedMemory shm, uint32_t slots, uint64_t slot_size);
  void release(uint32_t index) noexcept;

  SharedMemory shm_;
  uint32_t slots_;
  uint64_t slot_size_;
  mutable std::mutex mutex_;
  std::vector<uint32_t> free_;  // LIFO: recently used slots are warm in the page tables
};

constexpr uint64_t align64(uint64_t n) noexcept { return (n + 63) & ~uint64_t(63); }

}  // namespace nrb::detail
