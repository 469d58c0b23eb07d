// NRB/1 wire codec (docs/protocol.md), the C++ side of the byte-for-byte contract with bridge/protocol.py.
//
// * encode(): writes the canonical msgpack header (section 3.1) into a caller-owned buffer and returns *views* of the
//   payload frames (the caller's pointers; pixels are never copied).
// * decode(): validates a received multipart message in the normative check order of section 9.1 (so it reports
//   the same first error as bridge/protocol.py), enforcing the limits of section 11 before allocating. It never throws and never reads out of bounds; the decoded message
//   holds views into the input frames (raw buffers) or owned bytes (decompressed buffers), so the input frames
//   must outlive the result.
//
// This header is internal to libnrb (cpp/src); it has no dependency on nlohmann (see protocol_json.hpp for tests).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nrb::wire {

inline constexpr uint64_t kProtocolVersion = 1;

// ---------------------------------------------------------------------------------------------------------------
// Limits (section 11) and ranges used by the codec.
// ---------------------------------------------------------------------------------------------------------------
inline constexpr size_t kMaxHeaderBytes = 65536;
inline constexpr uint64_t kMaxDimension = 16384;           // width, height, size entries
inline constexpr uint64_t kMaxBufferBytes = 1ull << 30;    // stride * height
inline constexpr uint64_t kMaxStride = 1ull << 31;
inline constexpr size_t kMaxBuffers = 32;                  // per message (HELLO buffers, FRAME buffers)
inline constexpr size_t kMaxEvents = 256;                  // events, style commands per FRAME
inline constexpr size_t kMaxTargetIds = 1024;
inline constexpr uint64_t kMaxTargetId = 0xFFFFFFFFull;    // each id < 2^32
inline constexpr size_t kMaxString = 256;
inline constexpr size_t kMaxErrorMessage = 1024;
inline constexpr size_t kMaxParamsBytes = 4096;
inline constexpr size_t kMaxParamsDepth = 8;               // the params map itself is depth 1
inline constexpr size_t kMaxNesting = 16;                  // containers; the header map itself is depth 1
inline constexpr size_t kMaxNameBytes = 64;                // buffer, event, style and shm pool names
inline constexpr size_t kMaxList = 256;                    // capabilities, WELCOME styles, must_understand
inline constexpr uint64_t kMaxShmSlots = 256;
inline constexpr uint64_t kMaxShmSlotSize = 1ull << 30;
inline constexpr uint64_t kShmAlign = 64;
inline constexpr uint64_t kMaxInFlight = 64;

// ---------------------------------------------------------------------------------------------------------------
// Error codes (section 9).
// ---------------------------------------------------------------------------------------------------------------
// 64-bit underlying type: an ERROR may carry any uint code (section 9.1 checks no range), and every uint64 value
// is then a valid ErrorCode; error_name() is "" outside the table.
enum class ErrorCode : uint64_t {
  MALFORMED = 1,
  VERSION_UNSUPPORTED = 2,
  UNKNOWN_TYPE = 3,
  MISSING_FIELD = 4,
  WRONG_TYPE = 5,
  BAD_VALUE = 6,
  LIMIT_EXCEEDED = 7,
  PAYLOAD_MISMATCH = 8,
  NO_SESSION = 9,
  UNKNOWN_REQUIRED = 10,
  RENDER_FAILED = 11,
  OVERLOADED = 12,
  UNAUTHORIZED = 13,
  INTERNAL = 14,
  UNSUPPORTED = 15,  // HELLO asks for a renderer this side does not run (section 5.11)
};

// "MALFORMED", ...; "" for a value outside the table.
std::string_view error_name(ErrorCode code) noexcept;
std::optional<ErrorCode> error_code_from_name(std::string_view name) noexcept;
std::optional<ErrorCode> error_code_from_int(uint64_t code) noexcept;

// ---------------------------------------------------------------------------------------------------------------
// Formats (section 6.2) and buffer names (section 6.1).
// ---------------------------------------------------------------------------------------------------------------
enum class Format : uint8_t { rgba8, rgba8_srgb, rgba16f, rgba32f, rg8, rg16f, rg32f, r8, r16f, r32f, r16u, r32u };

struct FormatInfo {
  Format format;
  std::string_view name;
  uint32_t bytes_per_pixel;
  uint32_t channels;
};

// All formats of section 6.2, in table order.
const std::array<FormatInfo, 12>& format_table() noexcept;
const FormatInfo& format_info(Format f) noexcept;
std::string_view format_name(Format f) noexcept;
uint32_t bytes_per_pixel(Format f) noexcept;
std::optional<Format> format_from_name(std::string_view name) noexcept;

// The fixed vocabulary of section 6.1 (Streamline tags plus NRB additions, including "output").
const std::array<std::string_view, 26>& buffer_names() noexcept;
bool is_standard_buffer_name(std::string_view name) noexcept;
// `x_[a-z0-9_]{1,61}`
bool is_vendor_buffer_name(std::string_view name) noexcept;
// Standard or vendor name.
bool is_valid_buffer_name(std::string_view name) noexcept;

// ---------------------------------------------------------------------------------------------------------------
// Message structs. Field order follows the canonical key order of section 5.
// ---------------------------------------------------------------------------------------------------------------
using Mat4 = std::array<double, 16>;
using Vec3 = std::array<double, 3>;
using Vec2 = std::array<double, 2>;

struct Size2 {
  uint32_t width = 0;
  uint32_t height = 0;
  friend bool operator==(const Size2& a, const Size2& b) { return a.width == b.width && a.height == b.height; }
};

struct BufferSpec {  // bufspec: {name, format}
  std::string name;
  Format format = Format::rgba8;
};

struct ShmRef {  // shmref: {slot, offset}
  uint64_t slot = 0;
  uint64_t offset = 0;
};

struct ShmPool {  // shmpool: {name, slots, slot_size}
  std::string name;
  uint64_t slots = 0;
  uint64_t slot_size = 0;
};

struct DoorbellSpec {  // doorbell: {to_renderer, to_engine}, the two FIFO paths of section 7.1
  std::string to_renderer, to_engine;
};
inline constexpr size_t kMaxDoorbellPathBytes = 255;
// A doorbell record (section 7.1): 4-byte little-endian length, then one payload-less message's header.
inline constexpr size_t kDoorbellLengthBytes = 4;

// jpeg: the RESULT image only, lossy, when HELLO lossy_output allowed it (section 6.3.1).
// webp: likewise (section 6.3.1), one WebP image (lossy VP8 or lossless VP8L).
enum class Compression : uint8_t { none, lz4, zstd, jpeg, webp };
// A codec of the RESULT image only (section 6.3.1), decoded to RGBA rather than decompressed.
constexpr bool is_image_codec(Compression c) noexcept { return c == Compression::jpeg || c == Compression::webp; }
std::string_view compression_name(Compression c) noexcept;  // "" for none

struct BufferDesc {  // bufdesc (section 6.3)
  std::string name;
  Format format = Format::rgba8;
  uint32_t width = 0;
  uint32_t height = 0;
  uint64_t stride = 0;
  Compression compression = Compression::none;
  // Section 6.3.2: the payload in independent chunks (lz4/zstd, when "chunked" was negotiated): each entry the
  // compressed length of one chunk, each chunk `chunk_bytes` raw bytes but the last. Empty: one frame (6.3).
  std::vector<uint64_t> chunks;
  uint64_t chunk_bytes = 0;
  // Section 6.3.3: `filter: "shuffle"` (lz4/zstd, when "shuffle" was negotiated): each compressed frame holds its
  // raw bytes split into byte planes of the format's pixel size. On encode(): written when set on an lz4/zstd
  // buffer; the payload must already be shuffled (compress(..., shuffle) does it).
  bool shuffle = false;
  // Sections 6.3.4 and 6.3.5: `streamed: true` (a RESULT output when "streamed_output" was negotiated, a FRAME
  // buffer when "streamed_frames" was): the chunks came ahead in PART messages and the message has no payload frame
  // for this buffer; `data`/`payload` stay null after decode() (the receiver puts the buffer together from the
  // PARTs). Written only when true, after `filter`.
  bool streamed = false;
  std::optional<bool> depth_reversed;
  std::optional<bool> depth_infinite;
  std::optional<ShmRef> shm;

  // Pixel bytes, exactly stride * height of them. After decode(): a view into the payload frame (raw), or into
  // `owned` (decompressed). Null for shm buffers (the bytes live in the pool, see `shm`).
  const uint8_t* data = nullptr;
  size_t size = 0;
  // The payload frame as it is on the wire (the compressed bytes when `compression` is set). After decode() this
  // views the input frame. For encode(): when `payload` is null and compression is none, `data/size` is sent.
  const uint8_t* payload = nullptr;
  size_t payload_size = 0;
  // Keeps decompressed pixels alive; shared so that BufferDesc stays copyable.
  std::shared_ptr<const uint8_t[]> owned;

  uint64_t byte_size() const noexcept { return stride * uint64_t(height); }
  // Carried in a payload frame of its own message: neither in shared memory nor streamed ahead (section 2).
  bool is_inline() const noexcept { return !shm.has_value() && !streamed; }
  // Convenience for senders: raw (uncompressed) pixels carried inline.
  void set_pixels(const void* p, size_t n) noexcept {
    data = static_cast<const uint8_t*>(p);
    size = n;
    payload = data;
    payload_size = n;
  }
};

// Camera tone_mapping (section 8): the curve that made hudless_color; wire names in tone_mapping_name().
enum class ToneMapping : uint8_t { none, clamp, reinhard, aces, agx, other };
inline constexpr size_t kToneMappingCount = 6;
std::string_view tone_mapping_name(ToneMapping t) noexcept;
std::optional<ToneMapping> tone_mapping_from_name(std::string_view name) noexcept;

struct Camera {  // section 8; every key optional. Wire names in comments where they differ.
  std::optional<Mat4> view_to_clip, clip_to_view, clip_to_prev_clip, prev_clip_to_clip, world_to_view;
  std::optional<Vec3> position, up, right, forward;
  std::optional<double> near_plane;  // "near"
  std::optional<double> far_plane;   // "far"
  std::optional<double> fov_y, aspect;
  std::optional<Vec2> jitter, mv_scale;
  std::optional<bool> depth_inverted, depth_infinite, mv_jittered, mv_3d, mv_dilated, camera_motion_included,
      orthographic, reset;
  std::optional<double> pre_exposure;  // > 0
  std::optional<ToneMapping> tone_mapping;
  std::optional<Size2> render_size, output_size;
};

enum class Scope : uint8_t { global, material, object };
std::string_view scope_name(Scope s) noexcept;

struct Target {
  Scope scope = Scope::global;
  std::vector<uint32_t> ids;
};

// Event params: the canonical msgpack encoding (section 3.1) of the params map, str keys -> value. Build it with
// ParamsWriter or take it from a decoded message; encode() copies these bytes verbatim into the header.
struct Event {
  std::string name;
  std::vector<uint8_t> params{0x80};  // empty map
  Target target;
};

// One entry of a stylecmd `params` map (section 5.3, styles defined at run time): a number, an RGB triple, or a
// str (the `lut` and `base` keys). The codec checks shapes only; names and ranges are the renderer's.
struct StyleParam {
  enum class Kind : uint8_t { number, rgb, text };
  std::string key;
  Kind kind = Kind::number;
  std::array<double, 3> value{};  // number: value[0]
  std::string text;
};
inline constexpr size_t kMaxStyleParams = 32;
// Keys whose value is a str; every other key takes a number or 3 numbers.
bool is_style_param_text_key(std::string_view key) noexcept;

struct StyleCommand {
  std::string style;
  double strength = 0.0;
  double over = 0.0;
  Target target;
  std::optional<std::vector<StyleParam>> params;  // present: define `style` from these first (keys in order)
};

// FRAME controls (section 5.3): per-session post controls.
enum class ControlKind : uint8_t { intensity, exclude };
std::string_view control_name(ControlKind k) noexcept;
struct Control {
  ControlKind control = ControlKind::intensity;
  double value = 1.0;  // intensity 0..1; exclude: 1 exclude, 0 include again
  double over = 0.0;   // intensity tween seconds; 0 for exclude
  Target target;       // intensity: global; exclude: material/object ids (global + 0: include every id)
};

struct Timing {
  double queue_ms = 0, decode_ms = 0, style_ms = 0, render_ms = 0, encode_ms = 0, total_ms = 0;
};

struct WelcomeOutput {  // WELCOME output: {name: "output", format, width, height}
  std::string name = "output";
  Format format = Format::rgba8;
  uint32_t width = 0;
  uint32_t height = 0;
};

// Common to every message: `nrb` (first key) and `must_understand` (optional, last key). decode() checks
// must_understand (section 10) and then drops it, as bridge/protocol.py does: the decoded message is what was
// understood, and re-encoding it gives the canonical header of the test vectors.
struct Common {
  uint64_t nrb = kProtocolVersion;
  std::optional<std::vector<std::string>> must_understand;
};

struct Hello : Common {
  uint64_t min_version = 1;
  std::string engine, engine_version, client;
  std::vector<std::string> capabilities;
  Size2 render_size, output_size;
  std::vector<BufferSpec> buffers;
  std::optional<ShmPool> shm;
  std::optional<DoorbellSpec> doorbell;
  // A placement ticket from an earlier WELCOME redirect (section 5.10): to the worker it names the placed session;
  // back at the front door after a failure, the session whose style state to restore.
  std::optional<std::string> ticket;
  // The renderer (and model) the engine wants (section 5.11): a WELCOME renderer label, whole or cut before its
  // first '/' or '@'. Absent: whatever the renderer is.
  std::optional<std::string> renderer;
  // The engine allows the RESULT image back lossily (section 6.3.1); absent: every image is exact.
  struct LossyOutput {
    std::string codec = "jpeg";  // the only codec of NRB/1
    uint64_t quality = 90;       // 1..100
  };
  std::optional<LossyOutput> lossy_output;
};
inline constexpr uint64_t kDefaultLossyQuality = 90;
// Whether a renderer announcing `label` in WELCOME is the one HELLO `renderer` asks for (section 5.11).
bool renderer_matches(std::string_view wanted, std::string_view label) noexcept;

// WELCOME redirect (section 5.10): a front door placed the session on a worker; the engine opens it at `endpoint`
// (tcp:// or ipc://) with the same HELLO plus `ticket`.
struct Redirect {
  std::string endpoint;
  std::string ticket;
};
inline constexpr size_t kMaxEndpointBytes = 256;
inline constexpr size_t kMaxTicketBytes = 64;

// WELCOME limits (section 11.1): the renderer's memory budgets (bytes = stride x height summed over buffers) and
// session caps, so the engine knows in advance what it would be refused.
struct WelcomeLimits {
  uint64_t frame_bytes = 1;        // one FRAME of this session, all its buffers together
  uint64_t session_bytes = 1;      // reserved for this session
  uint64_t message_bytes = 1;      // the renderer's per-message budget
  uint64_t total_bytes = 1;        // the renderer's budget over all sessions
  uint64_t max_pixels = 1;         // width x height cap of render_size and output_size
  uint64_t sessions = 1;           // sessions per renderer
  uint64_t sessions_per_peer = 1;  // sessions per engine connection (and per CurveZMQ key)
};

struct Welcome : Common {
  uint64_t session = 0;
  std::string renderer;
  std::vector<std::string> capabilities;
  std::vector<BufferSpec> required, optional;
  WelcomeOutput output;
  uint64_t max_in_flight = 1;
  std::vector<std::string> styles;
  std::optional<WelcomeLimits> limits;
  std::optional<Redirect> redirect;  // present: the session is not open here; open it at redirect->endpoint
};

struct Frame : Common {
  uint64_t session = 0;
  uint64_t frame = 0;
  uint64_t time_ns = 0;
  double dt = 0.0;
  double deadline_ms = 0.0;
  std::optional<Camera> camera;
  std::vector<BufferDesc> buffers;
  std::vector<Event> events;
  std::vector<StyleCommand> styles;
  std::vector<Control> controls;  // written only when non-empty
  std::optional<uint64_t> result_slot;
};

enum class ResultStatus : uint8_t { ok, skipped };

struct Result : Common {
  uint64_t session = 0;
  uint64_t frame = 0;
  ResultStatus status = ResultStatus::ok;
  std::optional<BufferDesc> output;
  Timing timing;
};

struct Error : Common {
  ErrorCode code = ErrorCode::INTERNAL;  // any uint on the wire: static_cast<ErrorCode>(v) holds every uint64
  std::string name;  // written verbatim; make_error() sets it to error_name(code)
  std::string message;
  std::optional<uint64_t> session;
  std::optional<uint64_t> frame;
};

struct Ping : Common {
  uint64_t nonce = 0;
  uint64_t time_ns = 0;
};
struct Pong : Common {
  uint64_t nonce = 0;
  uint64_t time_ns = 0;
};

struct Bye : Common {
  std::optional<uint64_t> session;
  std::optional<std::string> reason;
};

// PART (section 5.12): one chunk of a streamed buffer, sent ahead of its message: a RESULT image's (R->E, `buffer`
// "output", section 6.3.4) or a FRAME buffer's (E->R, any other buffer name, section 6.3.5). Its one
// payload frame is the chunk's compressed bytes as they are: after decode() `payload` views the input frame (never
// decompressed by decode(); see inflate_chunk()). For encode(): the bytes to send.
inline constexpr uint64_t kMaxPartIndex = 255;  // an index of a chunk table (kMaxChunks entries)
struct Part : Common {
  uint64_t session = 0;
  uint64_t frame = 0;
  std::string buffer = "output";  // "output" (a RESULT's image) or the name of the FRAME buffer it belongs to
  uint64_t index = 0;
  const uint8_t* payload = nullptr;
  size_t payload_size = 0;
};

// New types are appended: the variant index is the MessageType, and existing values stay.
using Message = std::variant<Hello, Welcome, Frame, Result, Error, Ping, Pong, Bye, Part>;

// Same order as the Message variant. Lower case: ERROR is a macro in <windows.h>.
enum class MessageType : uint8_t { hello, welcome, frame, result, error, ping, pong, bye, part };
std::string_view type_name(MessageType t) noexcept;
std::optional<MessageType> type_from_name(std::string_view name) noexcept;
inline MessageType message_type(const Message& m) noexcept { return static_cast<MessageType>(m.index()); }

// Convenience: an ERROR message with the code's name filled in.
Error make_error(ErrorCode code, std::string message);

// ---------------------------------------------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------------------------------------------
struct Bytes {  // a non-owning view of one ZeroMQ frame
  const uint8_t* data = nullptr;
  size_t size = 0;
  Bytes() = default;
  Bytes(const void* d, size_t n) noexcept : data(static_cast<const uint8_t*>(d)), size(n) {}
  std::string_view view() const noexcept { return {reinterpret_cast<const char*>(data), size}; }
};

// ---------------------------------------------------------------------------------------------------------------
// Encoding.
// ---------------------------------------------------------------------------------------------------------------
// The result of encode(): frame 0 is `header`, frames 1..N are `payloads` (views of the caller's bytes: the
// message's buffers must stay alive until the frames are sent).
struct Encoded {
  std::vector<uint8_t> header;
  std::vector<Bytes> payloads;
  size_t frame_count() const noexcept { return 1 + payloads.size(); }
  Bytes frame(size_t i) const noexcept { return i == 0 ? Bytes(header.data(), header.size()) : payloads[i - 1]; }
};

// Writes the canonical header of `m` into out.header (cleared first) and lists the inline payload views in
// descriptor order. encode() does not validate the message: a sender that wants that runs decode() on the result.
// Throws std::bad_alloc only.
void encode(const Message& m, Encoded& out);
Encoded encode(const Message& m);
// Copying convenience (tests, Python glue): header then payload frames.
std::vector<std::string> encode_frames(const Message& m);

// Compresses `size` bytes into one LZ4 or Zstandard frame that announces its content size (section 6.3).
// Throws std::runtime_error on a compressor failure.
// `shuffle_texel` > 1: the bytes are split into that many byte planes first (section 6.3.3).
std::vector<uint8_t> compress(Compression c, const void* data, size_t size, int level = 0,
                              unsigned shuffle_texel = 0);

// Section 6.3.3, the byte shuffle of one compressed frame's raw bytes, `len` of them, texel size `t` (the format's
// bytes per pixel): with n = len / t whole texels, byte j of texel i goes to j x n + i; the len mod t bytes after
// the last whole texel stay where they are. unshuffle_bytes is its inverse. `in` and `out` must not overlap.
void shuffle_bytes(const uint8_t* in, uint8_t* out, size_t len, unsigned t) noexcept;
void unshuffle_bytes(const uint8_t* in, uint8_t* out, size_t len, unsigned t) noexcept;

// Section 6.3.2. Limits of a chunk table.
inline constexpr size_t kMaxChunks = 256;
inline constexpr uint64_t kMaxChunkBytes = uint64_t(1) << 30;
inline constexpr uint64_t kMaxChunkWireBytes = uint64_t(1) << 31;
// The split section 6.3.2 step 5 asks of libnrb and nrb serve: `size` over `workers` chunks, each rounded up to
// 64 KiB; 0 (one frame) for a buffer under 512 KiB or fewer than 2 workers.
uint64_t chunk_bytes_for(uint64_t size, unsigned workers) noexcept;
// One chunk of a chunked payload (section 6.3.2 step 4): `in[0, n)` must be exactly one frame of `c` (lz4 or zstd)
// that announces and holds `raw_len` bytes; they go to `out` (raw_len bytes), put back together from their byte
// planes first when `shuffle_texel` > 1 (section 6.3.3). Returns "" or why the chunk is PAYLOAD_MISMATCH, in the
// words inflate() uses after "chunks[i]: " ("the lz4 frame announces 10 bytes, the chunk holds 12"). Never throws
// ("out of memory" then).
std::string inflate_chunk(Compression c, const uint8_t* in, size_t n, uint8_t* out, uint64_t raw_len,
                          unsigned shuffle_texel = 0) noexcept;
// What the frame header at `in[0, n)` says before any descriptor does (section 6.3.4 step 6, a PART's chunk): its
// codec, told by the frame's magic number (lz4 0x184D2204, zstd 0xFD2FB528), and the raw size it announces.
// Nullopt when it is neither, or announces no size: the descriptor's checks (inflate_chunk) then say why.
struct FramePeek {
  Compression codec = Compression::none;
  uint64_t content_size = 0;
};
std::optional<FramePeek> peek_frame(const uint8_t* in, size_t n) noexcept;
// The chunk size of a streamed buffer (sections 6.3.4 step 7 and 6.3.5 step 6, bridge.protocol's
// stream_chunk_bytes_for): 1 MiB of raw bytes, more where `size` would need more than 256 chunks, rounded up to
// 64 KiB; a buffer of 1 MiB or less is one chunk (a table of one entry).
uint64_t stream_chunk_bytes_for(uint64_t size) noexcept;
// Runs every job, possibly in parallel, and returns when all are done (a thread pool's run_all); jobs never throw.
using ParallelRunner = std::function<void(std::vector<std::function<void()>>&)>;
// One baseline JPEG (4:4:4) of `width` x `height` 8-bit RGBA pixels (alpha dropped) at `quality` 1..100
// (section 6.3.1). Throws std::runtime_error on an encoder failure.
std::vector<uint8_t> encode_jpeg(const uint8_t* rgba, uint32_t width, uint32_t height, uint64_t stride, int quality);
// One WebP of the same pixels (section 6.3.1): lossy at `quality` 1..99, lossless (VP8L) at 100.
std::vector<uint8_t> encode_webp(const uint8_t* rgba, uint32_t width, uint32_t height, uint64_t stride, int quality);

// Builds a canonical params map (section 3.1) incrementally, e.g.
//   ParamsWriter w; w.map(2); w.str("power"); w.f64(2.5); w.str("tag"); w.str("x"); ev.params = w.take();
class ParamsWriter {
 public:
  ParamsWriter& nil();
  ParamsWriter& boolean(bool v);
  ParamsWriter& u64(uint64_t v);
  ParamsWriter& i64(int64_t v);  // non-negative values use the uint forms, as section 3.1 requires
  ParamsWriter& f64(double v);
  ParamsWriter& str(std::string_view v);
  ParamsWriter& bin(const void* p, size_t n);
  ParamsWriter& array(uint32_t n);
  ParamsWriter& map(uint32_t n);
  // Appends bytes another ParamsWriter wrote (a nested container's contents), verbatim.
  ParamsWriter& raw(const std::vector<uint8_t>& encoded);
  const std::vector<uint8_t>& bytes() const noexcept { return out_; }
  size_t size() const noexcept { return out_.size(); }
  void clear() noexcept { out_.clear(); }
  std::vector<uint8_t> take() noexcept { return std::move(out_); }

 private:
  std::vector<uint8_t> out_;
};

// ---------------------------------------------------------------------------------------------------------------
// Decoding.
// ---------------------------------------------------------------------------------------------------------------
struct DecodeOptions {
  // Negotiated compression (both sides listed it in capabilities). A compressed buffer whose algorithm was not
  // negotiated is BAD_VALUE.
  bool allow_lz4 = false;
  bool allow_zstd = false;
  // The renderer accepted HELLO lossy_output (WELCOME capabilities lists "jpeg"): a RESULT image may be JPEG.
  bool allow_jpeg = false;
  bool allow_webp = false;  // likewise, "webp"
  // The session's shared-memory pool. Without one, any shm ref (and FRAME result_slot) is BAD_VALUE.
  const ShmPool* shm_pool = nullptr;
  // A stricter, receiver-chosen limit on stride * height (section 11 allows it); LIMIT_EXCEEDED beyond it.
  uint64_t max_buffer_bytes = kMaxBufferBytes;
  // Both sides listed "chunked" (section 6.3.2): a compressed payload may come in chunks.
  bool allow_chunked = false;
  // Both sides listed "shuffle" (section 6.3.3): an lz4/zstd payload may carry `filter: "shuffle"`.
  bool allow_shuffle = false;
  // Both sides listed "streamed_output" (section 6.3.4): a RESULT output may be `streamed`, and PARTs of "output"
  // come.
  bool allow_streamed_output = false;
  // Both sides listed "streamed_frames" (section 6.3.5): a FRAME buffer may be `streamed`, and PARTs of the other
  // buffer names come.
  bool allow_streamed_frames = false;
  // Leave compressed payloads (every codec) compressed: `payload`/`payload_size` view them, `data` stays null
  // until inflate() runs, on another thread (section 6.3 lets a receiver decompress later). Lengths that need no
  // decompression (a chunk table's sum) are still checked here.
  bool defer_decompression = false;

  static DecodeOptions permissive(const ShmPool* pool = nullptr) {
    DecodeOptions o;
    o.allow_lz4 = o.allow_zstd = o.allow_jpeg = o.allow_webp = o.allow_chunked = o.allow_shuffle = true;
    o.allow_streamed_output = o.allow_streamed_frames = true;
    o.shm_pool = pool;
    return o;
  }
};

struct DecodeError {
  ErrorCode code = ErrorCode::INTERNAL;
  std::string message;  // human-readable, names the offending key path
};

struct DecodeResult {
  std::optional<Message> message;
  DecodeError error;  // meaningful when !ok()
  bool ok() const noexcept { return message.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
};

// Decodes one NRB multipart message (frame 0 = header). Never throws; frames must outlive the result.
DecodeResult decode(const Bytes* frames, size_t n, const DecodeOptions& opts = {}) noexcept;
inline DecodeResult decode(const std::vector<Bytes>& frames, const DecodeOptions& opts = {}) noexcept {
  return decode(frames.data(), frames.size(), opts);
}

// Decompresses (or decodes, for an image codec) a buffer that decode() left compressed with
// `defer_decompression`; sets its `data`/`size`/`owned`. A chunked payload's chunks go to `run` all at once (section
// 6.3.2), or one after another without it. The error is PAYLOAD_MISMATCH naming the buffer (and the chunk), as
// decode() would have reported it. Never throws (out of memory is INTERNAL).
std::optional<DecodeError> inflate(BufferDesc& b, const ParallelRunner* run = nullptr) noexcept;

// Whether `s` is strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), as msgpack str needs.
bool is_valid_utf8(std::string_view s) noexcept;

// Checks a params blob (as in Event::params): a msgpack map with str keys and section 3.2 values, depth <= 8,
// <= 4096 bytes. On success `canonical` receives its canonical re-encoding. Never throws.
std::optional<DecodeError> canonicalize_params(const uint8_t* data, size_t size,
                                               std::vector<uint8_t>* canonical) noexcept;

// Checks a stylecmd `params` blob (section 5.3: a map of <= 32 entries, str keys of 1..64 bytes, each value a
// number, 3 numbers, or for lut/base a str of 1..64 bytes) and returns it as StyleParams, keys in order. The error's
// message names the key. Never throws.
std::optional<DecodeError> decode_style_params(const uint8_t* data, size_t size,
                                               std::vector<StyleParam>* params) noexcept;

}  // namespace nrb::wire
