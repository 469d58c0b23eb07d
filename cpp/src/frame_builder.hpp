// Assembles the frame the render thread is building: decides where each G-buffer's bytes go and hands out that
// memory. With a shared-memory session a frame leases one slot laid out as
//     [0, output_reserve)            the RESULT image (the renderer writes it at offset 0 of result_slot)
//     [output_reserve, ...)          the G-buffers, each at a 64-byte-aligned offset
// and the engine writes straight into it; a buffer that does not fit (or a frame when every slot is busy) uses
// recycled staging memory that ZeroMQ sends without a further copy. Render thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "client_args.hpp"
#include "pipeline.hpp"
#include "shm_pool.hpp"
#include "staging_pool.hpp"

namespace nrb::detail {

class FrameBuilder {
 public:
  FrameBuilder(std::shared_ptr<StagingPool> staging, uint64_t output_reserve)
      : staging_(std::move(staging)), output_reserve_(output_reserve) {}

  // Starts frame `id` (dropping any frame in progress). `live`: it can be sent (when false the engine's pixels are
  // not copied at all). `pool`: the session's shared memory, if any.
  void start(uint64_t id, bool live, const std::shared_ptr<SlotPool>& pool, uint64_t time_ns, double dt,
             double deadline_ms);
  bool active() const noexcept { return frame_.has_value(); }
  bool live() const noexcept { return live_; }

  // Memory for buffer `b` (validated; b.stride resolved) of the current frame: `b.stride * b.height` writable
  // bytes, valid until finish()/start(). Replaces an earlier buffer of the same name.
  uint8_t* reserve(BufferArgs& b);
  void set_camera(wire::Camera c);
  // Removes buffer `name` from the current frame, if it is there (its shared-memory bytes stay reserved).
  void drop(const std::string& name);
  // Number of shm-resident buffers in the current frame (tests, statistics).
  size_t shm_buffers() const noexcept { return shm_buffers_; }

  SubmittedFrame finish();
  void abandon() noexcept;

 private:
  std::shared_ptr<StagingPool> staging_;
  uint64_t output_reserve_;
  std::optional<SubmittedFrame> frame_;
  bool live_ = false;
  std::shared_ptr<SlotPool::Lease> slot_;
  uint64_t slot_used_ = 0;
  size_t shm_buffers_ = 0;
};

}  // namespace nrb::detail
