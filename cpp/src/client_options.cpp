#include "client_options.hpp"

#include <algorithm>
#include <stdexcept>

#include "client_args.hpp"
#include "shm_pool.hpp"

namespace nrb::detail {

namespace {
void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

bool size_ok(wire::Size2 s) {
  return s.width >= 1 && s.width <= wire::kMaxDimension && s.height >= 1 && s.height <= wire::kMaxDimension;
}

bool is_z85_key(const std::string& k) { return k.size() == 40; }
}  // namespace

void ClientOptions::validate() const {
  require(!endpoint.empty() && endpoint.find("://") != std::string::npos,
          "endpoint must be a ZeroMQ endpoint such as tcp://127.0.0.1:5555 (got \"" + endpoint + "\")");
  require(frames_in_flight <= wire::kMaxInFlight, "frames_in_flight must be 0 (adaptive) or 1..64");
  require(deadline_ms > 0.0 && deadline_ms <= 60000.0, "deadline_ms must be in (0, 60000]");
  require(connect_timeout_ms > 0 && handshake_timeout_ms > 0 && server_timeout_ms > 0 && ping_interval_ms > 0,
          "timeouts must be positive");
  require(backoff_min_ms > 0 && backoff_max_ms >= backoff_min_ms, "reconnect backoff: need 0 < min <= max");
  bool any_curve = !curve_server_key.empty() || !curve_public_key.empty() || !curve_secret_key.empty();
  if (any_curve)
    require(is_z85_key(curve_server_key) && is_z85_key(curve_public_key) && is_z85_key(curve_secret_key),
            "CurveZMQ needs all three keys as 40-character Z85 text");
  require(!engine.empty() && engine.size() <= wire::kMaxString, "engine_name must be 1..256 bytes");
  require(engine_version.size() <= wire::kMaxString, "engine_version must be at most 256 bytes");
  require(valid_utf8(engine) && valid_utf8(engine_version), "engine name/version must be UTF-8");
  require(size_ok(render_size), "render size must be 1..16384 in each dimension (0x0: the link's default, which "
                                "needs the output size)");
  require(size_ok(output_size), "output size must be 1..16384 in each dimension");
  require(buffers.size() <= wire::kMaxBuffers, "at most 32 buffers");
  for (size_t i = 0; i < buffers.size(); ++i) {
    const auto& b = buffers[i];
    require(wire::is_valid_buffer_name(b.name) && b.name != "output",
            "buffers[" + std::to_string(i) + "]: \"" + b.name + "\" is not a buffer name (docs/protocol.md 6.1)");
    for (size_t j = 0; j < i; ++j) require(buffers[j].name != b.name, "buffers: \"" + b.name + "\" listed twice");
  }
  require(compression_level >= -100 && compression_level <= 22, "compression_level out of range");
  require(shm_slots <= wire::kMaxShmSlots, "shm_slots must be 0..256");
  require(renderer.size() <= wire::kMaxString && valid_utf8(renderer), "renderer must be UTF-8, at most 256 bytes");
  require(lossy_quality <= 100, "lossy_quality must be 0 (exact images) or 1..100");
  if (offers_shm()) require(slot_size() <= wire::kMaxShmSlotSize, "the buffers do not fit a 1 GiB shm slot");
}

void ClientOptions::resolve_link() {
  remote = link == LinkMode::remote || (link == LinkMode::automatic && !endpoint_is_local(endpoint));
  const bool no_render = render_size.width == 0 && render_size.height == 0;
  const bool no_output = output_size.width == 0 && output_size.height == 0;
  if (no_render && !no_output)
    render_size = remote ? wire::Size2{(output_size.width + 1) / 2, (output_size.height + 1) / 2} : output_size;
  if (no_output) output_size = render_size;
  // The fast codec: libnrb still sends a frame raw where compressing it does not pay (io_thread.cpp), so this costs
  // a fast link only the frames it measures with; a slow one gets 2-6x fewer bytes (docs/protocol.md section 5.1).
  if (remote && compression == wire::Compression::none && !raw_frames) compression = wire::Compression::lz4;
  if (!remote || exact_formats || !conversions.empty()) return;
  for (auto& b : buffers) {
    BufferConversion c;
    if (!compact_form(b.name, b.format, c)) continue;
    const bool taken = c.to_name != b.name && std::any_of(buffers.begin(), buffers.end(), [&](const wire::BufferSpec& o) {
      return o.name == c.to_name;
    });
    if (taken) continue;  // the engine offers the compact buffer itself
    b.name = c.to_name;
    b.format = c.to_format;
    conversions.push_back(std::move(c));
  }
}

bool ClientOptions::offers_shm() const {
  if (shm == ShmMode::off) return false;
  if (shm == ShmMode::on) return true;
  if (endpoint.rfind("ipc://", 0) == 0) return true;
  for (const char* local : {"tcp://127.", "tcp://localhost:", "tcp://[::1]:"})
    if (endpoint.rfind(local, 0) == 0) return true;
  return false;
}

uint32_t ClientOptions::slot_count() const {
  uint32_t n = shm_slots ? shm_slots : 2 * most_in_flight() + 4;
  return std::min<uint32_t>(n, wire::kMaxShmSlots);
}

uint64_t ClientOptions::output_reserve() const {
  // Room for the largest output format (rgba32f would be unusual; rgba16f is the widest the spec lists for output).
  return align64(align64(uint64_t(output_size.width) * 8) * output_size.height);
}

uint64_t ClientOptions::slot_size() const {
  uint64_t total = output_reserve();
  for (const auto& b : buffers)
    total += align64(uint64_t(render_size.width) * wire::bytes_per_pixel(b.format) * render_size.height);
  return std::max<uint64_t>(total, 64);
}

}  // namespace nrb::detail
