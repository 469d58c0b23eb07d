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

ClientOptions prepared(ClientOptions o) {
  o.resolve_link();
  o.validate();
  return o;
}

uint64_t monotonic_ns(TimePoint t) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}
}  // namespace

Client::Client(ClientOptions opts, Logger log)
    : opts_(prepared(std::move(opts))),
      staging_(StagingPool::create()),
      pipeline_(pipeline_options(opts_)),
      builder_(staging_, opts_.output_reserve()) {
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
  pending_.clear();
  Pipeline::BeginInfo info = pipeline_.begin(now);
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
  drop_pending(b.name);
  BufferArgs sent;
  if (wire_form(b, sent)) {
    check_buffer(b);  // the engine's form, stride resolved
    uint8_t* out = builder_.reserve(sent);
    convert_pixels(static_cast<const uint8_t*>(data), b.stride, b.format, b.width, b.height, out, sent.format,
                   sent.width, sent.height);
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
  drop_pending(b.name);
  BufferArgs sent;
  if (wire_form(b, sent)) {  // the engine writes its own form into scratch memory; submit converts it
    check_buffer(b);
    PendingConversion p;
    p.name = b.name;
    p.engine = b;
    p.wire = builder_.reserve(sent);
    p.sent = sent;
    p.scratch = staging_->acquire(static_cast<size_t>(b.stride * b.height));
    if (stride) *stride = b.stride;
    pending_.push_back(std::move(p));
    return pending_.back().scratch->data;
  }
  uint8_t* p = builder_.reserve(b);
  if (stride) *stride = b.stride;
  return p;
}

bool Client::wire_form(const BufferArgs& b, BufferArgs& sent) const {
  sent = b;
  sent.stride = 0;
  bool changed = false;
  for (const auto& c : opts_.conversions)
    if (c.from_name == b.name && c.from_format == b.format) {
      sent.name = c.to_name;
      sent.format = c.to_format;
      changed = true;
    }
  const wire::Size2 render = opts_.render_size;
  // per-frame constants travel as they are: 1x1 ones, and the light list (4 x lights, also when tagged by hand)
  const bool constant = (b.width == 1 && b.height == 1) || b.name == kLightsBuffer;
  if (!constant && (b.width != render.width || b.height != render.height)) {
    sent.width = render.width;
    sent.height = render.height;
    changed = true;
  }
  return changed;
}

void Client::drop_pending(const std::string& name) {
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                [&](const PendingConversion& p) { return p.name == name; }),
                 pending_.end());
}

void Client::set_camera(const wire::Camera& c) {
  if (!builder_.active()) throw std::logic_error("no frame begun (call begin first)");
  check_camera(c);
  const wire::Size2 render = opts_.render_size;
  if (c.render_size && c.render_size->width && c.render_size->height &&
      (c.render_size->width != render.width || c.render_size->height != render.height)) {
    // an engine drawing at another size than the session's (wire_form resamples its buffers): the camera describes
    // the buffers that are sent, so its render size and pixel jitter follow
    const wire::Size2 drawn = *c.render_size;
    wire::Camera sent = c;
    sent.render_size = render;
    if (sent.jitter) {
      (*sent.jitter)[0] *= double(render.width) / drawn.width;
      (*sent.jitter)[1] *= double(render.height) / drawn.height;
    }
    builder_.set_camera(std::move(sent));
    return;
  }
  builder_.set_camera(c);
}

void Client::set_lights(const std::vector<Light>& lights) {
  if (!builder_.active()) throw std::logic_error("no frame begun (call begin first)");
  const std::vector<float> rows = pack_lights(lights);  // checked before anything changes
  drop_pending(kLightsBuffer);
  if (lights.empty()) {
    builder_.drop(kLightsBuffer);
    return;
  }
  if (!builder_.live()) return;  // checked, but nobody will see it
  BufferArgs b;
  b.name = kLightsBuffer;
  b.format = wire::Format::rgba32f;
  b.width = kLightTexels;
  b.height = static_cast<uint32_t>(lights.size());
  uint8_t* out = builder_.reserve(b);  // not through wire_form: a list, not an image to resample
  std::memcpy(out, rows.data(), rows.size() * sizeof(float));
}

void Client::submit() {
  if (!builder_.active()) throw std::logic_error("no frame begun (call begin first)");
  for (const auto& p : pending_)
    convert_pixels(p.scratch->data, p.engine.stride, p.engine.format, p.engine.width, p.engine.height, p.wire,
                   p.sent.format, p.sent.width, p.sent.height);
  pending_.clear();
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
