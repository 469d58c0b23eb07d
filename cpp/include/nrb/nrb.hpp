// nrb.hpp: header-only C++ wrapper over the C ABI in nrb.h (in the spirit of cppzmq: thin, RAII, exceptions on
// the C++ side only; the library underneath never throws). It wraps the C structs rather than mirroring them: the
// configuration *is* an nrb_client_config (defaults from nrb_client_config_init), with owning setters only where the
// C struct holds pointers.
//
//     nrb::client_config cfg;
//     cfg.endpoint("tcp://127.0.0.1:5555").buffer(NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8)
//         .buffer(NRB_BUFFER_DEPTH, NRB_FORMAT_R32F);
//     cfg->render_width = 1920; cfg->render_height = 1080;   // plain fields: the C struct itself
//     nrb::client c(cfg);
//     c.begin();
//     c.tag_buffer(NRB_BUFFER_DEPTH, NRB_FORMAT_R32F, 1920, 1080, depth_ptr);
//     auto slot = c.acquire_slot(NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8, 1920, 1080);  // write into slot.data
//     c.fire_event("weapon_powerup", nrb::params().set_float("power", 2.5).set_string("weapon", "laser"));
//     c.submit();
//     if (nrb::result r = c.acquire_result()) draw(r.pixels(), r.width(), r.height(), r.stride());
//     else draw_own_image();
//     if (c.state() == NRB_STATE_REFUSED) show(c.stats().refusal_message);  // c.retry() asks again
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
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

// Typed event params (nrb_params): a map with str keys, built value by value; limits are checked at the call that
// breaks them (nrb::error with NRB_ERROR_LIMIT_EXCEEDED / NRB_ERROR_INVALID_ARGUMENT). `key` is nullptr inside arrays.
class params {
 public:
  params() { detail::check(nrb_params_create(&h_), nullptr); }
  ~params() { nrb_params_destroy(h_); }
  params(params&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  params& operator=(params&& o) noexcept {
    if (this != &o) {
      nrb_params_destroy(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  params(const params&) = delete;
  params& operator=(const params&) = delete;

  params& clear() { return ok(nrb_params_clear(h_)); }
  params& set_nil(const char* key) { return ok(nrb_params_set_nil(h_, key)); }
  params& set_bool(const char* key, bool v) { return ok(nrb_params_set_bool(h_, key, v ? 1 : 0)); }
  params& set_int(const char* key, int64_t v) { return ok(nrb_params_set_int(h_, key, v)); }
  params& set_uint(const char* key, uint64_t v) { return ok(nrb_params_set_uint(h_, key, v)); }
  params& set_float(const char* key, double v) { return ok(nrb_params_set_float(h_, key, v)); }
  params& set_string(const char* key, std::string_view v) {
    return ok(nrb_params_set_string_n(h_, key, v.data(), v.size()));
  }
  params& set_bytes(const char* key, const void* data, size_t size) {
    return ok(nrb_params_set_bytes(h_, key, data, size));
  }
  params& begin_map(const char* key) { return ok(nrb_params_begin_map(h_, key)); }
  params& begin_array(const char* key) { return ok(nrb_params_begin_array(h_, key)); }
  params& end() { return ok(nrb_params_end(h_)); }
  // The canonical msgpack bytes (what nrb_fire_event takes).
  std::string_view data() const {
    const void* d = nullptr;
    size_t n = 0;
    detail::check(nrb_params_data(h_, &d, &n), nullptr);
    return {static_cast<const char*>(d), n};
  }
  const nrb_params* handle() const noexcept { return h_; }

 private:
  params& ok(nrb_status s) {
    detail::check(s, nullptr);
    return *this;
  }
  nrb_params* h_ = nullptr;
};

// A thin builder over nrb_client_config: operator-> gives the C struct itself (every plain field, defaults as
// nrb_client_config_init and nrb.h document them); the setters below own what the struct only points to (strings,
// the buffer list, the log callback), so a client_config may be copied and outlive its arguments.
class client_config {
 public:
  using log_fn = std::function<void(nrb_log_level, const char*)>;

  client_config() { nrb_client_config_init(&c_); }

  nrb_client_config* operator->() noexcept { return &c_; }
  const nrb_client_config* operator->() const noexcept { return &c_; }

  client_config& endpoint(std::string v) { return set(endpoint_, std::move(v)); }
  client_config& engine(std::string name, std::string version = std::string()) {
    set(engine_name_, std::move(name));
    return set(engine_version_, std::move(version));
  }
  // CurveZMQ: all three Z85 keys, or none.
  client_config& curve_keys(std::string server_public, std::string client_public, std::string client_secret) {
    set(curve_[0], std::move(server_public));
    set(curve_[1], std::move(client_public));
    return set(curve_[2], std::move(client_secret));
  }
  // HELLO `renderer` (docs/protocol.md section 5.11): the renderer wanted; a server without it refuses.
  client_config& renderer(std::string v) { return set(renderer_, std::move(v)); }
  client_config& buffer(std::string name, nrb_format format) {
    buffers_.emplace_back(std::move(name), format);
    return *this;
  }
  // Called from the I/O thread; messages below c->log_level (default NRB_LOG_DEBUG, as in nrb.h) are not reported.
  client_config& log(log_fn fn) {
    log_ = fn ? std::make_shared<log_fn>(std::move(fn)) : nullptr;
    return *this;
  }

  // The C struct with its pointers set to this object's storage: valid while this object lives, unchanged.
  const nrb_client_config& get() const {
    c_.endpoint = opt(endpoint_);
    c_.engine_name = opt(engine_name_);
    c_.engine_version = opt(engine_version_);
    c_.curve_server_public_key = opt(curve_[0]);
    c_.curve_client_public_key = opt(curve_[1]);
    c_.curve_client_secret_key = opt(curve_[2]);
    c_.renderer = opt(renderer_);
    specs_.clear();
    for (const auto& b : buffers_) specs_.push_back(nrb_buffer_spec{b.first.c_str(), b.second});
    c_.buffers = specs_.empty() ? nullptr : specs_.data();
    c_.buffer_count = static_cast<uint32_t>(specs_.size());
    c_.log_fn = log_ ? &trampoline : nullptr;
    c_.log_user = log_.get();
    return c_;
  }
  const std::shared_ptr<log_fn>& log_callback() const noexcept { return log_; }

 private:
  client_config& set(std::optional<std::string>& field, std::string v) {
    field = std::move(v);
    return *this;
  }
  static const char* opt(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }
  static void trampoline(void* user, nrb_log_level level, const char* msg) { (*static_cast<log_fn*>(user))(level, msg); }

  mutable nrb_client_config c_;
  std::optional<std::string> endpoint_, engine_name_, engine_version_, renderer_, curve_[3];
  std::vector<std::pair<std::string, nrb_format>> buffers_;
  mutable std::vector<nrb_buffer_spec> specs_;
  std::shared_ptr<log_fn> log_;
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
  // The client keeps a share of the config's log callback (the C struct's log_user points at it).
  explicit client(const client_config& cfg) : log_(cfg.log_callback()) {
    detail::check(nrb_client_create(&cfg.get(), &h_), nullptr);
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
  // Whether the frame begun will be sent (nrb_frame_get_live): when not, its G-buffers need not be read back.
  bool frame_live() const {
    int live = 0;
    detail::check(nrb_frame_get_live(h_, &live), h_);
    return live != 0;
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
  // The frame's light list (nrb_frame_set_lights): each light made with nrb_light_init, then filled.
  void set_lights(const nrb_light* lights, uint32_t count) {
    detail::check(nrb_frame_set_lights(h_, lights, count), h_);
  }
  void set_lights(const std::vector<nrb_light>& lights) {
    set_lights(lights.data(), static_cast<uint32_t>(lights.size()));
  }
  void submit() { detail::check(nrb_frame_submit(h_), h_); }

  // ---- any thread ---------------------------------------------------------------------------------------------
  // `params_msgpack`: a msgpack map (empty: {}); ids empty with scope GLOBAL.
  void fire_event(const std::string& name, const std::string& params_msgpack = std::string(),
                  nrb_scope scope = NRB_SCOPE_GLOBAL, const std::vector<uint32_t>& ids = {}) {
    nrb_target t{scope, ids.data(), static_cast<uint32_t>(ids.size())};
    detail::check(nrb_fire_event(h_, name.c_str(), params_msgpack.data(), params_msgpack.size(), &t), h_);
  }
  // Typed params (copied: `p` may be reused at once).
  void fire_event(const std::string& name, const params& p, nrb_scope scope = NRB_SCOPE_GLOBAL,
                  const std::vector<uint32_t>& ids = {}) {
    nrb_target t{scope, ids.data(), static_cast<uint32_t>(ids.size())};
    detail::check(nrb_fire_event_params(h_, name.c_str(), p.handle(), &t), h_);
  }
  void set_style(const std::string& style, double strength = 1.0, double over_seconds = 0.0,
                 nrb_scope scope = NRB_SCOPE_GLOBAL, const std::vector<uint32_t>& ids = {}) {
    nrb_target t{scope, ids.data(), static_cast<uint32_t>(ids.size())};
    detail::check(nrb_set_style(h_, style.c_str(), strength, over_seconds, &t), h_);
  }
  // A style written at run time (nrb_set_style_params): defines `style` with parameter set `p`, then moves to it.
  void set_style_params(const std::string& style, const params& p, double strength = 1.0, double over_seconds = 0.0,
                        nrb_scope scope = NRB_SCOPE_GLOBAL, const std::vector<uint32_t>& ids = {}) {
    nrb_target t{scope, ids.data(), static_cast<uint32_t>(ids.size())};
    detail::check(nrb_set_style_params(h_, style.c_str(), p.handle(), strength, over_seconds, &t), h_);
  }
  // Post controls: intensity 0 (the engine's image) .. 1 (re-rendered); exclusion of objects/materials by id.
  void set_intensity(double value, double over_seconds = 0.0) {
    detail::check(nrb_set_intensity(h_, value, over_seconds), h_);
  }
  void exclude(nrb_scope scope, const std::vector<uint32_t>& ids, bool excluded = true) {
    nrb_target t{scope, ids.data(), static_cast<uint32_t>(ids.size())};
    detail::check(nrb_exclude(h_, &t, excluded ? 1 : 0), h_);
  }
  // Includes every excluded id again.
  void include_all() { detail::check(nrb_exclude(h_, nullptr, 0), h_); }
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
  // Whether a frame begun now would be sent (nrb_get_sending): ask before a readback that completes later.
  bool sending() const {
    int on = 0;
    detail::check(nrb_get_sending(h_, &on), h_);
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
  // nrb_client_get_link: whether the link is remote, and the render size to draw the G-buffers at.
  struct link_info {
    nrb_link link = NRB_LINK_LOCAL;
    uint32_t render_width = 0, render_height = 0;
  };
  link_info link() const {
    link_info l;
    detail::check(nrb_client_get_link(h_, &l.link, &l.render_width, &l.render_height), h_);
    return l;
  }
  // Leaves NRB_STATE_REFUSED and asks the renderer again; a no-op in any other state.
  void retry() { detail::check(nrb_client_retry(h_), h_); }
  // nrb_last_error: the last failure of a call or of the connection (a refusal, no WELCOME); "" when none.
  std::string last_error() const { return nrb_last_error(h_); }

 private:
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
  std::shared_ptr<client_config::log_fn> log_;  // the C callback's user pointer: alive as long as the client
};

}  // namespace nrb
