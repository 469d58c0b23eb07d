#include "staging_pool.hpp"

#include <cstdlib>
#include <new>

namespace nrb::detail {

namespace {
void free_block(StagingPool::Block* b) noexcept {
  if (!b) return;
#ifdef _WIN32
  _aligned_free(b->data);
#else
  std::free(b->data);
#endif
  delete b;
}
}  // namespace

std::shared_ptr<StagingPool> StagingPool::create(size_t max_cached_bytes) {
  std::shared_ptr<StagingPool> p(new StagingPool(max_cached_bytes));
  p->self_ = p;
  return p;
}

StagingPool::~StagingPool() {
  for (Block* b : free_) free_block(b);
}

std::shared_ptr<StagingPool::Block> StagingPool::acquire(size_t size) {
  size = (size + 63) & ~size_t(63);
  if (size == 0) size = 64;
  Block* found = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Best fit among blocks no more than twice the size.
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      size_t c = free_[i]->capacity;
      if (c >= size && c / 2 <= size && (best == free_.size() || c < free_[best]->capacity)) best = i;
    }
    if (best != free_.size()) {
      found = free_[best];
      free_[best] = free_.back();
      free_.pop_back();
      cached_ -= found->capacity;
    }
  }
  if (!found) {
    auto* b = new Block;
#ifdef _WIN32
    b->data = static_cast<uint8_t*>(_aligned_malloc(size, 64));
#else
    b->data = static_cast<uint8_t*>(std::aligned_alloc(64, size));
#endif
    if (!b->data) {
      delete b;
      throw std::bad_alloc();
    }
    b->capacity = size;
    found = b;
  }
  std::weak_ptr<StagingPool> weak = self_;
  return std::shared_ptr<Block>(found, [weak](Block* b) {
    if (auto pool = weak.lock())
      pool->give_back(b);
    else
      free_block(b);
  });
}

void StagingPool::give_back(Block* b) noexcept {
  Block* evict = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (b->capacity > max_cached_) {
      evict = b;
    } else {
      // Keep the newest; drop the oldest cached blocks beyond the budget.
      try {
        free_.push_back(b);
      } catch (...) {
        evict = b;
      }
      if (!evict) {
        cached_ += b->capacity;
        while (cached_ > max_cached_ && !free_.empty()) {
          Block* old = free_.front();
          free_.erase(free_.begin());
          cached_ -= old->capacity;
          free_block(old);
        }
      }
    }
  }
  free_block(evict);
}

size_t StagingPool::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_;
}

}  // namespace nrb::detail
