#include "frame_builder.hpp"

#include <algorithm>
#include <stdexcept>

namespace nrb::detail {

void FrameBuilder::start(uint64_t id, bool live, const std::shared_ptr<SlotPool>& pool, uint64_t time_ns, double dt,
                         double deadline_ms) {
  abandon();
  SubmittedFrame f;
  f.id = id;
  f.time_ns = time_ns;
  f.dt = dt;
  f.deadline_ms = deadline_ms;
  f.resources = std::make_shared<FrameResources>();
  f.live = live;
  live_ = live;
  if (live && pool) {
    slot_ = pool->acquire();  // null when every slot is busy: this frame goes inline
    if (slot_ && slot_->size() >= output_reserve_) {
      slot_used_ = output_reserve_;
      f.pool = pool;
      f.result_slot = slot_->index();
      f.resources->slot = slot_;
    } else {
      slot_.reset();
    }
  }
  frame_ = std::move(f);
}

uint8_t* FrameBuilder::reserve(BufferArgs& b) {
  if (!frame_) throw std::logic_error("no frame begun (call begin first)");
  check_buffer(b);
  auto& bufs = frame_->buffers;
  auto same = std::find_if(bufs.begin(), bufs.end(), [&](const wire::BufferDesc& d) { return d.name == b.name; });
  if (same != bufs.end()) {
    if (same->shm) --shm_buffers_;
    bufs.erase(same);
  }
  if (bufs.size() >= wire::kMaxBuffers) throw std::out_of_range("at most 32 buffers per frame");

  wire::BufferDesc d;
  d.name = b.name;
  d.format = b.format;
  d.width = b.width;
  d.height = b.height;
  d.stride = b.stride;
  if (b.depth_reversed) d.depth_reversed = true;
  if (b.depth_infinite) d.depth_infinite = true;
  const uint64_t size = b.stride * b.height;

  uint8_t* where;
  if (slot_ && slot_used_ + align64(size) <= slot_->size()) {
    d.shm = wire::ShmRef{slot_->index(), slot_used_};
    where = slot_->data() + slot_used_;
    slot_used_ += align64(size);
    ++shm_buffers_;
  } else {
    auto block = staging_->acquire(static_cast<size_t>(size));
    where = block->data;
    d.set_pixels(block->data, static_cast<size_t>(size));
    frame_->resources->blocks.push_back(std::move(block));
  }
  bufs.push_back(std::move(d));
  return where;
}

void FrameBuilder::set_camera(wire::Camera c) {
  if (!frame_) throw std::logic_error("no frame begun (call begin first)");
  frame_->camera = std::move(c);
}

SubmittedFrame FrameBuilder::finish() {
  if (!frame_) throw std::logic_error("no frame begun (call begin first)");
  SubmittedFrame f = std::move(*frame_);
  frame_.reset();
  slot_.reset();
  slot_used_ = 0;
  shm_buffers_ = 0;
  return f;
}

void FrameBuilder::drop(const std::string& name) {
  if (!frame_) throw std::logic_error("no frame begun (call begin first)");
  auto& bufs = frame_->buffers;
  auto same = std::find_if(bufs.begin(), bufs.end(), [&](const wire::BufferDesc& d) { return d.name == name; });
  if (same == bufs.end()) return;
  if (same->shm) --shm_buffers_;
  bufs.erase(same);
}

void FrameBuilder::abandon() noexcept {
  frame_.reset();
  slot_.reset();
  slot_used_ = 0;
  shm_buffers_ = 0;
  live_ = false;
}

}  // namespace nrb::detail
