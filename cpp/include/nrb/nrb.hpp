// nrb.hpp: header-only C++ wrapper over the C ABI in nrb.h (in the spirit of cppzmq: thin, RAII, exceptions on
// the C++ side only; the library underneath never throws).
//
//     nrb::client_config cfg;
//     cfg.endpoint = "tcp://127.0.0.1:5555";
//     cfg.render_width = 1920; cfg.render_height = 1080;
//     cfg.buffers = {{"hudless_color", NRB_FORMAT_RGBA8}, {"depth", NRB_FORMAT_R32F}};
//     nrb::client c(cfg);
//     c.begin();
//     c.tag_buffer("depth", NRB_FORMAT_R32F, 1920, 1080, depth_ptr);
//     auto slot = c.acquire_slot("hudless_color", NRB_FORMAT_RGBA8, 1920, 1080);  // write into slot.data
//     c.submit();
//     if (nrb::result r = c.acquire_result()) draw(r.pixels(), r.width(), r.height(), r.stride());
//     else draw_own_image();
//     if (c.state() == NRB_STATE_REFUSED) show(c.stats().refusal_message);  // c.retry() asks again
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nrb/nrb.h"

namespace nrb {

class error : public std::runtime_error {
 public:
  error(nrb_status status, const std::string& what) : std::runtime_error(what), status_(status) {}
  nrb_status status() const noexcept { return status_; }

 private:
  nrb_status status_;
};

namespace detail {
inline nrb_status check(nrb_status s, const nrb_client* c) {
  if (s < 0) {
    const char* msg = nrb_last_error(c);
    throw error(s, std::string(nrb_status_name(s)) + (msg && *msg ? std::string(": ") + msg : std::string()));
  }
  return s;
}
}  // namespace detail

struct buffer_spec {
  std::string name;
  nrb_format format;
};

// nrb_client_config with owning strings; zero/empty fields mean the library defaults.
struct client_config {
  std::string endpoint = "tcp://127.0.0.1:5555";
  nrb_transport transport = NRB_TRANSPORT_AUTO;
  uint32_t frames_in_flight = 0;
  double deadline_ms = 0;
  uint32_t connect_timeout_ms = 0, handshake_timeout_ms = 0, server_timeout_ms = 0, ping_interval_ms = 0;
  uint32_t reconnect_backoff_min_ms = 0, reconnect_backoff_max_ms = 0;
  std::string curve_server_public_key, curve_client_public_key, curve_client_secret_key;
  std::function<void(nrb_log_level, const char*)> log;  // called from the I/O thread
  nrb_log_level log_level = NRB_LOG_INFO;
  std::string engine_name = "unknown", engine_version;
  uint32_t render_width = 0, render_height = 0, output_width = 0, output_height = 0;
  std::vector<buffer_spec> buffers;
  nrb_compression compression = NRB_COMPRESSION_NONE;
  int32_t compression_level = 0;
  uint32_t shm_slots = 0;
  bool start_disabled = false;
};

class client;

// An acquired result; releases it when destroyed. Empty (false) when the engine should show its own image.
class result {
 public:
  result() noexcept = default;
  result(result&& o) noexcept : c_(std::exchange(o.c_, nullptr)), r_(o.r_) {}
  result& operator=(result&& o) noexcept {
    if (this != &o) {
      reset();
      c_ = std::exchange(o.c_, nullptr);
      r_ = o.r_;
    }
    return *this;
  }
  result(const result&) = delete;
  result& operator=(const result&) = delete;
  ~result() { reset(); }

  explicit operator bool() const noexcept { return c_ != nullptr; }
  const void* pixels() const noexcept { return r_.pixels; }
  uint32_t width() const noexcept { return r_.width; }
  uint32_t height() const noexcept { return r_.height; }
  uint32_t stride() const noexcept { return r_.stride; }
  nrb_format format() const noexcept { return r_.format; }
  uint64_t frame_id() const noexcept { return r_.frame_id; }
  uint64_t age_frames() const noexcept { return r_.age_frames; }
  double round_trip_ms() const noexcept { return r_.round_trip_ms; }
  double server_ms() const noexcept { return r_.server_ms; }
  const nrb_result& raw() const noexcept { return r_; }

  void reset() noexcept {
    if (c_) nrb_release_result(c_, &r_);
    c_ = nullptr;
  }

 private:
  friend class client;
  nrb_client* c_ = nullptr;
  nrb_result r_{};
};

struct slot {
  void* data;
  uint32_t stride;
};

class client {
 public:
  explicit client(const client_config& cfg) : log_(std::make_unique<log_fn>(cfg.log)) {
    nrb_client_config c;
    nrb_client_config_init(&c);
    c.endpoint = cfg.endpoint.c_str();
    c.transport = cfg.transport;
    c.frames_in_flight = cfg.frames_in_flight;
    c.deadline_ms = cfg.deadline_ms;
    c.connect_timeout_ms = cfg.connect_timeout_ms;
    c.handshake_timeout_ms = cfg.handshake_timeout_ms;
    c.server_timeout_ms = cfg.server_timeout_ms;
    c.ping_interval_ms = cfg.ping_interval_ms;
    c.reconnect_backoff_min_ms = cfg.reconnect_backoff_min_ms;
    c.reconnect_backoff_max_ms = cfg.reconnect_backoff_max_ms;
    auto opt = [](const std::string& s) { return s.empty() ? nullptr : s.c_str(); };
    c.curve_server_public_key = opt(cfg.curve_server_public_key);
    c.curve_client_public_key = opt(cfg.curve_client_public_key);
    c.curve_client_secret_key = opt(cfg.curve_client_secret_key);
    if (*log_) {
      c.log_fn = [](void* user, nrb_log_level level, const char* msg) { (*static_cast<log_fn*>(user))(level, msg); };
      c.log_user = log_.get();
    }
    c.log_level = cfg.log_level;
    c.engine_name = cfg.engine_name.c_str();
    c.engine_version = cfg.engine_version.c_str();
    c.render_width = cfg.render_width;
    c.render_height = cfg.render_height;
    c.output_width = cfg.output_width;
    c.output_height = cfg.output_height;
    std::vector<nrb_buffer_spec> specs;
    specs.reserve(cfg.buffers.size());
    for (const auto& b : cfg.buffers) specs.push_back(nrb_buffer_spec{b.name.c_str(), b.format});
    c.buffers = specs.data();
    c.buffer_count = static_cast<uint32_t>(specs.size());
    c.compression = cfg.compression;
    c.compression_level = cfg.compression_level;
    c.shm_slots = cfg.shm_slots;
    c.start_disabled = cfg.start_disabled ? 1u : 0u;
    detail::check(nrb_client_create(&c, &h_), nullptr);
  }
  ~client() { nrb_client_destroy(h_); }
  client(client&& o) noexcept : h_(std::exchange(o.h_, nullptr)), log_(std::move(o.log_)) {}
  client& operator=(client&& o) noexcept {
    if (this != &o) {
      nrb_client_destroy(h_);
      h_ = std::exchange(o.h_, nullptr);
      log_ = std::move(o.log_);
    }
    return *this;
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  nrb_client* handle() const noexcept { return h_; }

  // ---- render thread ------------------------------------------------------------------------------------------
  uint64_t begin(double dt = -1.0, double deadline_ms = 0.0) {
    nrb_frame_info info{sizeof(nrb_frame_info), NRB_FRAME_INFO_VERSION, dt, deadline_ms};
    uint64_t id = 0;
    detail::check(nrb_frame_begin(h_, &info, &id), h_);
    return id;
  }
  void tag_buffer(const char* name, nrb_format format, uint32_t width, uint32_t height, const void* data,
                  uint32_t stride = 0, uint32_t flags = 0) {
    nrb_buffer_desc d = desc(name, format, width, height, stride, flags);
    d.data = data;
    detail::check(nrb_frame_tag_buffer(h_, &d), h_);
  }
  slot acquire_slot(const char* name, nrb_format format, uint32_t width, uint32_t height, uint32_t stride = 0,
                    uint32_t flags = 0) {
    nrb_buffer_desc d = desc(name, format, width, height, stride, flags);
    slot s{nullptr, 0};
    detail::check(nrb_frame_acquire_slot(h_, &d, &s.data, &s.stride), h_);
    return s;
  }
  void set_camera(const nrb_camera& cam) { detail::check(nrb_frame_set_camera(h_, &cam), h_); }
  void submit() { detail::check(nrb_frame_submit(h_), h_); }

  // ---- any thread ---------------------------------------------------------------------------------------------
  // `params_msgpack`: a msgpack map (empty: {}); ids empty with scope GLOBAL.
  void fire_event(const std::string& name, const std::string& params_msgpack = std::string(),
                  nrb_scope scope = NRB_SCOPE_GLOBAL, const std::vector<uint32_t>& ids = {}) {
    nrb_target t{scope, ids.data(), static_cast<uint32_t>(ids.size())};
    detail::check(nrb_fire_event(h_, name.c_str(), params_msgpack.data(), params_msgpack.size(), &t), h_);
  }
  void set_style(const std::string& style, double strength = 1.0, double over_seconds = 0.0,
                 nrb_scope scope = NRB_SCOPE_GLOBAL, const std::vector<uint32_t>& ids = {}) {
    nrb_target t{scope, ids.data(), static_cast<uint32_t>(ids.size())};
    detail::check(nrb_set_style(h_, style.c_str(), strength, over_seconds, &t), h_);
  }
  result acquire_result() {
    result r;
    r.r_.struct_size = sizeof(nrb_result);
    r.r_.struct_version = NRB_RESULT_VERSION;
    if (detail::check(nrb_acquire_result(h_, &r.r_), h_) == NRB_OK) r.c_ = h_;
    return r;
  }
  void set_enabled(bool on) { detail::check(nrb_set_enabled(h_, on ? 1 : 0), h_); }
  bool enabled() const {
    int on = 0;
    detail::check(nrb_get_enabled(h_, &on), h_);
    return on != 0;
  }
  // Counters and the connection state; while stats().state is NRB_STATE_REFUSED, refusal_code and
  // refusal_message say why (and last_error() the whole story).
  nrb_stats stats() const {
    nrb_stats s{};
    s.struct_size = sizeof s;
    s.struct_version = NRB_STATS_VERSION;
    detail::check(nrb_get_stats(h_, &s), h_);
    return s;
  }
  nrb_connection_state state() const { return stats().state; }
  // Leaves NRB_STATE_REFUSED and asks the renderer again; a no-op in any other state.
  void retry() { detail::check(nrb_client_retry(h_), h_); }
  // nrb_last_error: the last failure of a call or of the connection (a refusal, no WELCOME); "" when none.
  std::string last_error() const { return nrb_last_error(h_); }

 private:
  using log_fn = std::function<void(nrb_log_level, const char*)>;

  static nrb_buffer_desc desc(const char* name, nrb_format format, uint32_t width, uint32_t height, uint32_t stride,
                              uint32_t flags) {
    nrb_buffer_desc d{};
    d.struct_size = sizeof d;
    d.struct_version = NRB_BUFFER_DESC_VERSION;
    d.name = name;
    d.format = format;
    d.width = width;
    d.height = height;
    d.stride = stride;
    d.flags = flags;
    return d;
  }

  nrb_client* h_ = nullptr;
  std::unique_ptr<log_fn> log_;  // stable address for the C callback's user pointer
};

}  // namespace nrb
