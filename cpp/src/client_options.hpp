// The client's configuration after defaults and validation (the C struct nrb_client_config, resolved), and its
// logger. Shared by Client (render-thread side) and IoThread (network side).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "link_defaults.hpp"
#include "protocol.hpp"

namespace nrb::detail {

enum class LogLevel : uint32_t { debug = 0, info = 1, warning = 2, error = 3 };

class Logger {
 public:
  using Fn = std::function<void(LogLevel, const std::string&)>;
  Logger() = default;
  Logger(Fn fn, LogLevel min_level) : fn_(std::move(fn)), min_(min_level) {}

  bool enabled(LogLevel level) const noexcept { return fn_ && level >= min_; }
  void operator()(LogLevel level, const std::string& message) const noexcept {
    if (!enabled(level)) return;
    try {
      fn_(level, message);
    } catch (...) {  // a throwing callback must not take the I/O thread down
    }
  }

 private:
  Fn fn_;
  LogLevel min_ = LogLevel::debug;
};

enum class ShmMode : uint32_t { automatic = 0, off = 1, on = 2 };
// nrb_link: what kind of link the endpoint is (automatic: endpoint_is_local decides).
enum class LinkMode : uint32_t { automatic = 0, local = 1, remote = 2 };

// The adaptive in-flight limit's maximum (frames_in_flight 0).
inline constexpr uint32_t kAdaptiveMaxInFlight = 4;

struct ClientOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  ShmMode shm = ShmMode::automatic;
  uint32_t frames_in_flight = 0;  // 0: adaptive, 1..kAdaptiveMaxInFlight (Pipeline::Options::frames_in_flight)
  double deadline_ms = 100.0;
  uint32_t connect_timeout_ms = 1000;
  uint32_t handshake_timeout_ms = 1000;
  uint32_t server_timeout_ms = 2000;
  uint32_t ping_interval_ms = 500;
  uint32_t backoff_min_ms = 50;
  uint32_t backoff_max_ms = 2000;
  std::string curve_server_key, curve_public_key, curve_secret_key;  // Z85, 40 characters each, or all empty
  std::string engine = "unknown";
  std::string engine_version;
  wire::Size2 render_size, output_size;
  std::vector<wire::BufferSpec> buffers;
  wire::Compression compression = wire::Compression::none;  // none: the link's (lz4 on a remote link) unless raw
  bool raw_frames = false;  // NRB_COMPRESSION_OFF: never compress, also on a remote link
  int compression_level = 0;
  uint32_t shm_slots = 0;  // 0: 2 * most_in_flight() + 4
  bool start_enabled = true;
  size_t max_pending_events = 65536;
  std::string renderer;       // HELLO `renderer` (section 5.11); empty: any
  uint32_t lossy_quality = 0;  // 1..100: HELLO `lossy_output` at this quality (section 6.3.1); 0: exact images
  std::string lossy_codec = "jpeg";  // its codec: "jpeg" or "webp"
  LinkMode link = LinkMode::automatic;
  bool exact_formats = false;  // true: buffers travel in the formats the engine tags, even on a remote link

  // Set by resolve_link() (idempotent; Client calls it before validate()):
  bool remote = false;                         // the session's link is remote (nrb_link)
  std::vector<BufferConversion> conversions;  // what tag_buffer converts (the compact set on a remote link)

  // Applies the remote-link defaults of nrb.h (nrb_link): the link from `link` and the endpoint; a render size of
  // 0x0 becomes the output size (local) or half of it, rounded up (remote); an output size of 0x0 the render size;
  // on a remote link without exact_formats, `buffers` with a compact form (compact_form) are offered in it and
  // `conversions` says how tag_buffer gets there; on a remote link a compression of none becomes lz4 unless
  // raw_frames.
  void resolve_link();

  // The most frames that can ever be in flight: frames_in_flight, or the adaptive maximum.
  uint32_t most_in_flight() const noexcept { return frames_in_flight ? frames_in_flight : kAdaptiveMaxInFlight; }

  // Throws std::invalid_argument naming the offending field.
  void validate() const;
  // Whether to offer shared memory in HELLO: `on`, or `automatic` with an ipc:// or loopback tcp:// endpoint.
  bool offers_shm() const;
  uint32_t slot_count() const;
  // Bytes reserved at the start of every slot for the RESULT image (the renderer writes it at offset 0).
  uint64_t output_reserve() const;
  // output_reserve() plus every configured buffer at the render size, each 64-byte aligned.
  uint64_t slot_size() const;
};

// The library's own name and version as sent in HELLO `client`.
inline constexpr const char* kClientName = "libnrb/0.1.0";

}  // namespace nrb::detail
