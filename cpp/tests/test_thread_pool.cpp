// libnrb's work pool (cpp/src/thread_pool.hpp): what the I/O thread relies on to keep compression and image
// decoding off itself (docs/protocol.md section 6.3.2).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "thread_pool.hpp"

using nrb::detail::ThreadPool;

TEST_CASE("thread pool: run_all runs every job once and returns after the last") {
  ThreadPool pool(3, "nrb-test");
  std::vector<std::atomic<int>> hits(100);
  std::vector<std::function<void()>> jobs;
  for (size_t i = 0; i < hits.size(); ++i) jobs.emplace_back([&hits, i] { hits[i].fetch_add(1); });
  pool.run_all(jobs);
  for (const auto& h : hits) CHECK(h.load() == 1);
}

TEST_CASE("thread pool: run_all spreads jobs over the workers and the caller") {
  ThreadPool pool(2, "nrb-test");
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  std::set<std::thread::id> ids;
  std::vector<std::function<void()>> jobs;
  // three jobs that each wait until all three have started: only possible when three threads run them at once
  for (int i = 0; i < 3; ++i)
    jobs.emplace_back([&] {
      std::unique_lock<std::mutex> lock(m);
      ids.insert(std::this_thread::get_id());
      ++arrived;
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return arrived == 3; });
    });
  pool.run_all(jobs);
  CHECK(arrived == 3);
  CHECK(ids.size() == 3);
  CHECK(ids.count(std::this_thread::get_id()) == 1);
}

TEST_CASE("thread pool: post returns at once and the task runs on a worker") {
  ThreadPool pool(2, "nrb-test");
  std::mutex m;
  std::condition_variable cv;
  bool release = false, done = false;
  std::thread::id ran_on;
  pool.post([&] {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return release; });  // blocks until the poster says so: post itself must not wait
    ran_on = std::this_thread::get_id();
    done = true;
    cv.notify_all();
  });
  {
    std::lock_guard<std::mutex> lock(m);
    release = true;
  }
  cv.notify_all();
  std::unique_lock<std::mutex> lock(m);
  CHECK(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; }));
  const bool elsewhere = ran_on != std::this_thread::get_id();
  CHECK(elsewhere);
}

TEST_CASE("thread pool: run_all inside posted tasks finishes even when every worker is busy") {
  // Each worker runs a task that itself splits work with run_all: the helpers it posts queue behind the other
  // tasks, so each batch must be able to finish on its caller alone.
  ThreadPool pool(2, "nrb-test");
  std::atomic<int> chunks{0}, finished{0};
  for (int t = 0; t < 4; ++t)
    pool.post([&] {
      std::vector<std::function<void()>> jobs;
      for (int i = 0; i < 8; ++i) jobs.emplace_back([&] { chunks.fetch_add(1); });
      pool.run_all(jobs);
      finished.fetch_add(1);
    });
  for (int i = 0; i < 1000 && finished.load() < 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(finished.load() == 4);
  CHECK(chunks.load() == 32);
}

TEST_CASE("thread pool: destroying it drops tasks not yet started and finishes the running one") {
  std::atomic<int> ran{0};
  std::atomic<bool> started{false}, go{false};
  {
    ThreadPool pool(1, "nrb-test");
    pool.post([&] {
      started = true;
      while (!go.load()) std::this_thread::yield();
      ran.fetch_add(1);
    });
    for (int i = 0; i < 5; ++i) pool.post([&] { ran.fetch_add(100); });
    while (!started.load()) std::this_thread::yield();
    CHECK(pool.queued() == 5);
    std::thread releaser([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      go = true;
    });
    releaser.detach();
  }
  CHECK(ran.load() == 1);
}
