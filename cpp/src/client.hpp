// The engine-side client: what the C ABI (c_api.cpp) and the C++/Python wrappers drive. It joins the render-thread
// side (FrameBuilder, Pipeline) with the network side (IoThread). Errors are exceptions here; the C ABI turns
// them into status codes:
//   std::invalid_argument -> NRB_ERROR_INVALID_ARGUMENT, std::out_of_range -> NRB_ERROR_LIMIT_EXCEEDED,
//   other std::logic_error -> NRB_ERROR_INVALID_STATE, std::bad_alloc -> NRB_ERROR_OUT_OF_MEMORY.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "client_args.hpp"
#include "client_options.hpp"
#include "frame_builder.hpp"
#include "io_thread.hpp"
#include "lights.hpp"
#include "pipeline.hpp"
#include "staging_pool.hpp"

namespace nrb::detail {

class Client {
 public:
  // Validates `opts` (std::invalid_argument) and starts connecting in the background.
  Client(ClientOptions opts, Logger log);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // ---- render thread ------------------------------------------------------------------------------------------
  // dt < 0: measured from the previous begin; deadline_ms 0: the configured one.
  uint64_t begin(double dt = -1.0, double deadline_ms = 0.0);
  // Whether the frame begun (not yet submitted) will be sent; false without one.
  bool frame_live() const noexcept { return builder_.active() && builder_.live(); }
  // Whether a frame begun now would be sent. Any thread.
  bool sending() const { return pipeline_.would_be_live(Clock::now()); }
  // Copies the pixels (rows `b.stride` apart; stride 0 = tight) into the frame. Skipped when the frame cannot be
  // sent (disabled / not connected / held back from a renderer too slow for the deadline).
  void tag_buffer(BufferArgs b, const void* data);
  // Where the engine writes buffer `b` itself; *stride receives the row pitch to use.
  uint8_t* acquire_slot(BufferArgs b, uint64_t* stride);
  void set_camera(const wire::Camera& c);
  // The frame's light list (x_lights, lights.hpp): checked, packed and tagged as is (never resampled or converted);
  // an empty list removes it. A failed call changes nothing.
  void set_lights(const std::vector<Light>& lights);
  void submit();

  // ---- any thread ---------------------------------------------------------------------------------------------
  void fire_event(wire::Event e) { pipeline_.fire_event(std::move(e)); }
  void set_style(wire::StyleCommand s) { pipeline_.set_style(std::move(s)); }
  void set_control(wire::Control c) { pipeline_.set_control(std::move(c)); }
  // The newest fresh result (and its age in frames) or null: show the engine's own image.
  std::shared_ptr<const ResultImage> acquire_result(uint64_t* age_frames = nullptr);
  void set_enabled(bool enabled) { pipeline_.set_enabled(enabled); }
  bool enabled() const { return pipeline_.enabled(); }
  PipelineStats stats() const { return pipeline_.stats(); }
  // Leaves the refused state and connects again; a no-op in any other state.
  void retry() { pipeline_.request_retry(); }
  // nrb_last_error: the C ABI's own failures and the connection's problems (refusal, no WELCOME), newest wins.
  void set_last_error(std::string text) { pipeline_.set_last_error(std::move(text)); }
  std::string last_error() const { return pipeline_.last_error(); }
  const ClientOptions& options() const noexcept { return opts_; }
  // Whether the frame being built has shared-memory buffers (for tests and benchmarks).
  size_t current_shm_buffers() const noexcept { return builder_.shm_buffers(); }

 private:
  // A buffer the engine writes in its own form (acquire_slot) that goes out converted (compact format, render
  // size): converted into `wire` at submit.
  struct PendingConversion {
    std::string name;
    std::shared_ptr<StagingPool::Block> scratch;
    BufferArgs engine;  // the engine's form (stride resolved)
    BufferArgs sent;    // the form on the wire (tight rows)
    uint8_t* wire = nullptr;
  };
  // The form buffer `b` travels in: the compact format of a remote link (ClientOptions::conversions) and the
  // session's render size (nearest-pixel resampling) when it is tagged at another size, 1x1 constants excepted (a
  // renderer refuses any other size). Returns false when it travels as tagged.
  bool wire_form(const BufferArgs& b, BufferArgs& sent) const;
  void drop_pending(const std::string& name);

  const ClientOptions opts_;
  std::shared_ptr<StagingPool> staging_;
  std::vector<PendingConversion> pending_;
  Pipeline pipeline_;
  FrameBuilder builder_;
  TimePoint last_begin_{};
  bool has_begun_ = false;
  std::unique_ptr<IoThread> io_;  // last: stopped first
};

}  // namespace nrb::detail
