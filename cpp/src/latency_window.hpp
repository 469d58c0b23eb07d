// A fixed window of the most recent round-trip samples with percentile queries (nearest-rank).
// Not synchronised: its owner (Pipeline) holds the lock.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace nrb::detail {

class LatencyWindow {
 public:
  explicit LatencyWindow(size_t capacity = 1024) : samples_(capacity > 0 ? capacity : 1) {}

  void add(double ms) noexcept {
    samples_[next_] = ms;
    next_ = (next_ + 1) % samples_.size();
    if (count_ < samples_.size()) ++count_;
  }

  size_t count() const noexcept { return count_; }

  // Percentiles p in [0, 100] of the samples in the window; 0 for an empty window. One sort per call.
  template <size_t N>
  void percentiles(const double (&p)[N], double (&out)[N]) const {
    if (count_ == 0) {
      for (size_t i = 0; i < N; ++i) out[i] = 0.0;
      return;
    }
    std::vector<double> s(samples_.begin(), samples_.begin() + static_cast<std::ptrdiff_t>(count_));
    std::sort(s.begin(), s.end());
    for (size_t i = 0; i < N; ++i) {
      double rank = std::ceil(p[i] / 100.0 * static_cast<double>(s.size()));
      size_t idx = rank <= 1.0 ? 0 : static_cast<size_t>(rank) - 1;
      out[i] = s[std::min(idx, s.size() - 1)];
    }
  }

 private:
  std::vector<double> samples_;
  size_t next_ = 0;
  size_t count_ = 0;
};

}  // namespace nrb::detail
