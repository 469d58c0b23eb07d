// Recycled, 64-byte-aligned staging memory for inline G-buffers.
//
// A 1080p G-buffer set is tens of MB; allocating it fresh every frame costs page faults comparable to the copy
// itself. Blocks therefore go back to the pool when their last reference dies (which may happen on a ZeroMQ I/O
// thread once a zero-copy send has completed) and are handed out again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace nrb::detail {

class StagingPool {
 public:
  struct Block {
    uint8_t* data = nullptr;
    size_t capacity = 0;
  };

  // max_cached_bytes bounds the memory kept for reuse (free blocks); blocks in use are not counted.
  static std::shared_ptr<StagingPool> create(size_t max_cached_bytes = size_t(1) << 30);
  ~StagingPool();

  // A block of at least `size` bytes. Throws std::bad_alloc. Thread-safe.
  std::shared_ptr<Block> acquire(size_t size);

  size_t cached_bytes() const;

 private:
  explicit StagingPool(size_t max_cached) : max_cached_(max_cached) {}
  void give_back(Block* b) noexcept;

  std::weak_ptr<StagingPool> self_;
  size_t max_cached_;
  mutable std::mutex mutex_;
  std::vector<Block*> free_;
  size_t cached_ = 0;
};

}  // namespace nrb::detail
