// A small pool of worker threads for libnrb's CPU work off the I/O thread (docs/protocol.md section 6.3.2):
// compressing a frame's buffers in chunks, decompressing or decoding the returned image. Two ways in:
//
// * post(task): runs `task` on a worker some time later (FIFO). The I/O thread posts a frame's compression or an
//   image's decode and goes back to its socket; the task reports back through its own shared state.
// * run_all(jobs): runs every job, on the workers and on the calling thread, and returns when all are done. Called
//   from a worker (a posted task splitting its buffer into chunks) it cannot deadlock: the caller takes jobs too and
//   only ever waits for jobs another thread has already started, so a batch finishes even when every other worker
//   is busy (it then runs on the caller alone).
//
// The destructor drops tasks not yet started and joins the workers (each finishes the task it is running).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace nrb::detail {

class ThreadPool {
 public:
  // `threads` workers (at least 1), each named `name` (top -H, nrb bench remote's CPU profile).
  ThreadPool(unsigned threads, std::string name);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void post(std::function<void()> task);
  // Jobs must not throw (a job that does terminates the program, as on any std::thread).
  void run_all(std::vector<std::function<void()>>& jobs);
  unsigned threads() const noexcept { return static_cast<unsigned>(threads_.size()); }
  // Tasks posted and not yet started (tests, statistics).
  size_t queued() const;

 private:
  struct Batch {
    std::vector<std::function<void()>>* jobs;
    size_t size;
    std::atomic<size_t> next{0};
    size_t done = 0;  // under m
    std::mutex m;
    std::condition_variable cv;
  };
  static void work_on(Batch& b);
  void worker();

  std::string name_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace nrb::detail
