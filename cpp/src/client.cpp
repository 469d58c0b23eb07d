#include "client.hpp"

#include <algorithm>
#include <cstring>

namespace nrb::detail {

namespace {
Pipeline::Options pipeline_options(const ClientOptions& o) {
  Pipeline::Options p;
  p.frames_in_flight = o.frames_in_flight;
  p.adaptive_max = kAdaptiveMaxInFlight;
  p.deadline_ms = o.deadline_ms;
  p.max_pending_events = o.max_pending_events;
  p.start_enabled = o.start_enabled;
  return p;
}

const ClientOptions& validated(const ClientOptions& o) {
  o.validate();
  return o;
}

uint64_t monotonic_ns(TimePoint t) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}
}  // namespace

Client::Client(ClientOptions opts, Logger log)
    : opts_(validated(opts)),
      pipeline_(pipeline_options(opts_)),
      builder_(StagingPool::create(), opts_.output_reserve()) {
  io_ = std::make_unique<IoThread>(opts_, pipeline_, std::move(log));
  pipeline_.set_wake([io = io_.get()] { io->wake(); });
}

Client::~Client() {
  pipeline_.set_wake(nullptr);
  io_.reset();
}

uint64_t Client::begin(double dt, double deadline_ms) {
  TimePoint now = Clock::now();
  if (deadline_ms < 0.0 || deadline_ms > 60000.0 || deadline_ms != deadline_ms)
    throw std::invalid_argument("deadline_ms must be in [0, 60000] (0: the configured deadline)");
  if (!(dt >= 0.0)) dt = has_begun_ ? ms_between(last_begin_, now) / 1000.0 : 0.0;
  dt = std::clamp(dt, 0.0, 10.0);
  last_begin_ = now;
  has_begun_ = true;
  Pipeline::BeginInfo info = pipeline_.begin();
  builder_.start(info.frame_id, info.live, info.pool, monotonic_ns(now), dt,
                 deadline_ms > 0.0 ? deadline_ms : opts_.deadline_ms);
  return info.frame_id;
}

void Client::tag_buffer(BufferArgs b, const void* data) {
  if (!builder_.active()) throw std::logic_error("no frame begun (call begin first)");
  if (!data) throw std::invalid_argument("buffer \"" + b.name + "\": data is NULL");
  if (!builder_.live()) {
    check_buffer(b);  // still report bad arguments, but do not copy pixels nobody will see
    return;
  }
  const uint64_t src_stride = b.stride;
  BufferArgs dst = b;
  dst.stride = 0;  // pack tightly
  uint8_t* out = builder_.reserve(dst);
  const uint64_t row = uint64_t(dst.width) * wire::bytes_per_pixel(dst.format);
  const uint64_t in_stride = src_stride ? src_stride : row;
  if (in_stride < row) throw std::invalid_argument("buffer \"" + b.name + "\": stride is smaller than a row");
  const auto* src = static_cast<const uint8_t*>(data);
  if (in_stride == row) {
    std::memcpy(out, src, row * dst.height);
  } else {
    for (uint32_t y = 0; y < dst.height; ++y) std::memcpy(out + y * row, src + y * in_stride, row);
  }
}

uint8_t* Client::acquire_slot(BufferArgs b, uint64_t* stride) {
  if (!builder_.active()) throw std::logic_error("no frame begun (call begin first)");
  uint8_t* p = builder_.reserve(b);
  if (stride) *stride = b.stride;
  return p;
}

void Client::set_camera(const wire::Camera& c) {
  if (!builder_.active()) throw std::logic_error("no frame begun (call begin first)");
  check_camera(c);
  builder_.set_camera(c);
}

void Client::submit() {
  if (!builder_.active()) throw std::logic_error("no frame begun (call begin first)");
  pipeline_.submit(builder_.finish(), Clock::now());
}

std::shared_ptr<const ResultImage> Client::acquire_result(uint64_t* age_frames) {
  auto r = pipeline_.acquire(Clock::now());
  if (r && age_frames) {
    uint64_t latest = pipeline_.latest_frame_id();
    *age_frames = latest >= r->frame_id ? latest - r->frame_id : 0;
  }
  return r;
}

}  // namespace nrb::detail
