#include "thread_pool.hpp"

#include <pthread.h>

#include <algorithm>
#include <memory>

namespace nrb::detail {

ThreadPool::ThreadPool(unsigned threads, std::string name) : name_(std::move(name)) {
  threads = std::max(1u, threads);
  threads_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
    tasks_.clear();
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(m_);
    if (stop_) return;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

size_t ThreadPool::queued() const {
  std::lock_guard<std::mutex> lock(m_);
  return tasks_.size();
}

void ThreadPool::worker() {
#ifdef __linux__
  pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
#endif
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
    if (stop_) return;
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    task = nullptr;  // whatever it holds is released outside the lock
    lock.lock();
  }
}

// Takes jobs of `b` until none is left unstarted; each finished job counts, and the last one wakes the caller.
void ThreadPool::work_on(Batch& b) {
  for (;;) {
    const size_t i = b.next.fetch_add(1);
    if (i >= b.size) return;
    (*b.jobs)[i]();
    std::lock_guard<std::mutex> lock(b.m);
    if (++b.done == b.size) b.cv.notify_all();
  }
}

void ThreadPool::run_all(std::vector<std::function<void()>>& jobs) {
  if (jobs.empty()) return;
  if (jobs.size() == 1) {
    jobs[0]();
    return;
  }
  auto batch = std::make_shared<Batch>();
  batch->jobs = &jobs;
  batch->size = jobs.size();
  // A helper per job beyond the caller's first, up to the pool's size; a helper that starts after every job was
  // taken returns at once (it holds the batch, never `jobs`, past that point).
  const size_t helpers = std::min(jobs.size() - 1, threads_.size());
  for (size_t i = 0; i < helpers; ++i) post([batch] { work_on(*batch); });
  work_on(*batch);
  std::unique_lock<std::mutex> lock(batch->m);
  batch->cv.wait(lock, [&] { return batch->done == batch->size; });
}

}  // namespace nrb::detail
