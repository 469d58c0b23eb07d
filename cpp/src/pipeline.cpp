#include "pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace nrb::detail {

Pipeline::Pipeline(Options opts)
    : opts_(opts),
      enabled_(opts.start_enabled),
      limit_(std::max<uint32_t>(1, opts.frames_in_flight)),
      ceiling_(std::max<uint32_t>(1, opts.frames_in_flight ? opts.frames_in_flight : opts.adaptive_max)) {}

void Pipeline::wake() {
  if (wake_) wake_();
}

// ---- render-thread side -----------------------------------------------------------------------------------------

Pipeline::BeginInfo Pipeline::begin(TimePoint now) {
  std::lock_guard<std::mutex> lock(mutex_);
  BeginInfo b;
  b.frame_id = next_frame_id_++;
  b.live = enabled_ && session_ != 0;
  if (b.live && too_slow_) {
    // None of its frames can be shown, and the renderer takes one per render time at most: sending every frame
    // would only cost the engine its copies and the renderer its answers (and the sessions it can serve their CPU).
    if (now < next_live_)
      b.live = false;
    else
      next_live_ = now + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double, std::milli>(slow_ms_));
  }
  b.pool = pool_;
  return b;
}

bool Pipeline::would_be_live(TimePoint now) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return enabled_ && session_ != 0 && !(too_slow_ && now < next_live_);
}

uint64_t Pipeline::latest_frame_id() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_frame_id_ - 1;
}

void Pipeline::submit(SubmittedFrame f, TimePoint now) {
  // Resources released outside the lock (a slot lease's destructor takes the pool's own lock).
  std::optional<SubmittedFrame> discarded;
  bool queued = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++counters_.frames_submitted;
    f.submit_time = now;
    f.watermark = next_seq_ - 1;
    if (f.deadline_ms <= 0.0) f.deadline_ms = opts_.deadline_ms;
    if (!enabled_ || session_ == 0 || !f.live) {
      ++counters_.frames_dropped;
      discarded = std::move(f);
    } else {
      if (queued_) {
        ++counters_.frames_dropped;  // superseded before it could be sent
        discarded = std::move(queued_);
      }
      queued_ = std::move(f);
      queued = true;
    }
  }
  discarded.reset();
  if (queued) wake();
}

std::shared_ptr<const ResultImage> Pipeline::acquire(TimePoint now) {
  std::shared_ptr<ResultImage> expired;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!enabled_) return nullptr;
  if (latest_ && ms_between(latest_->submit_time, now) <= latest_->deadline_ms) return latest_;
  // Too old to show: let its memory (possibly a shared-memory slot) go as soon as nobody holds it.
  expired = std::move(latest_);
  ++counters_.fallbacks;
  return nullptr;
}

// ---- any thread -------------------------------------------------------------------------------------------------

void Pipeline::fire_event(wire::Event e) {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back(PendingEvent{{next_seq_++, 0}, std::move(e)});
  trim_pending_locked();
}

void Pipeline::set_style(wire::StyleCommand s) {
  std::lock_guard<std::mutex> lock(mutex_);
  styles_.push_back(PendingStyle{{next_seq_++, 0}, std::move(s)});
  trim_pending_locked();
}

void Pipeline::set_control(wire::Control c) {
  std::lock_guard<std::mutex> lock(mutex_);
  styles_.push_back(PendingStyle{{next_seq_++, 0}, {}, std::move(c)});
  trim_pending_locked();
}

void Pipeline::trim_pending_locked() {
  // Discard the oldest entries that are not riding on a frame in flight.
  while (events_.size() + styles_.size() > opts_.max_pending_events) {
    auto ev = std::find_if(events_.begin(), events_.end(), [](const PendingEvent& p) { return p.carrier == 0; });
    auto st = std::find_if(styles_.begin(), styles_.end(), [](const PendingStyle& p) { return p.carrier == 0; });
    bool have_ev = ev != events_.end(), have_st = st != styles_.end();
    if (!have_ev && !have_st) break;
    if (have_ev && (!have_st || ev->seq < st->seq))
      events_.erase(ev);
    else
      styles_.erase(st);
    ++counters_.events_discarded;
  }
}

void Pipeline::set_enabled(bool enabled) {
  std::optional<SubmittedFrame> dropped;
  std::shared_ptr<ResultImage> latest;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (enabled_ == enabled) return;
    enabled_ = enabled;
    if (enabled && refused_) retry_requested_ = true;  // the player's toggle: off then on asks again
    if (!enabled) {
      if (queued_) {
        ++counters_.frames_dropped;
        dropped = std::move(queued_);
        queued_.reset();
      }
      latest = std::move(latest_);
    }
  }
  wake();
}

bool Pipeline::enabled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return enabled_;
}

PipelineStats Pipeline::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  PipelineStats s = counters_;
  s.events_pending = events_.size() + styles_.size();
  s.in_flight = in_flight_.size();
  s.session = session_;
  s.enabled = enabled_;
  s.shm_active = session_ != 0 && pool_ != nullptr;
  s.doorbell_active = s.shm_active && doorbell_;
  s.compression = static_cast<uint32_t>(compression_);
  s.in_flight_limit = limit_;
  s.service_ms = service_ms_;
  s.link_ms = link_ms_;
  s.refused = refused_;
  s.refusal_code = refusal_code_;
  s.refusal_message = refusal_message_;
  static constexpr double kP[3] = {50.0, 95.0, 99.0};
  double out[3];
  rtt_.percentiles(kP, out);
  s.rtt_p50_ms = out[0];
  s.rtt_p95_ms = out[1];
  s.rtt_p99_ms = out[2];
  return s;
}

// ---- I/O-thread side --------------------------------------------------------------------------------------------

void Pipeline::session_started(uint64_t session, uint32_t max_in_flight, std::shared_ptr<SlotPool> pool,
                               wire::Compression compression, bool doorbell) {
  std::lock_guard<std::mutex> lock(mutex_);
  session_ = session;
  compression_ = compression;
  doorbell_ = doorbell;
  uint32_t wanted = opts_.frames_in_flight ? opts_.frames_in_flight : std::max<uint32_t>(1, opts_.adaptive_max);
  ceiling_ = std::max<uint32_t>(1, std::min(wanted, max_in_flight));
  limit_ = opts_.frames_in_flight ? ceiling_ : 1;  // adaptive: start at 1, learn from this session's answers
  service_ms_ = link_ms_ = 0.0;
  adaptive_seen_ = 0;
  judged_ = 0;
  too_slow_ = false;
  next_live_ = TimePoint{};
  pool_ = std::move(pool);
  refused_ = retry_requested_ = false;
  refusal_code_ = 0;
  refusal_message_.clear();
  if (last_error_from_connection_) last_error_.clear();
  last_error_from_connection_ = false;
}

void Pipeline::session_ended() {
  std::optional<SubmittedFrame> dropped;
  std::deque<InFlight> lost;
  std::shared_ptr<SlotPool> pool;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const InFlight& f : in_flight_) {
      ++counters_.frames_lost;
      give_back_locked(f.id);
    }
    lost.swap(in_flight_);
    if (queued_) {
      ++counters_.frames_dropped;
      dropped = std::move(queued_);
      queued_.reset();
    }
    session_ = 0;
    compression_ = wire::Compression::none;
    pool = std::move(pool_);
  }
}

uint64_t Pipeline::session() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return session_;
}

std::optional<OutgoingFrame> Pipeline::take_next(TimePoint now) {
  std::optional<SubmittedFrame> discarded;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!enabled_ || session_ == 0 || !queued_) return std::nullopt;
  // Built against another session's shared memory, or already past its deadline: not worth sending.
  if ((queued_->pool && queued_->pool != pool_) || ms_between(queued_->submit_time, now) > queued_->deadline_ms) {
    ++counters_.frames_dropped;
    discarded = std::move(queued_);
    queued_.reset();
    return std::nullopt;
  }
  if (in_flight_.size() >= limit_) return std::nullopt;
  SubmittedFrame f = std::move(*queued_);
  queued_.reset();
  OutgoingFrame out;
  out.session = session_;
  for (PendingEvent& p : events_) {
    if (p.carrier != 0) continue;
    if (p.seq > f.watermark || out.events.size() >= wire::kMaxEvents) break;
    out.events.push_back(p.event);
    p.carrier = f.id;
  }
  for (PendingStyle& p : styles_) {
    if (p.carrier != 0) continue;
    if (p.seq > f.watermark || (p.control ? out.controls.size() : out.styles.size()) >= wire::kMaxEvents) break;
    if (p.control)
      out.controls.push_back(*p.control);
    else
      out.styles.push_back(p.style);
    p.carrier = f.id;
  }
  in_flight_.push_back(InFlight{f.id, f.submit_time, now, f.deadline_ms, f.result_slot, f.resources,
                                in_flight_.empty()});
  out.frame = std::move(f);
  return out;
}

void Pipeline::sent(uint64_t /*frame_id*/, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++counters_.frames_sent;
  counters_.bytes_sent += bytes;
}

void Pipeline::send_failed(uint64_t frame_id) {
  std::shared_ptr<FrameResources> res;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find_if(in_flight_.begin(), in_flight_.end(), [&](const InFlight& f) { return f.id == frame_id; });
  if (it == in_flight_.end()) return;
  res = std::move(it->resources);
  in_flight_.erase(it);
  give_back_locked(frame_id);
  ++counters_.frames_dropped;
}

Pipeline::Answer Pipeline::on_result(uint64_t frame_id, std::shared_ptr<ResultImage> image, TimePoint now,
                                     std::optional<ServerTiming> timing) {
  std::shared_ptr<ResultImage> replaced;
  std::shared_ptr<FrameResources> res;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find_if(in_flight_.begin(), in_flight_.end(), [&](const InFlight& f) { return f.id == frame_id; });
  if (it == in_flight_.end()) return Answer::unknown;  // not ours (any more): ignore
  InFlight f = std::move(*it);
  in_flight_.erase(it);
  acknowledge_locked(frame_id);
  // Only rendered frames tell what a render costs (a skipped one was answered without occupying the renderer).
  if (image && timing && timing->total_ms > 0.0) {
    adapt_locked(*timing, ms_between(f.sent_time, now) - timing->total_ms, f.alone);
    // Section 5.9, engine rule 5. The session's first render is not judged (it includes the model's warm-up), nor
    // one slow spell among fast renders (the fastest of the last three decides); a render that fits ends it.
    const double service = std::max(0.0, timing->total_ms - timing->queue_ms);
    if (adaptive_seen_ >= 2) {
      judged_ms_[judged_++ % judged_ms_.size()] = service;
      const size_t n = std::min<size_t>(judged_, judged_ms_.size());
      too_slow_ = *std::min_element(judged_ms_.begin(), judged_ms_.begin() + n) > f.deadline_ms;
      slow_ms_ = service;
    }
  }
  double rtt = ms_between(f.submit_time, now);
  if (!image) {  // "skipped": the renderer judged it past its deadline
    ++counters_.results_late;
    return Answer::late;
  }
  ++counters_.results_received;
  rtt_.add(rtt);
  if (rtt > f.deadline_ms) {
    ++counters_.results_late;
    return Answer::late;
  }
  image->frame_id = frame_id;
  image->submit_time = f.submit_time;
  image->deadline_ms = f.deadline_ms;
  image->round_trip_ms = rtt;
  image->frame_resources = std::move(f.resources);
  if (!enabled_) return Answer::late;
  if (!latest_ || latest_->frame_id < frame_id) {
    replaced = std::move(latest_);
    latest_ = std::move(image);
  }
  return Answer::fresh;
}

void Pipeline::adapt_locked(const ServerTiming& t, double link_ms, bool alone) {
  if (!(t.total_ms > 0.0)) return;  // a renderer that reports no timing: nothing to judge by (stay at 1)
  double service = std::max(0.0, t.total_ms - t.queue_ms);
  link_ms = std::max(0.0, link_ms);
  const double busy = std::max(0.0, t.link_busy_ms);
  const double share = std::clamp(t.link_share, 0.0, 1.0);
  constexpr double kAlpha = 0.2;  // moving averages over about the last ten answers
  if (adaptive_seen_++ == 0) {
    service_ms_ = service;
    link_ms_ = link_ms;
    busy_ms_ = busy;
    share_ = share;
  } else {
    service_ms_ += kAlpha * (service - service_ms_);
    // A frame that waited behind other frames on the link (more in flight) comes back later than the link needs,
    // so a mean would grow with every frame added in flight and ask for still more (latency, no throughput): keep
    // the fastest recent link time. Only a frame sent alone may raise it (2% a frame, so a slower link is noticed);
    // while several are in flight a slower link shows as a lower throughput, hence a longer busy time, which the
    // limit below takes as a longer link time (L', once the byte shares are known).
    link_ms_ = std::min(link_ms, alone ? link_ms_ * 1.02 : link_ms_);
    busy_ms_ += kAlpha * (busy - busy_ms_);
    share_ += kAlpha * (share - share_);
  }
  if (opts_.frames_in_flight != 0) return;  // a fixed limit (the averages above are still reported in stats)
  if (adaptive_seen_ < std::max<uint32_t>(1, opts_.adaptive_samples)) return;
  // One frame's cycle is its service plus its link time; what limits the rate is the busiest stage per frame: the
  // renderer (S), or the link's busier direction (the frame's bytes at the link's rate). Frames enough to keep that
  // stage busy through one cycle, the bandwidth-delay product in frames, rounded (half a frame or more: one more):
  // 1 + floor(L / S + 1/2) while the renderer is the bottleneck, (S + L) / link busy time while the link is.
  // The busy time comes from the link's throughput, L from frames' own link times: two estimates that drift apart
  // when the link slows (the throughput forgets its fastest sample at 2% a frame; L rises only with a frame sent
  // alone). A busy time longer than its share of L says the link is slower than L: the cycle is then that longer
  // link time. With L alone a full-duplex link, which carries one frame's image down while the next frame goes
  // up, looked busy for most of its cycle and the limit fell to 1 (10 Gbit/s bench: 38 fps in a round where 2 in
  // flight made 62).
  const double link = share_ > 0.0 ? std::max(link_ms_, busy_ms_ / share_) : link_ms_;
  const double bottleneck = std::max({service_ms_, busy_ms_, 0.05});  // a renderer faster than 50 us counts as 50 us
  const double wanted = std::floor(std::min((service_ms_ + link) / bottleneck + 0.5, 65.0));
  limit_ = std::clamp<uint32_t>(static_cast<uint32_t>(wanted), 1, ceiling_);
}

void Pipeline::on_frame_error(uint64_t frame_id, wire::ErrorCode code) {
  std::deque<InFlight> lost;
  std::lock_guard<std::mutex> lock(mutex_);
  ++counters_.errors_received;
  if (code == wire::ErrorCode::NO_SESSION) {
    // The renderer does not know the session (restarted or expired): nothing in flight was or will be applied.
    for (const InFlight& f : in_flight_) {
      ++counters_.frames_lost;
      give_back_locked(f.id);
    }
    lost.swap(in_flight_);
    return;
  }
  auto it = std::find_if(in_flight_.begin(), in_flight_.end(), [&](const InFlight& f) { return f.id == frame_id; });
  if (it == in_flight_.end()) return;
  lost.push_back(std::move(*it));
  in_flight_.erase(it);
  acknowledge_locked(frame_id);
}

void Pipeline::give_back_locked(uint64_t frame_id) {
  for (PendingEvent& p : events_)
    if (p.carrier == frame_id) p.carrier = 0;
  for (PendingStyle& p : styles_)
    if (p.carrier == frame_id) p.carrier = 0;
}

void Pipeline::acknowledge_locked(uint64_t frame_id) {
  auto n0 = events_.size() + styles_.size();
  events_.erase(std::remove_if(events_.begin(), events_.end(),
                               [&](const PendingEvent& p) { return p.carrier == frame_id; }),
                events_.end());
  styles_.erase(std::remove_if(styles_.begin(), styles_.end(),
                               [&](const PendingStyle& p) { return p.carrier == frame_id; }),
                styles_.end());
  counters_.events_sent += n0 - (events_.size() + styles_.size());
}

size_t Pipeline::in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return in_flight_.size();
}

uint32_t Pipeline::in_flight_limit() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return limit_;
}

bool Pipeline::has_queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queued_.has_value();
}

std::optional<TimePoint> Pipeline::oldest_in_flight_sent() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (in_flight_.empty()) return std::nullopt;
  TimePoint t = in_flight_.front().sent_time;
  for (const InFlight& f : in_flight_) t = std::min(t, f.sent_time);
  return t;
}

bool Pipeline::is_in_flight(uint64_t frame_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::any_of(in_flight_.begin(), in_flight_.end(), [&](const InFlight& f) { return f.id == frame_id; });
}

std::optional<uint64_t> Pipeline::result_slot_of(uint64_t frame_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const InFlight& f : in_flight_)
    if (f.id == frame_id) return f.result_slot;
  return std::nullopt;
}

void Pipeline::add_bytes_sent(uint64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.bytes_sent += n;
}

void Pipeline::add_bytes_received(uint64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.bytes_received += n;
}

void Pipeline::count_error() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++counters_.errors_received;
}

void Pipeline::count_reconnect() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++counters_.reconnects;
}

// ---- connection outcome -----------------------------------------------------------------------------------------

void Pipeline::refused(int32_t code, std::string message, std::string error_text) {
  std::lock_guard<std::mutex> lock(mutex_);
  refused_ = true;
  retry_requested_ = false;
  refusal_code_ = code;
  refusal_message_ = std::move(message);
  last_error_ = std::move(error_text);
  last_error_from_connection_ = true;
}

void Pipeline::leave_refused() {
  std::lock_guard<std::mutex> lock(mutex_);
  refused_ = retry_requested_ = false;
}

void Pipeline::request_retry() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!refused_) return;
    retry_requested_ = true;
  }
  wake();
}

bool Pipeline::take_retry() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(retry_requested_, false);
}

void Pipeline::connection_error(std::string text) {
  std::lock_guard<std::mutex> lock(mutex_);
  last_error_ = std::move(text);
  last_error_from_connection_ = true;
}

void Pipeline::set_last_error(std::string text) {
  std::lock_guard<std::mutex> lock(mutex_);
  last_error_ = std::move(text);
  last_error_from_connection_ = false;
}

std::string Pipeline::last_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

}  // namespace nrb::detail
