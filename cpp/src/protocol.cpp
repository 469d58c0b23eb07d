// NRB/1 wire codec: see protocol.hpp and docs/protocol.md.
#include "protocol.hpp"

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include <lz4frame.h>
#include <zstd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE
#include <jpeglib.h>
#include <webp/decode.h>
#include <webp/encode.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace nrb::wire {

// =================================================================================================================
// Tables.
// =================================================================================================================
namespace {

constexpr std::array<std::string_view, 16> kErrorNames = {
    "",          "MALFORMED",      "VERSION_UNSUPPORTED", "UNKNOWN_TYPE", "MISSING_FIELD",
    "WRONG_TYPE", "BAD_VALUE",     "LIMIT_EXCEEDED",      "PAYLOAD_MISMATCH", "NO_SESSION",
    "UNKNOWN_REQUIRED", "RENDER_FAILED", "OVERLOADED",   "UNAUTHORIZED", "INTERNAL",
    "UNSUPPORTED",
};

constexpr std::array<FormatInfo, 12> kFormats = {{
    {Format::rgba8, "rgba8", 4, 4},
    {Format::rgba8_srgb, "rgba8_srgb", 4, 4},
    {Format::rgba16f, "rgba16f", 8, 4},
    {Format::rgba32f, "rgba32f", 16, 4},
    {Format::rg8, "rg8", 2, 2},
    {Format::rg16f, "rg16f", 4, 2},
    {Format::rg32f, "rg32f", 8, 2},
    {Format::r8, "r8", 1, 1},
    {Format::r16f, "r16f", 2, 1},
    {Format::r32f, "r32f", 4, 1},
    {Format::r16u, "r16u", 2, 1},
    {Format::r32u, "r32u", 4, 1},
}};

constexpr std::array<std::string_view, 26> kBufferNames = {
    // Streamline resource tags
    "depth", "linear_depth", "motion_vectors", "hudless_color", "scaling_input_color", "normals", "roughness",
    "normal_roughness", "albedo", "specular_albedo", "emissive", "exposure", "position", "alpha", "opaque_color",
    "ui_color_and_alpha", "reactive_mask", "transparency_and_composition_mask", "disocclusion_mask",
    // NRB additions
    "metallic", "roughness_metallic", "normals_oct", "material_id", "object_id", "output", "neural_mask",
};

constexpr std::array<std::string_view, 6> kToneMappings = {"none", "clamp", "reinhard", "aces", "agx", "other"};
constexpr std::array<std::string_view, 2> kControls = {"intensity", "exclude"};

constexpr std::array<std::string_view, 9> kTypeNames = {"HELLO", "WELCOME", "FRAME", "RESULT", "ERROR",
                                                        "PING",  "PONG",    "BYE",   "PART"};

// Top-level keys of each message type (section 5), canonical order; what `must_understand` may name.
const std::vector<std::string_view>& known_keys(MessageType t) {
  static const std::array<std::vector<std::string_view>, 9> keys = {{
      {"nrb", "type", "min_version", "engine", "engine_version", "client", "capabilities", "render_size",
       "output_size", "buffers", "shm", "doorbell", "ticket", "renderer", "lossy_output", "must_understand"},
      {"nrb", "type", "session", "renderer", "capabilities", "required", "optional", "output", "max_in_flight",
       "styles", "limits", "redirect", "must_understand"},
      {"nrb", "type", "session", "frame", "time_ns", "dt", "deadline_ms", "camera", "buffers", "events", "styles",
       "controls", "result_slot", "must_understand"},
      {"nrb", "type", "session", "frame", "status", "output", "timing", "must_understand"},
      {"nrb", "type", "code", "name", "message", "session", "frame", "must_understand"},
      {"nrb", "type", "nonce", "time_ns", "must_understand"},
      {"nrb", "type", "nonce", "time_ns", "must_understand"},
      {"nrb", "type", "session", "reason", "must_understand"},
      {"nrb", "type", "session", "frame", "buffer", "index", "must_understand"},
  }};
  return keys[static_cast<size_t>(t)];
}

}  // namespace

std::string_view error_name(ErrorCode code) noexcept {
  const auto i = static_cast<uint64_t>(code);
  return i < kErrorNames.size() ? kErrorNames[i] : std::string_view();
}

std::optional<ErrorCode> error_code_from_name(std::string_view name) noexcept {
  for (size_t i = 1; i < kErrorNames.size(); ++i)
    if (kErrorNames[i] == name) return static_cast<ErrorCode>(i);
  return std::nullopt;
}

std::optional<ErrorCode> error_code_from_int(uint64_t code) noexcept {
  if (code >= 1 && code < kErrorNames.size()) return static_cast<ErrorCode>(code);
  return std::nullopt;
}

const std::array<FormatInfo, 12>& format_table() noexcept { return kFormats; }
const FormatInfo& format_info(Format f) noexcept { return kFormats[static_cast<size_t>(f) % kFormats.size()]; }
std::string_view format_name(Format f) noexcept { return format_info(f).name; }
uint32_t bytes_per_pixel(Format f) noexcept { return format_info(f).bytes_per_pixel; }
std::optional<Format> format_from_name(std::string_view name) noexcept {
  for (const auto& f : kFormats)
    if (f.name == name) return f.format;
  return std::nullopt;
}

const std::array<std::string_view, 26>& buffer_names() noexcept { return kBufferNames; }
bool is_standard_buffer_name(std::string_view name) noexcept {
  return std::find(kBufferNames.begin(), kBufferNames.end(), name) != kBufferNames.end();
}
bool is_vendor_buffer_name(std::string_view name) noexcept {
  if (name.size() < 3 || name.size() > 63 || name[0] != 'x' || name[1] != '_') return false;
  for (size_t i = 2; i < name.size(); ++i) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}
bool is_valid_buffer_name(std::string_view name) noexcept {
  return is_standard_buffer_name(name) || is_vendor_buffer_name(name);
}

std::string_view compression_name(Compression c) noexcept {
  switch (c) {
    case Compression::lz4: return "lz4";
    case Compression::zstd: return "zstd";
    case Compression::jpeg: return "jpeg";
    case Compression::webp: return "webp";
    default: return "";
  }
}

bool renderer_matches(std::string_view wanted, std::string_view label) noexcept {
  if (wanted == label) return true;
  return label.size() > wanted.size() && label.substr(0, wanted.size()) == wanted &&
         (label[wanted.size()] == '/' || label[wanted.size()] == '@');
}

std::string_view tone_mapping_name(ToneMapping t) noexcept {
  const auto i = static_cast<size_t>(t);
  return i < kToneMappings.size() ? kToneMappings[i] : std::string_view();
}
std::optional<ToneMapping> tone_mapping_from_name(std::string_view name) noexcept {
  for (size_t i = 0; i < kToneMappings.size(); ++i)
    if (kToneMappings[i] == name) return static_cast<ToneMapping>(i);
  return std::nullopt;
}
std::string_view control_name(ControlKind k) noexcept { return kControls[static_cast<size_t>(k) % kControls.size()]; }
bool is_style_param_text_key(std::string_view key) noexcept { return key == "lut" || key == "base"; }

std::string_view scope_name(Scope s) noexcept {
  switch (s) {
    case Scope::material: return "material";
    case Scope::object: return "object";
    default: return "global";
  }
}

std::string_view type_name(MessageType t) noexcept {
  auto i = static_cast<size_t>(t);
  return i < kTypeNames.size() ? kTypeNames[i] : std::string_view();
}
std::optional<MessageType> type_from_name(std::string_view name) noexcept {
  for (size_t i = 0; i < kTypeNames.size(); ++i)
    if (kTypeNames[i] == name) return static_cast<MessageType>(i);
  return std::nullopt;
}

Error make_error(ErrorCode code, std::string message) {
  Error e;
  e.code = code;
  e.name = std::string(error_name(code));
  e.message = std::move(message);
  return e;
}

// =================================================================================================================
// Canonical msgpack writer (section 3.1). msgpack-cxx's packer is not used for floats: its pack_double writes
// integral doubles as integers (and -0.0 as 0), which section 3.1 rule 3 forbids.
// =================================================================================================================
namespace {

class W {
 public:
  explicit W(std::vector<uint8_t>& out) : o_(out) {}

  void u8(uint8_t b) { o_.push_back(b); }
  void be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) o_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void nil() { u8(0xc0); }
  void boolean(bool v) { u8(v ? 0xc3 : 0xc2); }
  void uint(uint64_t v) {
    if (v < 0x80) {
      u8(static_cast<uint8_t>(v));
    } else if (v <= 0xff) {
      u8(0xcc), be(v, 1);
    } else if (v <= 0xffff) {
      u8(0xcd), be(v, 2);
    } else if (v <= 0xffffffffull) {
      u8(0xce), be(v, 4);
    } else {
      u8(0xcf), be(v, 8);
    }
  }
  void sint(int64_t v) {
    if (v >= 0) return uint(static_cast<uint64_t>(v));
    auto u = static_cast<uint64_t>(v);
    if (v >= -32) {
      u8(static_cast<uint8_t>(u));
    } else if (v >= -128) {
      u8(0xd0), be(u, 1);
    } else if (v >= -32768) {
      u8(0xd1), be(u, 2);
    } else if (v >= -2147483648ll) {
      u8(0xd2), be(u, 4);
    } else {
      u8(0xd3), be(u, 8);
    }
  }
  void f64(double d) {
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    u8(0xcb), be(bits, 8);
  }
  void str(std::string_view s) {
    size_t n = s.size();
    if (n < 32) {
      u8(static_cast<uint8_t>(0xa0 | n));
    } else if (n <= 0xff) {
      u8(0xd9), be(n, 1);
    } else if (n <= 0xffff) {
      u8(0xda), be(n, 2);
    } else {
      u8(0xdb), be(n, 4);
    }
    o_.insert(o_.end(), s.begin(), s.end());
  }
  void bin(const uint8_t* p, size_t n) {
    if (n <= 0xff) {
      u8(0xc4), be(n, 1);
    } else if (n <= 0xffff) {
      u8(0xc5), be(n, 2);
    } else {
      u8(0xc6), be(n, 4);
    }
    if (n) o_.insert(o_.end(), p, p + n);
  }
  void array(size_t n) {
    if (n < 16) {
      u8(static_cast<uint8_t>(0x90 | n));
    } else if (n <= 0xffff) {
      u8(0xdc), be(n, 2);
    } else {
      u8(0xdd), be(n, 4);
    }
  }
  void map(size_t n) {
    if (n < 16) {
      u8(static_cast<uint8_t>(0x80 | n));
    } else if (n <= 0xffff) {
      u8(0xde), be(n, 2);
    } else {
      u8(0xdf), be(n, 4);
    }
  }
  void raw(const std::vector<uint8_t>& b) { o_.insert(o_.end(), b.begin(), b.end()); }

  // key/value helpers
  void k(std::string_view key) { str(key); }
  template <size_t N>
  void floats(const std::array<double, N>& a) {
    array(N);
    for (double d : a) f64(d);
  }
  void size2(const Size2& s) {
    array(2);
    uint(s.width);
    uint(s.height);
  }

 private:
  std::vector<uint8_t>& o_;
};

size_t count(bool present) { return present ? 1 : 0; }

void write_strings(W& w, const std::vector<std::string>& v) {
  w.array(v.size());
  for (const auto& s : v) w.str(s);
}

void write_bufspec(W& w, const BufferSpec& b) {
  w.map(2);
  w.k("name"), w.str(b.name);
  w.k("format"), w.str(format_name(b.format));
}

void write_bufspecs(W& w, const std::vector<BufferSpec>& v) {
  w.array(v.size());
  for (const auto& b : v) write_bufspec(w, b);
}

void write_bufdesc(W& w, const BufferDesc& b) {
  // section 6.3.2: a chunk table only on an lz4/zstd payload (a copy made raw drops it)
  const bool chunked =
      !b.chunks.empty() && (b.compression == Compression::lz4 || b.compression == Compression::zstd);
  const bool shuffled = b.shuffle && (b.compression == Compression::lz4 || b.compression == Compression::zstd);
  w.map(5 + count(b.compression != Compression::none) + 2 * count(chunked) + count(shuffled) + count(b.streamed) +
        count(b.depth_reversed.has_value()) +
        count(b.depth_infinite.has_value()) + count(b.shm.has_value()));
  w.k("name"), w.str(b.name);
  w.k("format"), w.str(format_name(b.format));
  w.k("width"), w.uint(b.width);
  w.k("height"), w.uint(b.height);
  w.k("stride"), w.uint(b.stride);
  if (b.compression != Compression::none) w.k("compression"), w.str(compression_name(b.compression));
  if (chunked) {
    w.k("chunks");
    w.array(b.chunks.size());
    for (uint64_t c : b.chunks) w.uint(c);
    w.k("chunk_bytes"), w.uint(b.chunk_bytes);
  }
  if (shuffled) w.k("filter"), w.str("shuffle");  // section 6.3.3
  if (b.streamed) w.k("streamed"), w.boolean(true);  // section 6.3.4: written only when true
  if (b.depth_reversed) w.k("depth_reversed"), w.boolean(*b.depth_reversed);
  if (b.depth_infinite) w.k("depth_infinite"), w.boolean(*b.depth_infinite);
  if (b.shm) {
    w.k("shm");
    w.map(2);
    w.k("slot"), w.uint(b.shm->slot);
    w.k("offset"), w.uint(b.shm->offset);
  }
}

void write_target(W& w, const Target& t) {
  w.map(2);
  w.k("scope"), w.str(scope_name(t.scope));
  w.k("ids");
  w.array(t.ids.size());
  for (uint32_t id : t.ids) w.uint(id);
}

void write_camera(W& w, const Camera& c) {
  size_t n = count(c.view_to_clip.has_value()) + count(c.clip_to_view.has_value()) +
             count(c.clip_to_prev_clip.has_value()) + count(c.prev_clip_to_clip.has_value()) +
             count(c.world_to_view.has_value()) + count(c.position.has_value()) + count(c.up.has_value()) +
             count(c.right.has_value()) + count(c.forward.has_value()) + count(c.near_plane.has_value()) +
             count(c.far_plane.has_value()) + count(c.fov_y.has_value()) + count(c.aspect.has_value()) +
             count(c.jitter.has_value()) + count(c.mv_scale.has_value()) + count(c.depth_inverted.has_value()) +
             count(c.depth_infinite.has_value()) + count(c.mv_jittered.has_value()) +
             count(c.mv_3d.has_value()) + count(c.mv_dilated.has_value()) +
             count(c.camera_motion_included.has_value()) + count(c.orthographic.has_value()) +
             count(c.reset.has_value()) + count(c.pre_exposure.has_value()) + count(c.tone_mapping.has_value()) +
             count(c.render_size.has_value()) + count(c.output_size.has_value());
  w.map(n);
  if (c.view_to_clip) w.k("view_to_clip"), w.floats(*c.view_to_clip);
  if (c.clip_to_view) w.k("clip_to_view"), w.floats(*c.clip_to_view);
  if (c.clip_to_prev_clip) w.k("clip_to_prev_clip"), w.floats(*c.clip_to_prev_clip);
  if (c.prev_clip_to_clip) w.k("prev_clip_to_clip"), w.floats(*c.prev_clip_to_clip);
  if (c.world_to_view) w.k("world_to_view"), w.floats(*c.world_to_view);
  if (c.position) w.k("position"), w.floats(*c.position);
  if (c.up) w.k("up"), w.floats(*c.up);
  if (c.right) w.k("right"), w.floats(*c.right);
  if (c.forward) w.k("forward"), w.floats(*c.forward);
  if (c.near_plane) w.k("near"), w.f64(*c.near_plane);
  if (c.far_plane) w.k("far"), w.f64(*c.far_plane);
  if (c.fov_y) w.k("fov_y"), w.f64(*c.fov_y);
  if (c.aspect) w.k("aspect"), w.f64(*c.aspect);
  if (c.jitter) w.k("jitter"), w.floats(*c.jitter);
  if (c.mv_scale) w.k("mv_scale"), w.floats(*c.mv_scale);
  if (c.depth_inverted) w.k("depth_inverted"), w.boolean(*c.depth_inverted);
  if (c.depth_infinite) w.k("depth_infinite"), w.boolean(*c.depth_infinite);
  if (c.mv_jittered) w.k("mv_jittered"), w.boolean(*c.mv_jittered);
  if (c.mv_3d) w.k("mv_3d"), w.boolean(*c.mv_3d);
  if (c.mv_dilated) w.k("mv_dilated"), w.boolean(*c.mv_dilated);
  if (c.camera_motion_included) w.k("camera_motion_included"), w.boolean(*c.camera_motion_included);
  if (c.orthographic) w.k("orthographic"), w.boolean(*c.orthographic);
  if (c.reset) w.k("reset"), w.boolean(*c.reset);
  if (c.pre_exposure) w.k("pre_exposure"), w.f64(*c.pre_exposure);
  if (c.tone_mapping) w.k("tone_mapping"), w.str(tone_mapping_name(*c.tone_mapping));
  if (c.render_size) w.k("render_size"), w.size2(*c.render_size);
  if (c.output_size) w.k("output_size"), w.size2(*c.output_size);
}

void add_payload(Encoded& out, const BufferDesc& b) {
  if (!b.is_inline()) return;
  if (b.payload)
    out.payloads.emplace_back(b.payload, b.payload_size);
  else
    out.payloads.emplace_back(b.data, b.size);
}

// Writes the common head; `extra` = number of message-specific keys.
void head(W& w, const Common& c, MessageType t, size_t extra) {
  w.map(2 + extra + count(c.must_understand.has_value()));
  w.k("nrb"), w.uint(c.nrb);
  w.k("type"), w.str(type_name(t));
}
void tail(W& w, const Common& c) {
  if (c.must_understand) w.k("must_understand"), write_strings(w, *c.must_understand);
}

struct EncodeVisitor {
  W& w;
  Encoded& out;

  void operator()(const Hello& m) {
    head(w, m, MessageType::hello,
         8 + count(m.shm.has_value()) + count(m.doorbell.has_value()) + count(m.ticket.has_value()) +
             count(m.renderer.has_value()) + count(m.lossy_output.has_value()));
    w.k("min_version"), w.uint(m.min_version);
    w.k("engine"), w.str(m.engine);
    w.k("engine_version"), w.str(m.engine_version);
    w.k("client"), w.str(m.client);
    w.k("capabilities"), write_strings(w, m.capabilities);
    w.k("render_size"), w.size2(m.render_size);
    w.k("output_size"), w.size2(m.output_size);
    w.k("buffers"), write_bufspecs(w, m.buffers);
    if (m.shm) {
      w.k("shm");
      w.map(3);
      w.k("name"), w.str(m.shm->name);
      w.k("slots"), w.uint(m.shm->slots);
      w.k("slot_size"), w.uint(m.shm->slot_size);
    }
    if (m.doorbell) {
      w.k("doorbell");
      w.map(2);
      w.k("to_renderer"), w.str(m.doorbell->to_renderer);
      w.k("to_engine"), w.str(m.doorbell->to_engine);
    }
    if (m.ticket) w.k("ticket"), w.str(*m.ticket);
    if (m.renderer) w.k("renderer"), w.str(*m.renderer);
    if (m.lossy_output) {
      w.k("lossy_output");
      w.map(2);
      w.k("codec"), w.str(m.lossy_output->codec);
      w.k("quality"), w.uint(m.lossy_output->quality);
    }
    tail(w, m);
  }
  void operator()(const Welcome& m) {
    head(w, m, MessageType::welcome, 8 + count(m.limits.has_value()) + count(m.redirect.has_value()));
    w.k("session"), w.uint(m.session);
    w.k("renderer"), w.str(m.renderer);
    w.k("capabilities"), write_strings(w, m.capabilities);
    w.k("required"), write_bufspecs(w, m.required);
    w.k("optional"), write_bufspecs(w, m.optional);
    w.k("output");
    w.map(4);
    w.k("name"), w.str(m.output.name);
    w.k("format"), w.str(format_name(m.output.format));
    w.k("width"), w.uint(m.output.width);
    w.k("height"), w.uint(m.output.height);
    w.k("max_in_flight"), w.uint(m.max_in_flight);
    w.k("styles"), write_strings(w, m.styles);
    if (m.limits) {
      const WelcomeLimits& l = *m.limits;
      w.k("limits");
      w.map(7);
      w.k("frame_bytes"), w.uint(l.frame_bytes);
      w.k("session_bytes"), w.uint(l.session_bytes);
      w.k("message_bytes"), w.uint(l.message_bytes);
      w.k("total_bytes"), w.uint(l.total_bytes);
      w.k("max_pixels"), w.uint(l.max_pixels);
      w.k("sessions"), w.uint(l.sessions);
      w.k("sessions_per_peer"), w.uint(l.sessions_per_peer);
    }
    if (m.redirect) {
      w.k("redirect");
      w.map(2);
      w.k("endpoint"), w.str(m.redirect->endpoint);
      w.k("ticket"), w.str(m.redirect->ticket);
    }
    tail(w, m);
  }
  void operator()(const Frame& m) {
    head(w, m, MessageType::frame,
         8 + count(m.camera.has_value()) + count(!m.controls.empty()) + count(m.result_slot.has_value()));
    w.k("session"), w.uint(m.session);
    w.k("frame"), w.uint(m.frame);
    w.k("time_ns"), w.uint(m.time_ns);
    w.k("dt"), w.f64(m.dt);
    w.k("deadline_ms"), w.f64(m.deadline_ms);
    if (m.camera) w.k("camera"), write_camera(w, *m.camera);
    w.k("buffers");
    w.array(m.buffers.size());
    for (const auto& b : m.buffers) write_bufdesc(w, b);
    w.k("events");
    w.array(m.events.size());
    for (const auto& e : m.events) {
      w.map(3);
      w.k("name"), w.str(e.name);
      w.k("params");
      if (e.params.empty())
        w.map(0);
      else
        w.raw(e.params);
      w.k("target"), write_target(w, e.target);
    }
    w.k("styles");
    w.array(m.styles.size());
    for (const auto& s : m.styles) {
      w.map(4 + count(s.params.has_value()));
      w.k("style"), w.str(s.style);
      w.k("strength"), w.f64(s.strength);
      w.k("over"), w.f64(s.over);
      w.k("target"), write_target(w, s.target);
      if (s.params) {
        w.k("params");
        w.map(s.params->size());
        for (const auto& p : *s.params) {
          w.k(p.key);
          if (p.kind == StyleParam::Kind::text)
            w.str(p.text);
          else if (p.kind == StyleParam::Kind::rgb)
            w.floats(p.value);
          else
            w.f64(p.value[0]);
        }
      }
    }
    if (!m.controls.empty()) {
      w.k("controls");
      w.array(m.controls.size());
      for (const auto& c : m.controls) {
        w.map(4);
        w.k("control"), w.str(control_name(c.control));
        w.k("value"), w.f64(c.value);
        w.k("over"), w.f64(c.over);
        w.k("target"), write_target(w, c.target);
      }
    }
    if (m.result_slot) w.k("result_slot"), w.uint(*m.result_slot);
    tail(w, m);
    for (const auto& b : m.buffers) add_payload(out, b);
  }
  void operator()(const Result& m) {
    head(w, m, MessageType::result, 4 + count(m.output.has_value()));
    w.k("session"), w.uint(m.session);
    w.k("frame"), w.uint(m.frame);
    w.k("status"), w.str(m.status == ResultStatus::ok ? "ok" : "skipped");
    if (m.output) w.k("output"), write_bufdesc(w, *m.output);
    w.k("timing");
    w.map(6);
    w.k("queue_ms"), w.f64(m.timing.queue_ms);
    w.k("decode_ms"), w.f64(m.timing.decode_ms);
    w.k("style_ms"), w.f64(m.timing.style_ms);
    w.k("render_ms"), w.f64(m.timing.render_ms);
    w.k("encode_ms"), w.f64(m.timing.encode_ms);
    w.k("total_ms"), w.f64(m.timing.total_ms);
    tail(w, m);
    if (m.output) add_payload(out, *m.output);
  }
  void operator()(const Error& m) {
    head(w, m, MessageType::error, 3 + count(m.session.has_value()) + count(m.frame.has_value()));
    w.k("code"), w.uint(static_cast<uint64_t>(m.code));
    w.k("name"), w.str(m.name);
    w.k("message"), w.str(m.message);
    if (m.session) w.k("session"), w.uint(*m.session);
    if (m.frame) w.k("frame"), w.uint(*m.frame);
    tail(w, m);
  }
  void operator()(const Ping& m) {
    head(w, m, MessageType::ping, 2);
    w.k("nonce"), w.uint(m.nonce);
    w.k("time_ns"), w.uint(m.time_ns);
    tail(w, m);
  }
  void operator()(const Pong& m) {
    head(w, m, MessageType::pong, 2);
    w.k("nonce"), w.uint(m.nonce);
    w.k("time_ns"), w.uint(m.time_ns);
    tail(w, m);
  }
  void operator()(const Bye& m) {
    head(w, m, MessageType::bye, count(m.session.has_value()) + count(m.reason.has_value()));
    if (m.session) w.k("session"), w.uint(*m.session);
    if (m.reason) w.k("reason"), w.str(*m.reason);
    tail(w, m);
  }
  void operator()(const Part& m) {  // section 5.12: the header, then the chunk as its one payload frame
    head(w, m, MessageType::part, 4);
    w.k("session"), w.uint(m.session);
    w.k("frame"), w.uint(m.frame);
    w.k("buffer"), w.str(m.buffer);
    w.k("index"), w.uint(m.index);
    tail(w, m);
    out.payloads.emplace_back(m.payload, m.payload_size);
  }
};

}  // namespace

void encode(const Message& m, Encoded& out) {
  out.header.clear();
  out.payloads.clear();
  out.header.reserve(256);
  W w(out.header);
  std::visit(EncodeVisitor{w, out}, m);
}

Encoded encode(const Message& m) {
  Encoded e;
  encode(m, e);
  return e;
}

std::vector<std::string> encode_frames(const Message& m) {
  Encoded e = encode(m);
  std::vector<std::string> frames;
  frames.reserve(e.frame_count());
  for (size_t i = 0; i < e.frame_count(); ++i) {
    Bytes b = e.frame(i);
    frames.emplace_back(reinterpret_cast<const char*>(b.data), b.size);
  }
  return frames;
}

// ParamsWriter ----------------------------------------------------------------------------------------------------
ParamsWriter& ParamsWriter::nil() { return W(out_).nil(), *this; }
ParamsWriter& ParamsWriter::boolean(bool v) { return W(out_).boolean(v), *this; }
ParamsWriter& ParamsWriter::u64(uint64_t v) { return W(out_).uint(v), *this; }
ParamsWriter& ParamsWriter::i64(int64_t v) { return W(out_).sint(v), *this; }
ParamsWriter& ParamsWriter::f64(double v) { return W(out_).f64(v), *this; }
ParamsWriter& ParamsWriter::str(std::string_view v) { return W(out_).str(v), *this; }
ParamsWriter& ParamsWriter::bin(const void* p, size_t n) {
  return W(out_).bin(static_cast<const uint8_t*>(p), n), *this;
}
ParamsWriter& ParamsWriter::array(uint32_t n) { return W(out_).array(n), *this; }
ParamsWriter& ParamsWriter::map(uint32_t n) { return W(out_).map(n), *this; }
ParamsWriter& ParamsWriter::raw(const std::vector<uint8_t>& encoded) {
  out_.insert(out_.end(), encoded.begin(), encoded.end());
  return *this;
}

// Compression -----------------------------------------------------------------------------------------------------
namespace {
// Section 6.3.3 for the common texel sizes (2, 4 and 8 bytes: every format but rgba32f), 16 texels a step with SSE2
// (the scalar loops' strided bytes do not vectorize: 0.6-1.3 ms per 2 MB against 0.1-0.7 here; for 8 MB of 8-byte
// texels 3-12 ms against 0.7-0.9). Each returns how many of the n whole texels it did, a multiple of 16; the scalar
// loops do the rest.
#if defined(__SSE2__)
inline __m128i sse_load(const uint8_t* p) noexcept { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline void sse_store(uint8_t* p, __m128i v) noexcept { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }
#endif

#if defined(__SSE2__)
// 16 4-byte words (x[0..3]) -> byte j of each, 16 bytes, at out + (first + j) * n, for j = 0..3.
inline void planes_of_words(const __m128i x[4], uint8_t* out, size_t n, unsigned first) noexcept {
  const __m128i low = _mm_set1_epi32(0xFF);
  for (int j = 0; j < 4; ++j) {
    __m128i y[4];
    for (int k = 0; k < 4; ++k) y[k] = _mm_and_si128(_mm_srli_epi32(x[k], 8 * j), low);
    sse_store(out + (first + j) * n, _mm_packus_epi16(_mm_packs_epi32(y[0], y[1]), _mm_packs_epi32(y[2], y[3])));
  }
}

// The inverse: 16 bytes from each of the planes first..first + 3 (at in + (first + j) * n) -> 16 4-byte words.
inline void words_of_planes(const uint8_t* in, size_t n, unsigned first, __m128i w[4]) noexcept {
  const __m128i p0 = sse_load(in + first * n), p1 = sse_load(in + (first + 1) * n);
  const __m128i p2 = sse_load(in + (first + 2) * n), p3 = sse_load(in + (first + 3) * n);
  const __m128i a_lo = _mm_unpacklo_epi8(p0, p1), a_hi = _mm_unpackhi_epi8(p0, p1);
  const __m128i b_lo = _mm_unpacklo_epi8(p2, p3), b_hi = _mm_unpackhi_epi8(p2, p3);
  w[0] = _mm_unpacklo_epi16(a_lo, b_lo);
  w[1] = _mm_unpackhi_epi16(a_lo, b_lo);
  w[2] = _mm_unpacklo_epi16(a_hi, b_hi);
  w[3] = _mm_unpackhi_epi16(a_hi, b_hi);
}
#endif

size_t shuffle_sse2(const uint8_t* in, uint8_t* out, size_t n, unsigned t) noexcept {
#if defined(__SSE2__)
  const size_t m = n / 16 * 16;
  if (t == 2) {
    const __m128i low = _mm_set1_epi16(0x00FF);
    for (size_t i = 0; i < m; i += 16) {
      const __m128i a = sse_load(in + 2 * i), b = sse_load(in + 2 * i + 16);
      sse_store(out + i, _mm_packus_epi16(_mm_and_si128(a, low), _mm_and_si128(b, low)));
      sse_store(out + n + i, _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)));
    }
    return m;
  }
  if (t == 4) {
    for (size_t i = 0; i < m; i += 16) {
      const __m128i x[4] = {sse_load(in + 4 * i), sse_load(in + 4 * i + 16), sse_load(in + 4 * i + 32), sse_load(in + 4 * i + 48)};
      planes_of_words(x, out + i, n, 0);
    }
    return m;
  }
  if (t == 8) {  // each texel as its low and its high 4 bytes: the 4-byte planes of each half
    for (size_t i = 0; i < m; i += 16) {
      __m128i lo[4], hi[4];
      for (int k = 0; k < 4; ++k) {
        // two vectors = 4 texels; words (lo, hi, lo, hi) each -> (lo, lo, hi, hi)
        const __m128i a = _mm_shuffle_epi32(sse_load(in + 8 * i + 32 * k), _MM_SHUFFLE(3, 1, 2, 0));
        const __m128i b = _mm_shuffle_epi32(sse_load(in + 8 * i + 32 * k + 16), _MM_SHUFFLE(3, 1, 2, 0));
        lo[k] = _mm_unpacklo_epi64(a, b);
        hi[k] = _mm_unpackhi_epi64(a, b);
      }
      planes_of_words(lo, out + i, n, 0);
      planes_of_words(hi, out + i, n, 4);
    }
    return m;
  }
#endif
  (void)in, (void)out, (void)n, (void)t;
  return 0;
}

size_t unshuffle_sse2(const uint8_t* in, uint8_t* out, size_t n, unsigned t) noexcept {
#if defined(__SSE2__)
  const size_t m = n / 16 * 16;
  if (t == 2) {
    for (size_t i = 0; i < m; i += 16) {
      const __m128i a = sse_load(in + i), b = sse_load(in + n + i);
      sse_store(out + 2 * i, _mm_unpacklo_epi8(a, b));
      sse_store(out + 2 * i + 16, _mm_unpackhi_epi8(a, b));
    }
    return m;
  }
  if (t == 4) {
    for (size_t i = 0; i < m; i += 16) {
      __m128i w[4];
      words_of_planes(in + i, n, 0, w);
      for (int k = 0; k < 4; ++k) sse_store(out + 4 * i + 16 * k, w[k]);
    }
    return m;
  }
  if (t == 8) {  // the low and the high 4 bytes of 16 texels from their planes, then interleaved
    for (size_t i = 0; i < m; i += 16) {
      __m128i lo[4], hi[4];
      words_of_planes(in + i, n, 0, lo);
      words_of_planes(in + i, n, 4, hi);
      for (int k = 0; k < 4; ++k) {
        sse_store(out + 8 * i + 32 * k, _mm_unpacklo_epi32(lo[k], hi[k]));
        sse_store(out + 8 * i + 32 * k + 16, _mm_unpackhi_epi32(lo[k], hi[k]));
      }
    }
    return m;
  }
#endif
  (void)in, (void)out, (void)n, (void)t;
  return 0;
}
}  // namespace

void shuffle_bytes(const uint8_t* in, uint8_t* out, size_t len, unsigned t) noexcept {
  const size_t n = t > 1 ? len / t : 0;
  const size_t done = shuffle_sse2(in, out, n, t);
  for (unsigned j = 0; j < t && n > 0; ++j) {
    uint8_t* plane = out + j * n;
    const uint8_t* src = in + j;
    for (size_t i = done; i < n; ++i) plane[i] = src[i * t];
  }
  if (len > n * t) std::memcpy(out + n * t, in + n * t, len - n * t);  // the tail (never null: len > 0)
}

void unshuffle_bytes(const uint8_t* in, uint8_t* out, size_t len, unsigned t) noexcept {
  const size_t n = t > 1 ? len / t : 0;
  const size_t done = unshuffle_sse2(in, out, n, t);
  for (unsigned j = 0; j < t && n > 0; ++j) {
    const uint8_t* plane = in + j * n;
    uint8_t* dst = out + j;
    for (size_t i = done; i < n; ++i) dst[i * t] = plane[i];
  }
  if (len > n * t) std::memcpy(out + n * t, in + n * t, len - n * t);  // the tail (never null: len > 0)
}

std::vector<uint8_t> compress(Compression c, const void* data, size_t size, int level, unsigned shuffle_texel) {
  std::vector<uint8_t> planes;
  if (shuffle_texel > 1 && (c == Compression::lz4 || c == Compression::zstd)) {  // section 6.3.3
    planes.resize(size);
    shuffle_bytes(static_cast<const uint8_t*>(data), planes.data(), size, shuffle_texel);
    data = planes.data();
  }
  std::vector<uint8_t> out;
  if (c == Compression::zstd) {
    out.resize(ZSTD_compressBound(size));
    size_t r = ZSTD_compress(out.data(), out.size(), data, size, level == 0 ? ZSTD_CLEVEL_DEFAULT : level);
    if (ZSTD_isError(r)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(r));
    out.resize(r);
  } else if (c == Compression::lz4) {
    LZ4F_preferences_t prefs;
    std::memset(&prefs, 0, sizeof prefs);
    prefs.frameInfo.contentSize = size;  // section 6.3: the sender MUST announce the decompressed size
    prefs.compressionLevel = level;
    out.resize(LZ4F_compressFrameBound(size, &prefs));
    size_t r = LZ4F_compressFrame(out.data(), out.size(), data, size, &prefs);
    if (LZ4F_isError(r)) throw std::runtime_error(std::string("lz4: ") + LZ4F_getErrorName(r));
    out.resize(r);
  } else {
    const auto* p = static_cast<const uint8_t*>(data);
    out.assign(p, p + size);
  }
  return out;
}

// JPEG (section 6.3.1) ------------------------------------------------------------------------------------------
// libjpeg reports errors through a longjmp; these two functions keep only trivially destructible objects between
// setjmp and the library calls, so the jump skips no destructor.
namespace {
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};
void jpeg_error_exit(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegError*>(c->err);
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}
// Corrupt data is a warning to libjpeg (it fills the rest with grey); to NRB/1 it is PAYLOAD_MISMATCH.
void jpeg_emit_message(j_common_ptr c, int level) {
  if (level < 0) jpeg_error_exit(c);
}
}  // namespace

std::vector<uint8_t> encode_jpeg(const uint8_t* rgba, uint32_t width, uint32_t height, uint64_t stride, int quality) {
  jpeg_compress_struct c;
  JpegError err;
  c.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  unsigned char* mem = nullptr;
  unsigned long mem_size = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&c);
    std::free(mem);
    throw std::runtime_error(std::string("jpeg: ") + err.message);
  }
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &mem, &mem_size);
  c.image_width = width;
  c.image_height = height;
  c.input_components = 4;
  c.in_color_space = JCS_EXT_RGBA;
  jpeg_set_defaults(&c);  // YCbCr
  for (int i = 0; i < c.num_components; ++i) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;  // 4:4:4, as nrb serve
  jpeg_set_quality(&c, std::clamp(quality, 1, 100), TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(rgba + uint64_t(c.next_scanline) * stride);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> out(mem, mem + mem_size);
  std::free(mem);
  return out;
}

std::vector<uint8_t> encode_webp(const uint8_t* rgba, uint32_t width, uint32_t height, uint64_t stride, int quality) {
  // WebPEncodeRGB wants RGB rows: drop alpha first (the image is small next to the encoder's own work)
  std::vector<uint8_t> rgb(uint64_t(width) * height * 3);
  for (uint32_t y = 0; y < height; ++y)
    for (uint32_t x = 0; x < width; ++x)
      std::memcpy(&rgb[(uint64_t(y) * width + x) * 3], rgba + y * stride + uint64_t(x) * 4, 3);
  uint8_t* out = nullptr;
  const int w = static_cast<int>(width), h = static_cast<int>(height);
  const size_t n = quality >= 100 ? WebPEncodeLosslessRGB(rgb.data(), w, h, w * 3, &out)  // 100: lossless (VP8L)
                                  : WebPEncodeRGB(rgb.data(), w, h, w * 3, static_cast<float>(std::max(quality, 1)), &out);
  if (n == 0 || out == nullptr) throw std::runtime_error("webp: the encoder failed");
  std::vector<uint8_t> v(out, out + n);
  WebPFree(out);
  return v;
}

namespace {
// Decodes one JPEG of exactly width x height into `out` (width * height * 4 bytes, RGBA, alpha 255). Returns ""
// on success, else why not. With `out` null it only checks the frame header (size, components, precision), so the
// caller allocates the image only for a JPEG that has the descriptor's size.
std::string decode_jpeg_rgba(const uint8_t* data, size_t n, uint32_t width, uint32_t height, uint8_t* out) {
  jpeg_decompress_struct d;
  JpegError err;
  d.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_emit_message;
  char why[JMSG_LENGTH_MAX + 64] = {0};
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&d);
    return std::string("cannot decode the JPEG: ") + err.message;
  }
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, data, static_cast<unsigned long>(n));
  jpeg_read_header(&d, TRUE);
  if (d.image_width != width || d.image_height != height) {
    std::snprintf(why, sizeof why, "the JPEG is %ux%u, the descriptor says %ux%u", unsigned(d.image_width),
                  unsigned(d.image_height), unsigned(width), unsigned(height));
  } else if (d.num_components != 1 && d.num_components != 3) {
    std::snprintf(why, sizeof why, "a JPEG of %d components (1 or 3 only)", d.num_components);
  } else if (d.data_precision != 8) {
    std::snprintf(why, sizeof why, "a %d-bit JPEG (8 only)", d.data_precision);
  }
  if (why[0] != 0 || out == nullptr) {
    jpeg_destroy_decompress(&d);
    return why;
  }
  d.out_color_space = JCS_EXT_RGBA;  // libjpeg-turbo: greyscale and YCbCr both come out as RGBA, alpha 255
  jpeg_start_decompress(&d);
  while (d.output_scanline < d.output_height) {
    JSAMPROW row = out + uint64_t(d.output_scanline) * width * 4;
    jpeg_read_scanlines(&d, &row, 1);
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  return "";
}
}  // namespace

// =================================================================================================================
// Decoding: docs/protocol.md section 9.1, step by step. Each check mirrors bridge/protocol.py's _Reader so that both
// codecs report the same first failure for the same bytes.
// =================================================================================================================
namespace {

using Obj = msgpack::object;
using T = msgpack::type::object_type;
constexpr double kPi = 3.14159265358979323846;
constexpr double kInf = HUGE_VAL;

// ----- Step 2: structural pre-scan ------------------------------------------------------------------------------
// Walks the header bytes once, without allocating, before msgpack-cxx builds any object. It rejects (MALFORMED):
// truncated data, a declared length larger than the bytes that remain (so no declared size can make msgpack-cxx
// allocate more than O(header size)), the reserved byte 0xc1, any ext, a map key that is not a str, invalid UTF-8
// in a str, more than 16 nested containers, and trailing bytes.

bool valid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      uint8_t cc = s[i + k];
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // overlong forms, surrogates and code points past U+10FFFF are invalid (as for Python's strict decoder)
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

// Returns nullptr when the bytes are exactly one acceptable msgpack value, else why not.
const char* prescan(const uint8_t* p, size_t n) {
  struct Level {
    uint64_t remaining;  // values still to read at this level (2 per map entry)
    bool is_map;
  };
  Level stack[kMaxNesting + 1];
  size_t sp = 0;
  stack[0] = {1, false};  // the root: one value
  size_t pos = 0;
  auto need = [&](uint64_t k) { return k <= n - pos; };
  auto rd = [&](int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | p[pos++];
    return v;
  };
  for (;;) {
    while (sp > 0 && stack[sp].remaining == 0) --sp;
    if (stack[sp].remaining == 0) break;  // sp == 0: the root value is complete
    const bool is_key = stack[sp].is_map && (stack[sp].remaining % 2 == 0);
    --stack[sp].remaining;
    if (!need(1)) return "truncated msgpack";
    const uint8_t b = p[pos++];
    uint64_t skip = 0;        // bytes of payload that follow
    int64_t container = -1;   // element count of an array / entry count of a map
    bool is_map = false;
    bool is_str = false;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      // positive fixint, negative fixint, nil, false, true
    } else if (b <= 0x8f) {
      container = b & 0x0f, is_map = true;
    } else if (b <= 0x9f) {
      container = b & 0x0f;
    } else if (b <= 0xbf) {
      skip = b & 0x1f, is_str = true;
    } else {
      switch (b) {
        case 0xc4: case 0xc5: case 0xc6: {  // bin 8/16/32
          const int lb = b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4;
          if (!need(lb)) return "truncated msgpack";
          skip = rd(lb);
          break;
        }
        case 0xca: skip = 4; break;
        case 0xcb: skip = 8; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xd9: case 0xda: case 0xdb: {  // str 8/16/32
          const int lb = b == 0xd9 ? 1 : b == 0xda ? 2 : 4;
          if (!need(lb)) return "truncated msgpack";
          skip = rd(lb), is_str = true;
          break;
        }
        case 0xdc: case 0xdd: {
          const int lb = b == 0xdc ? 2 : 4;
          if (!need(lb)) return "truncated msgpack";
          container = static_cast<int64_t>(rd(lb));
          break;
        }
        case 0xde: case 0xdf: {
          const int lb = b == 0xde ? 2 : 4;
          if (!need(lb)) return "truncated msgpack";
          container = static_cast<int64_t>(rd(lb)), is_map = true;
          break;
        }
        case 0xc1:
          return "reserved msgpack byte 0xc1";
        default:  // 0xc7..0xc9 ext 8/16/32, 0xd4..0xd8 fixext
          return "ext types are not allowed";
      }
    }
    if (is_key && !is_str) return "a map key is not a str";
    if (container >= 0) {
      const uint64_t items = static_cast<uint64_t>(container) * (is_map ? 2 : 1);
      if (!need(items)) return "truncated msgpack (a declared length exceeds the data)";
      if (sp + 1 > kMaxNesting) return "msgpack nesting deeper than 16";
      stack[++sp] = {items, is_map};
      continue;
    }
    if (!need(skip)) return "truncated msgpack";
    if (is_str && !valid_utf8(p + pos, skip)) return "a str is not valid UTF-8";
    pos += skip;
  }
  if (pos != n) return "trailing bytes after the header";
  return nullptr;
}

bool reference_all(msgpack::type::object_type, std::size_t, void*) { return true; }

// Parses prescanned bytes; every str/bin references `p` (no copies).
msgpack::object_handle unpack_checked(const uint8_t* p, size_t n, size_t& off) {
  const auto limit = msgpack::unpack_limit(n, n, n, n, n, kMaxNesting);
  return msgpack::unpack(reinterpret_cast<const char*>(p), n, off, reference_all, nullptr, limit);
}

// ----- Steps 3-8: field checks -------------------------------------------------------------------------------------

std::string_view sv(const Obj& o) { return {o.via.str.ptr, o.via.str.size}; }

const char* kind_name(const Obj& o) {
  switch (o.type) {
    case T::NIL: return "nil";
    case T::BOOLEAN: return "a boolean";
    case T::POSITIVE_INTEGER: return "an unsigned integer";
    case T::NEGATIVE_INTEGER: return "a negative integer";
    case T::FLOAT32: case T::FLOAT64: return "a float";
    case T::STR: return "a str";
    case T::BIN: return "bin";
    case T::ARRAY: return "an array";
    case T::MAP: return "a map";
    case T::EXT: return "ext";
  }
  return "?";
}

std::string num(double d) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

std::string clip(std::string_view v) {
  return v.size() > 64 ? std::string(v.substr(0, 64)) + "..." : std::string(v);
}

// Thrown inside the decoder on the first failed check; caught at decode()'s boundary, never escapes it.
struct Reject {
  ErrorCode code;
  std::string message;
};

// ----- payload decompression (section 6.3, 6.3.1, 6.3.2): "" or why the payload is PAYLOAD_MISMATCH -----------
// One lz4 or zstd frame `in[0, n)` that must announce and hold exactly `size` raw bytes, into `out`. `holds` says
// what `size` is in a message ("stride x height = ", "the chunk holds ").
std::string unframe(Compression c, const uint8_t* in, size_t n, uint8_t* out, uint64_t size, const char* holds) {
  if (c == Compression::zstd) {
    const unsigned long long announced = ZSTD_getFrameContentSize(in, n);
    if (announced == ZSTD_CONTENTSIZE_ERROR) return "not a zstd frame";
    if (announced == ZSTD_CONTENTSIZE_UNKNOWN) return "the zstd frame does not announce its content size";
    if (announced != size)
      return "the zstd frame announces " + std::to_string(announced) + " bytes, " + holds + std::to_string(size);
    const size_t frame_size = ZSTD_findFrameCompressedSize(in, n);
    if (ZSTD_isError(frame_size) || frame_size != n) return "the payload is not exactly one zstd frame";
    std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    if (!ctx) throw std::bad_alloc();
    const size_t r = ZSTD_decompressDCtx(ctx.get(), out, size, in, n);
    if (ZSTD_isError(r)) return std::string("zstd: ") + ZSTD_getErrorName(r);
    if (r != size) return "decompressed to " + std::to_string(r) + " bytes";
    return {};
  }
  LZ4F_dctx* raw = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&raw, LZ4F_VERSION))) throw std::bad_alloc();
  std::unique_ptr<LZ4F_dctx, LZ4F_errorCode_t (*)(LZ4F_dctx*)> ctx(raw, LZ4F_freeDecompressionContext);
  LZ4F_frameInfo_t info;
  std::memset(&info, 0, sizeof info);
  size_t consumed = n;
  size_t r = LZ4F_getFrameInfo(ctx.get(), &info, in, &consumed);
  if (LZ4F_isError(r)) return std::string("not an lz4 frame: ") + LZ4F_getErrorName(r);
  if (info.contentSize == 0) return "the lz4 frame does not announce its content size";
  if (info.contentSize != size)
    return "the lz4 frame announces " + std::to_string(info.contentSize) + " bytes, " + holds + std::to_string(size);
  size_t in_pos = consumed, out_pos = 0;
  LZ4F_decompressOptions_t dopt;
  std::memset(&dopt, 0, sizeof dopt);
  for (;;) {
    size_t in_len = n - in_pos, out_len = size - out_pos;
    r = LZ4F_decompress(ctx.get(), out + out_pos, &out_len, in + in_pos, &in_len, &dopt);
    if (LZ4F_isError(r)) return std::string("lz4: ") + LZ4F_getErrorName(r);
    in_pos += in_len;
    out_pos += out_len;
    if (r == 0) break;  // frame complete
    if (in_len == 0 && out_len == 0)  // no progress: input exhausted, or output full with data pending
      return in_pos == n ? "the lz4 frame is truncated" : std::string("the lz4 frame decompresses past ") + holds +
                                                              std::to_string(size);
  }
  if (in_pos != n) return "the payload is not exactly one lz4 frame";
  if (out_pos != size) return "decompressed to " + std::to_string(out_pos) + " bytes";
  return {};
}

// One chunk of a chunked payload (section 6.3.2), `raw_len` raw bytes into `out`, from its byte planes when
// `texel` > 1 (section 6.3.3: each chunk is shuffled on its own). Throws std::bad_alloc only.
std::string unframe_chunk(Compression c, const uint8_t* in, size_t n, uint8_t* out, uint64_t raw_len,
                          unsigned texel) {
  if (texel <= 1) return unframe(c, in, n, out, raw_len, "the chunk holds ");
  std::unique_ptr<uint8_t[]> planes(new uint8_t[raw_len]);  // bounded: the caller checked raw_len
  std::string why = unframe(c, in, n, planes.get(), raw_len, "the chunk holds ");
  if (why.empty()) unshuffle_bytes(planes.get(), out, raw_len, texel);
  return why;
}

std::string unwebp(const uint8_t* in, size_t n, const BufferDesc& b, std::shared_ptr<uint8_t[]>& out) {
  // The bitstream's header first (VP8 or VP8L: the canvas size), before allocating the image.
  WebPBitstreamFeatures info;
  if (n == 0 || WebPGetFeatures(in, n, &info) != VP8_STATUS_OK) return "not a WebP image";
  if (info.has_animation) return "an animated WebP (one still image only)";
  if (uint32_t(info.width) != b.width || uint32_t(info.height) != b.height)
    return "the WebP is " + std::to_string(info.width) + "x" + std::to_string(info.height) +
           ", the descriptor says " + std::to_string(b.width) + "x" + std::to_string(b.height);
  const uint64_t size = b.byte_size();
  out.reset(new uint8_t[size]);
  if (!WebPDecodeRGBAInto(in, n, out.get(), size, static_cast<int>(b.width) * 4)) return "cannot decode the WebP";
  if (info.has_alpha)  // alpha is 255 whatever the image carried (section 6.3.1)
    for (uint64_t i = 3; i < size; i += 4) out[i] = 255;
  return {};
}

// Fills b.data/size/owned from b.payload (already checked: a chunk table adds up to it).
std::string inflate_payload(BufferDesc& b, const ParallelRunner* run) {
  const uint64_t size = b.byte_size();
  const uint8_t* in = b.payload;
  const size_t n = b.payload_size;
  std::shared_ptr<uint8_t[]> out;
  std::string why;
  if (b.compression == Compression::webp) {
    why = unwebp(in, n, b, out);
  } else if (b.compression == Compression::jpeg) {
    // The frame header first: a payload of a few bytes must not make us allocate a 1 GiB image it cannot fill.
    why = decode_jpeg_rgba(in, n, b.width, b.height, nullptr);
    if (why.empty()) {
      out.reset(new uint8_t[size]);  // bounded by stride x height, checked against the limits (stride == width * 4)
      why = decode_jpeg_rgba(in, n, b.width, b.height, out.get());
    }
  } else if (b.chunks.empty()) {
    // Allocation bounded by stride x height, already checked against the limits.
    out.reset(new uint8_t[size]);
    if (b.shuffle) {  // section 6.3.3: decompress the byte planes, then put the texels back together
      std::unique_ptr<uint8_t[]> planes(new uint8_t[size]);
      why = unframe(b.compression, in, n, planes.get(), size, "stride x height = ");
      if (why.empty()) unshuffle_bytes(planes.get(), out.get(), size, bytes_per_pixel(b.format));
    } else {
      why = unframe(b.compression, in, n, out.get(), size, "stride x height = ");
    }
  } else {
    out.reset(new uint8_t[size]);
    const size_t k = b.chunks.size();
    std::vector<std::string> errors(k);
    std::vector<std::function<void()>> jobs;
    jobs.reserve(k);
    uint64_t at = 0;
    for (size_t i = 0; i < k; ++i) {
      const uint64_t raw_at = i * b.chunk_bytes;
      const uint64_t raw_len = std::min(b.chunk_bytes, size - raw_at);
      jobs.emplace_back([&, i, at, raw_at, raw_len] {
        try {
          errors[i] = unframe_chunk(b.compression, in + at, b.chunks[i], out.get() + raw_at, raw_len,
                                    b.shuffle ? bytes_per_pixel(b.format) : 0);
        } catch (const std::bad_alloc&) {
          errors[i] = "out of memory";
        }
        if (!errors[i].empty()) errors[i] = "chunks[" + std::to_string(i) + "]: " + errors[i];
      });
      at += b.chunks[i];
    }
    if (run && k > 1)
      (*run)(jobs);
    else
      for (auto& j : jobs) j();
    for (const std::string& e : errors)
      if (!e.empty()) {
        why = e;
        break;
      }
  }
  if (!why.empty()) return why;
  b.data = out.get();
  b.size = size;
  b.owned = std::move(out);
  return {};
}

class Decoder {
 public:
  explicit Decoder(const DecodeOptions& o) : opts_(o) {}

  // ----- path bookkeeping (for error messages) --------------------------------------------------------------
  struct At {
    Decoder& d;
    size_t len;
    At(Decoder& dec, std::string_view key) : d(dec), len(dec.path_.size()) {
      if (!d.path_.empty()) d.path_ += '.';
      d.path_.append(key.data(), key.size());
    }
    At(Decoder& dec, size_t index) : d(dec), len(dec.path_.size()) {
      d.path_ += '[';
      d.path_ += std::to_string(index);
      d.path_ += ']';
    }
    ~At() { d.path_.resize(len); }
    At(const At&) = delete;
    At& operator=(const At&) = delete;
  };

  [[noreturn]] void fail(ErrorCode c, const std::string& msg) {
    throw Reject{c, path_.empty() ? msg : path_ + ": " + msg};
  }

  // ----- value checks (section 9.1 table) -------------------------------------------------------------------

  // The value of `key` (the last one, should the key repeat, as in a Python dict), or null when absent.
  static const Obj* find(const Obj& map, std::string_view key) {
    const Obj* found = nullptr;
    for (uint32_t i = 0; i < map.via.map.size; ++i) {
      const auto& kv = map.via.map.ptr[i];
      if (sv(kv.key) == key) found = &kv.val;  // the pre-scan admitted only str keys
    }
    return found;
  }
  // Required key: absent -> MISSING_FIELD.
  const Obj& field(const Obj& map, std::string_view key) {
    const Obj* o = find(map, key);
    if (!o) {
      At at(*this, key);
      fail(ErrorCode::MISSING_FIELD, "required key is absent");
    }
    return *o;
  }

  [[noreturn]] void wrong_type(const Obj& o, const char* want) {
    fail(ErrorCode::WRONG_TYPE, std::string("must be ") + want + ", not " + kind_name(o));
  }

  // uint: below lo -> BAD_VALUE; above hi -> LIMIT_EXCEEDED when `limit` (sizes, counts, dimensions), else
  // BAD_VALUE.
  uint64_t uint(const Obj& o, uint64_t lo = 0, uint64_t hi = UINT64_MAX, bool limit = false) {
    if (o.type != T::POSITIVE_INTEGER) wrong_type(o, "an unsigned integer");
    const uint64_t v = o.via.u64;
    if (v < lo) fail(ErrorCode::BAD_VALUE, std::to_string(v) + " is below " + std::to_string(lo));
    if (v > hi)
      fail(limit ? ErrorCode::LIMIT_EXCEEDED : ErrorCode::BAD_VALUE,
           std::to_string(v) + " is above " + std::to_string(hi));
    return v;
  }

  // float: an integer or a float; NaN/inf -> BAD_VALUE (+inf passes with allow_inf); outside [lo, hi] ->
  // BAD_VALUE, and lo itself too when lo_open.
  double flt(const Obj& o, double lo = -kInf, double hi = kInf, bool allow_inf = false, bool lo_open = false) {
    double v;
    switch (o.type) {
      case T::FLOAT32: case T::FLOAT64: v = o.via.f64; break;
      case T::POSITIVE_INTEGER: v = static_cast<double>(o.via.u64); break;
      case T::NEGATIVE_INTEGER: v = static_cast<double>(o.via.i64); break;
      default: wrong_type(o, "a number");
    }
    if (std::isnan(v) || (std::isinf(v) && !(allow_inf && v > 0))) fail(ErrorCode::BAD_VALUE, "must be finite");
    if (v < lo || v > hi || (lo_open && v <= lo))
      fail(ErrorCode::BAD_VALUE, num(v) + " is outside " + (lo_open ? "(" : "[") + num(lo) + ", " + num(hi) +
                                     (std::isinf(hi) ? ")" : "]"));  // the interval as it is: open where open
    return v;
  }

  bool boolean(const Obj& o) {
    if (o.type != T::BOOLEAN) wrong_type(o, "a boolean");
    return o.via.boolean;
  }

  // str: longer than max_len bytes -> LIMIT_EXCEEDED; empty when nonempty -> BAD_VALUE. Vocabulary checks
  // (BAD_VALUE) are the caller's, after this.
  std::string_view str(const Obj& o, size_t max_len = kMaxString, bool nonempty = false) {
    if (o.type != T::STR) wrong_type(o, "a str");
    const std::string_view v = sv(o);
    if (v.size() > max_len) fail(ErrorCode::LIMIT_EXCEEDED, "longer than " + std::to_string(max_len) + " bytes");
    if (nonempty && v.empty()) fail(ErrorCode::BAD_VALUE, "must not be empty");
    return v;
  }
  template <size_t N>
  size_t vocab(const Obj& o, const std::array<std::string_view, N>& words) {
    const std::string_view v = str(o);
    for (size_t i = 0; i < N; ++i)
      if (words[i] == v) return i;
    std::string list;
    for (auto w : words) list += (list.empty() ? "" : ", ") + std::string(w);
    fail(ErrorCode::BAD_VALUE, "\"" + clip(v) + "\" is not one of " + list);
  }

  // array with a length limit (LIMIT_EXCEEDED) / a fixed length (BAD_VALUE).
  const Obj* array(const Obj& o, size_t max_len, uint32_t& n) {
    if (o.type != T::ARRAY) wrong_type(o, "an array");
    n = o.via.array.size;
    if (n > max_len) fail(ErrorCode::LIMIT_EXCEEDED, "more than " + std::to_string(max_len) + " entries");
    return o.via.array.ptr;
  }
  const Obj* fixed_array(const Obj& o, uint32_t len) {
    if (o.type != T::ARRAY) wrong_type(o, "an array");
    if (o.via.array.size != len) fail(ErrorCode::BAD_VALUE, "must have " + std::to_string(len) + " entries");
    return o.via.array.ptr;
  }
  const Obj& map(const Obj& o) {
    if (o.type != T::MAP) wrong_type(o, "a map");
    return o;
  }

  // ----- composites --------------------------------------------------------------------------------------------
  std::vector<std::string> str_list(const Obj& o) {
    uint32_t n;
    const Obj* a = array(o, kMaxList, n);
    std::vector<std::string> out(n);
    for (uint32_t i = 0; i < n; ++i) {
      At at(*this, size_t(i));
      out[i].assign(str(a[i]));
    }
    return out;
  }

  uint32_t dimension(const Obj& o) { return static_cast<uint32_t>(uint(o, 1, kMaxDimension, true)); }

  Size2 size(const Obj& o) {
    const Obj* a = fixed_array(o, 2);
    Size2 s;
    {
      At at(*this, size_t(0));
      s.width = dimension(a[0]);
    }
    At at(*this, size_t(1));
    s.height = dimension(a[1]);
    return s;
  }

  template <size_t N>
  std::array<double, N> floats(const Obj& o) {
    const Obj* a = fixed_array(o, N);
    std::array<double, N> v{};
    for (size_t i = 0; i < N; ++i) {
      At at(*this, i);
      v[i] = flt(a[i]);
    }
    return v;
  }

  std::string buffer_name(const Obj& o) {
    const std::string_view v = str(o, kMaxNameBytes, true);
    if (!is_valid_buffer_name(v)) fail(ErrorCode::BAD_VALUE, "\"" + clip(v) + "\" is not a buffer name nor x_*");
    return std::string(v);
  }

  Format format(const Obj& o) {
    const std::string_view v = str(o);
    auto f = format_from_name(v);
    if (!f) fail(ErrorCode::BAD_VALUE, "\"" + clip(v) + "\" is not a format");
    return *f;
  }

  BufferSpec bufspec(const Obj& o) {
    const Obj& m = map(o);
    BufferSpec b;
    {
      At at(*this, "name");
      b.name = buffer_name(field(m, "name"));
    }
    At at(*this, "format");
    b.format = format(field(m, "format"));
    return b;
  }

  std::vector<BufferSpec> bufspecs(const Obj& o) {
    uint32_t n;
    const Obj* a = array(o, kMaxBuffers, n);
    std::vector<BufferSpec> out(n);
    for (uint32_t i = 0; i < n; ++i) {
      At at(*this, size_t(i));
      out[i] = bufspec(a[i]);
    }
    return out;
  }

  BufferDesc bufdesc(const Obj& o) {
    const Obj& m = map(o);
    BufferDesc b;
    {
      At at(*this, "name");
      b.name = buffer_name(field(m, "name"));
    }
    {
      At at(*this, "format");
      b.format = format(field(m, "format"));
    }
    {
      At at(*this, "width");
      b.width = dimension(field(m, "width"));
    }
    {
      At at(*this, "height");
      b.height = dimension(field(m, "height"));
    }
    {
      At at(*this, "stride");
      b.stride = uint(field(m, "stride"));
      const uint64_t min_stride = uint64_t(b.width) * bytes_per_pixel(b.format);
      if (b.stride < min_stride)
        fail(ErrorCode::BAD_VALUE, std::to_string(b.stride) + " is less than width x bytes/pixel = " +
                                       std::to_string(min_stride));
      if (b.stride > kMaxStride) fail(ErrorCode::LIMIT_EXCEEDED, std::to_string(b.stride) + " is above 2^31");
      if (b.byte_size() > kMaxBufferBytes)
        fail(ErrorCode::LIMIT_EXCEEDED, "stride x height = " + std::to_string(b.byte_size()) + " is over 1 GiB");
      if (b.byte_size() > opts_.max_buffer_bytes)
        fail(ErrorCode::LIMIT_EXCEEDED, "stride x height = " + std::to_string(b.byte_size()) +
                                            " is over this receiver's limit of " +
                                            std::to_string(opts_.max_buffer_bytes));
    }
    if (const Obj* c = find(m, "compression")) {
      At at(*this, "compression");
      static constexpr std::array<std::string_view, 4> kNames = {"lz4", "zstd", "jpeg", "webp"};
      static constexpr std::array<Compression, 4> kCodecs = {Compression::lz4, Compression::zstd, Compression::jpeg,
                                                             Compression::webp};
      b.compression = kCodecs[vocab(*c, kNames)];
      if (is_image_codec(b.compression)) {  // section 6.3.1: the RESULT image only, 8-bit RGBA, tight rows
        const std::string name(compression_name(b.compression));
        if (!image_) fail(ErrorCode::BAD_VALUE, name + " is for a RESULT output only");
        if ((b.format != Format::rgba8 && b.format != Format::rgba8_srgb) || b.stride != uint64_t(b.width) * 4)
          fail(ErrorCode::BAD_VALUE, name + " needs rgba8 or rgba8_srgb with stride = width x 4");
      }
      const bool allowed = b.compression == Compression::lz4    ? opts_.allow_lz4
                           : b.compression == Compression::zstd ? opts_.allow_zstd
                           : b.compression == Compression::jpeg ? opts_.allow_jpeg
                                                                : opts_.allow_webp;
      if (!allowed) fail(ErrorCode::BAD_VALUE, std::string(compression_name(b.compression)) + " was not negotiated");
    }
    chunk_table(m, b);
    if (const Obj* x = find(m, "filter")) {  // section 6.3.3
      At at(*this, "filter");
      static constexpr std::array<std::string_view, 1> kFilters = {"shuffle"};
      vocab(*x, kFilters);
      if (b.compression != Compression::lz4 && b.compression != Compression::zstd)
        fail(ErrorCode::BAD_VALUE, "only an lz4 or zstd payload is shuffled, not " +
                                       (b.compression == Compression::none ? std::string("a raw one")
                                                                           : std::string(compression_name(b.compression))));
      if (bytes_per_pixel(b.format) < 2)
        fail(ErrorCode::BAD_VALUE, "shuffle needs 2 or more bytes per pixel; " + std::string(format_name(b.format)) +
                                       " has 1");
      if (!opts_.allow_shuffle) fail(ErrorCode::BAD_VALUE, "shuffle was not negotiated");
      b.shuffle = true;
    }
    if (const Obj* x = find(m, "streamed")) {  // section 6.3.4 step 4, section 6.3.5
      At at(*this, "streamed");
      if (boolean(*x)) {
        if (b.chunks.empty()) fail(ErrorCode::BAD_VALUE, "a streamed buffer needs chunks");
        if (find(m, "shm")) fail(ErrorCode::BAD_VALUE, "a shared-memory buffer is not streamed");
        // the direction's own capability: a RESULT output's (6.3.4) or a FRAME buffer's (6.3.5)
        if (image_ && !opts_.allow_streamed_output) fail(ErrorCode::BAD_VALUE, "streamed_output was not negotiated");
        if (!image_ && !opts_.allow_streamed_frames)
          fail(ErrorCode::BAD_VALUE, "streamed_frames was not negotiated");
        b.streamed = true;
      }
    }
    if (const Obj* x = find(m, "depth_reversed")) {
      At at(*this, "depth_reversed");
      b.depth_reversed = boolean(*x);
    }
    if (const Obj* x = find(m, "depth_infinite")) {
      At at(*this, "depth_infinite");
      b.depth_infinite = boolean(*x);
    }
    if (const Obj* x = find(m, "shm")) {
      At at(*this, "shm");
      const Obj& sm = map(*x);
      ShmRef ref;
      {
        At at2(*this, "slot");
        ref.slot = uint(field(sm, "slot"));
      }
      {
        At at2(*this, "offset");
        ref.offset = uint(field(sm, "offset"));
      }
      const ShmPool* pool = opts_.shm_pool;
      if (!pool) fail(ErrorCode::BAD_VALUE, "no shared-memory pool was negotiated");
      if (ref.slot >= pool->slots)
        fail(ErrorCode::BAD_VALUE,
             "slot " + std::to_string(ref.slot) + " is outside the pool's " + std::to_string(pool->slots) + " slots");
      if (ref.offset % kShmAlign != 0)
        fail(ErrorCode::BAD_VALUE, "offset " + std::to_string(ref.offset) + " is not a multiple of 64");
      if (ref.offset > pool->slot_size || b.byte_size() > pool->slot_size - ref.offset)
        fail(ErrorCode::BAD_VALUE, "[offset, offset + size) overruns the slot");
      if (b.compression != Compression::none)
        fail(ErrorCode::BAD_VALUE, "shared-memory buffers cannot be compressed");
      b.shm = ref;
    }
    return b;
  }

  // Section 6.3.2 step 4: `chunks`, then `chunk_bytes`, in canonical order after `compression`.
  void chunk_table(const Obj& m, BufferDesc& b) {
    if (const Obj* c = find(m, "chunks")) {
      At at(*this, "chunks");
      uint32_t n;
      const Obj* a = array(*c, kMaxChunks, n);
      if (n == 0) fail(ErrorCode::BAD_VALUE, "no entries (one chunk at least)");
      b.chunks.resize(n);
      for (uint32_t i = 0; i < n; ++i) {
        At at2(*this, size_t(i));
        b.chunks[i] = uint(a[i], 1, kMaxChunkWireBytes, /*limit=*/true);
      }
      if (b.compression != Compression::lz4 && b.compression != Compression::zstd)
        fail(ErrorCode::BAD_VALUE, "only an lz4 or zstd payload comes in chunks, not " +
                                       (b.compression == Compression::none
                                            ? std::string("a raw one")
                                            : std::string(compression_name(b.compression))));
      if (!opts_.allow_chunked) fail(ErrorCode::BAD_VALUE, "chunked payloads were not negotiated");
    }
    const Obj* x = find(m, "chunk_bytes");
    At at(*this, "chunk_bytes");
    if (!x) {
      if (!b.chunks.empty()) fail(ErrorCode::MISSING_FIELD, "required with chunks");
      return;
    }
    if (b.chunks.empty()) fail(ErrorCode::BAD_VALUE, "chunk_bytes without chunks");
    b.chunk_bytes = uint(*x, 1, kMaxChunkBytes, /*limit=*/true);
    const uint64_t want = (b.byte_size() + b.chunk_bytes - 1) / b.chunk_bytes;
    if (b.chunks.size() != want)
      fail(ErrorCode::BAD_VALUE, "chunks has " + std::to_string(b.chunks.size()) + " entries; stride x height = " +
                                     std::to_string(b.byte_size()) + " in chunks of " +
                                     std::to_string(b.chunk_bytes) + " bytes makes " + std::to_string(want));
  }

  Target target(const Obj& o) {
    const Obj& m = map(o);
    Target t;
    {
      At at(*this, "scope");
      static constexpr std::array<std::string_view, 3> kScopes = {"global", "material", "object"};
      t.scope = static_cast<wire::Scope>(vocab(field(m, "scope"), kScopes));
    }
    At at(*this, "ids");
    uint32_t n;
    const Obj* a = array(field(m, "ids"), kMaxTargetIds, n);
    t.ids.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      At at2(*this, size_t(i));
      t.ids[i] = static_cast<uint32_t>(uint(a[i], 0, kMaxTargetId));
    }
    if (t.scope == wire::Scope::global && n != 0) fail(ErrorCode::BAD_VALUE, "a global target takes no ids");
    if (t.scope != wire::Scope::global && n == 0)
      fail(ErrorCode::BAD_VALUE, "a " + std::string(scope_name(t.scope)) + " target needs ids");
    return t;
  }

  // ----- params -------------------------------------------------------------------------------------------------
  // Container depth (the params map itself is 1; scalars add nothing), like protocol.py's _depth(). Duplicate keys
  // count once with their last value (a Python dict).
  static size_t depth_of(const Obj& o) {
    if (o.type == T::ARRAY) {
      size_t d = 0;
      for (uint32_t i = 0; i < o.via.array.size; ++i) d = std::max(d, depth_of(o.via.array.ptr[i]));
      return d + 1;
    }
    if (o.type == T::MAP) {
      size_t d = 0;
      for (uint32_t i = 0; i < o.via.map.size; ++i) d = std::max(d, depth_of(o.via.map.ptr[i].val));
      return d + 1;
    }
    return 0;
  }
  // Canonical re-encoding (section 3.1): shortest ints, float64 floats, keys in first-seen order with the last
  // value of a repeated key (what Python's msgpack.packb writes for the decoded dict).
  static void write_value(const Obj& o, W& w) {
    switch (o.type) {
      case T::NIL: w.nil(); return;
      case T::BOOLEAN: w.boolean(o.via.boolean); return;
      case T::POSITIVE_INTEGER: w.uint(o.via.u64); return;
      case T::NEGATIVE_INTEGER: w.sint(o.via.i64); return;
      case T::FLOAT32: case T::FLOAT64: w.f64(o.via.f64); return;
      case T::STR: w.str(sv(o)); return;
      case T::BIN: w.bin(reinterpret_cast<const uint8_t*>(o.via.bin.ptr), o.via.bin.size); return;
      case T::ARRAY:
        w.array(o.via.array.size);
        for (uint32_t i = 0; i < o.via.array.size; ++i) write_value(o.via.array.ptr[i], w);
        return;
      case T::MAP: {
        const uint32_t n = o.via.map.size;
        std::vector<std::pair<uint32_t, uint32_t>> order;  // (first index, last index) of each distinct key
        order.reserve(n);
        std::unordered_map<std::string_view, size_t> seen;
        for (uint32_t i = 0; i < n; ++i) {
          auto [it, inserted] = seen.emplace(sv(o.via.map.ptr[i].key), order.size());
          if (inserted)
            order.emplace_back(i, i);
          else
            order[it->second].second = i;
        }
        w.map(order.size());
        for (const auto& [first, last] : order) {
          w.str(sv(o.via.map.ptr[first].key));
          write_value(o.via.map.ptr[last].val, w);
        }
        return;
      }
      case T::EXT: return;  // excluded by the pre-scan
    }
  }
  std::vector<uint8_t> params(const Obj& o) {
    const Obj& m = map(o);
    if (depth_of(m) > kMaxParamsDepth) fail(ErrorCode::LIMIT_EXCEEDED, "nests deeper than 8");
    std::vector<uint8_t> out;
    W w(out);
    write_value(m, w);
    if (out.size() > kMaxParamsBytes)
      fail(ErrorCode::LIMIT_EXCEEDED, "encodes to " + std::to_string(out.size()) + " bytes, more than 4096");
    return out;
  }

  Event event(const Obj& o) {
    const Obj& m = map(o);
    Event e;
    {
      At at(*this, "name");
      e.name.assign(str(field(m, "name"), kMaxNameBytes, true));
    }
    {
      At at(*this, "params");
      e.params = params(field(m, "params"));
    }
    At at(*this, "target");
    e.target = target(field(m, "target"));
    return e;
  }

  StyleCommand stylecmd(const Obj& o) {
    const Obj& m = map(o);
    StyleCommand c;
    {
      At at(*this, "style");
      c.style.assign(str(field(m, "style"), kMaxNameBytes, true));
    }
    {
      At at(*this, "strength");
      c.strength = flt(field(m, "strength"), 0.0, 1.0);
    }
    {
      At at(*this, "over");
      c.over = flt(field(m, "over"), 0.0, 3600.0);
    }
    {
      At at(*this, "target");
      c.target = target(field(m, "target"));
    }
    if (const Obj* p = find(m, "params")) {
      At at(*this, "params");
      c.params = style_params(*p);
    }
    return c;
  }

  // stylecmd params (section 5.3): shapes only, in the sender's key order, as bridge/protocol.py checks them.
  std::vector<StyleParam> style_params(const Obj& o) {
    const Obj& m = map(o);
    const uint32_t n = m.via.map.size;
    if (n > kMaxStyleParams)
      fail(ErrorCode::LIMIT_EXCEEDED, "more than " + std::to_string(kMaxStyleParams) + " entries");
    std::vector<StyleParam> out(n);
    for (uint32_t i = 0; i < n; ++i) {
      const Obj& key = m.via.map.ptr[i].key;
      const Obj& val = m.via.map.ptr[i].val;
      StyleParam& p = out[i];
      {
        At at(*this, "key");
        p.key.assign(str(key, kMaxNameBytes, true));
      }
      At at(*this, p.key.c_str());
      if (is_style_param_text_key(p.key)) {
        p.kind = StyleParam::Kind::text;
        p.text.assign(str(val, kMaxNameBytes, true));
      } else if (val.type == T::ARRAY) {
        p.kind = StyleParam::Kind::rgb;
        p.value = floats<3>(val);
      } else {
        p.kind = StyleParam::Kind::number;
        p.value[0] = flt(val);
      }
    }
    return out;
  }

  Control control(const Obj& o) {
    const Obj& m = map(o);
    Control c;
    {
      At at(*this, "control");
      c.control = static_cast<ControlKind>(vocab(field(m, "control"), kControls));
    }
    {
      At at(*this, "value");
      c.value = flt(field(m, "value"), 0.0, 1.0);
    }
    {
      At at(*this, "over");
      c.over = flt(field(m, "over"), 0.0, 3600.0);
    }
    {
      At at(*this, "target");
      c.target = target(field(m, "target"));
    }
    const bool global = c.target.scope == wire::Scope::global;
    if (c.control == ControlKind::intensity && !global)
      fail(ErrorCode::BAD_VALUE, "intensity is per session; its target must be global");
    if (c.control == ControlKind::exclude) {
      if (c.value != 0.0 && c.value != 1.0)
        fail(ErrorCode::BAD_VALUE, "value " + num(c.value) + " must be 1 (exclude) or 0 (include again)");
      if (c.over != 0.0) fail(ErrorCode::BAD_VALUE, "over must be 0 for exclude");
      if (global && c.value == 1.0)
        fail(ErrorCode::BAD_VALUE, "excluding everything is intensity 0; a global target only includes every id "
                                   "again (value 0)");
    }
    return c;
  }

  Camera camera(const Obj& o) {
    const Obj& m = map(o);
    Camera c;
    auto opt = [&](const char* key, auto&& parse) {
      if (const Obj* x = find(m, key)) {
        At at(*this, key);
        parse(*x);
      }
    };
    opt("view_to_clip", [&](const Obj& x) { c.view_to_clip = floats<16>(x); });
    opt("clip_to_view", [&](const Obj& x) { c.clip_to_view = floats<16>(x); });
    opt("clip_to_prev_clip", [&](const Obj& x) { c.clip_to_prev_clip = floats<16>(x); });
    opt("prev_clip_to_clip", [&](const Obj& x) { c.prev_clip_to_clip = floats<16>(x); });
    opt("world_to_view", [&](const Obj& x) { c.world_to_view = floats<16>(x); });
    opt("position", [&](const Obj& x) { c.position = floats<3>(x); });
    opt("up", [&](const Obj& x) { c.up = floats<3>(x); });
    opt("right", [&](const Obj& x) { c.right = floats<3>(x); });
    opt("forward", [&](const Obj& x) { c.forward = floats<3>(x); });
    opt("near", [&](const Obj& x) { c.near_plane = flt(x, 0.0, kInf, false, true); });
    opt("far", [&](const Obj& x) {
      const double v = flt(x, 0.0, kInf, /*allow_inf=*/true, true);
      if (c.near_plane && v <= *c.near_plane) fail(ErrorCode::BAD_VALUE, "must be greater than near");
      c.far_plane = v;
    });
    opt("fov_y", [&](const Obj& x) {
      const double v = flt(x, 0.0, kPi, false, true);
      if (v >= kPi) fail(ErrorCode::BAD_VALUE, "must be below pi");
      c.fov_y = v;
    });
    opt("aspect", [&](const Obj& x) { c.aspect = flt(x, 0.0, kInf, false, true); });
    opt("jitter", [&](const Obj& x) { c.jitter = floats<2>(x); });
    opt("mv_scale", [&](const Obj& x) { c.mv_scale = floats<2>(x); });
    opt("depth_inverted", [&](const Obj& x) { c.depth_inverted = boolean(x); });
    opt("depth_infinite", [&](const Obj& x) { c.depth_infinite = boolean(x); });
    opt("mv_jittered", [&](const Obj& x) { c.mv_jittered = boolean(x); });
    opt("mv_3d", [&](const Obj& x) { c.mv_3d = boolean(x); });
    opt("mv_dilated", [&](const Obj& x) { c.mv_dilated = boolean(x); });
    opt("camera_motion_included", [&](const Obj& x) { c.camera_motion_included = boolean(x); });
    opt("orthographic", [&](const Obj& x) { c.orthographic = boolean(x); });
    opt("reset", [&](const Obj& x) { c.reset = boolean(x); });
    opt("pre_exposure", [&](const Obj& x) { c.pre_exposure = flt(x, 0.0, kInf, false, true); });
    opt("tone_mapping", [&](const Obj& x) { c.tone_mapping = static_cast<ToneMapping>(vocab(x, kToneMappings)); });
    opt("render_size", [&](const Obj& x) { c.render_size = size(x); });
    opt("output_size", [&](const Obj& x) { c.output_size = size(x); });
    return c;
  }

  // ----- messages (step 7) ---------------------------------------------------------------------------------------
  // Runs `parse` on the value of a required key, with the key on the error path.
  template <typename F>
  auto req(const Obj& h, const char* key, F&& parse) {
    At at(*this, key);
    return parse(field(h, key));
  }
  template <typename F>
  void opt(const Obj& h, const char* key, F&& parse) {
    if (const Obj* x = find(h, key)) {
      At at(*this, key);
      parse(*x);
    }
  }
  auto uint_of() {
    return [this](const Obj& o) { return uint(o); };
  }
  auto str_of(size_t max_len = kMaxString) {
    return [this, max_len](const Obj& o) { return std::string(str(o, max_len)); };
  }

  void hello(const Obj& h, Hello& m) {
    req(h, "min_version", [&](const Obj& o) {
      m.min_version = uint(o);
      if (m.min_version > m.nrb)
        fail(ErrorCode::BAD_VALUE, "min_version " + std::to_string(m.min_version) + " is above nrb " +
                                       std::to_string(m.nrb));
      if (!(m.min_version <= kProtocolVersion && kProtocolVersion <= m.nrb))
        fail(ErrorCode::VERSION_UNSUPPORTED, "engine speaks " + std::to_string(m.min_version) + ".." +
                                                 std::to_string(m.nrb) + ", this side speaks 1");
    });
    m.engine = req(h, "engine", str_of());
    m.engine_version = req(h, "engine_version", str_of());
    m.client = req(h, "client", str_of());
    m.capabilities = req(h, "capabilities", [&](const Obj& o) { return str_list(o); });
    m.render_size = req(h, "render_size", [&](const Obj& o) { return size(o); });
    m.output_size = req(h, "output_size", [&](const Obj& o) { return size(o); });
    m.buffers = req(h, "buffers", [&](const Obj& o) { return bufspecs(o); });
    opt(h, "shm", [&](const Obj& o) {
      const Obj& sm = map(o);
      ShmPool p;
      p.name = req(sm, "name", [&](const Obj& x) {
        const std::string_view v = str(x, kMaxNameBytes, true);
        if (!valid_shm_name(v)) fail(ErrorCode::BAD_VALUE, "\"" + clip(v) + "\" is not /[A-Za-z0-9._-]+");
        return std::string(v);
      });
      p.slots = req(sm, "slots", [&](const Obj& x) { return uint(x, 1, kMaxShmSlots, true); });
      p.slot_size = req(sm, "slot_size", [&](const Obj& x) {
        const uint64_t v = uint(x, 1, kMaxShmSlotSize, true);
        if (v % kShmAlign != 0) fail(ErrorCode::BAD_VALUE, std::to_string(v) + " is not a multiple of 64");
        return v;
      });
      m.shm = std::move(p);
    });
    opt(h, "doorbell", [&](const Obj& o) {
      const Obj& dm = map(o);
      auto path = [&](const Obj& x) {
        const std::string_view v = str(x, kMaxDoorbellPathBytes, true);
        if (!valid_doorbell_path(v))
          fail(ErrorCode::BAD_VALUE, "\"" + clip(v) + "\" is not an absolute path of [A-Za-z0-9._-] components "
                                     "ending in nrb-...");
        return std::string(v);
      };
      DoorbellSpec d;
      d.to_renderer = req(dm, "to_renderer", path);
      d.to_engine = req(dm, "to_engine", [&](const Obj& x) {
        std::string v = path(x);
        if (v == d.to_renderer) fail(ErrorCode::BAD_VALUE, "to_engine must differ from to_renderer");
        return v;
      });
      m.doorbell = std::move(d);
    });
    opt(h, "ticket", [&](const Obj& o) { m.ticket = std::string(str(o, kMaxTicketBytes, true)); });
    opt(h, "renderer", [&](const Obj& o) { m.renderer = std::string(str(o, kMaxString, true)); });
    opt(h, "lossy_output", [&](const Obj& o) {
      const Obj& lm = map(o);
      Hello::LossyOutput l;
      l.codec = req(lm, "codec", [&](const Obj& x) {
        static constexpr std::array<std::string_view, 2> kLossy = {"jpeg", "webp"};
        return std::string(kLossy[vocab(x, kLossy)]);
      });
      l.quality = req(lm, "quality", [&](const Obj& x) { return uint(x, 1, 100); });
      m.lossy_output = std::move(l);
    });
  }
  // Section 7.1: absolute; components of [A-Za-z0-9._-], none "." or ".."; the last one starts with "nrb-".
  static bool valid_doorbell_path(std::string_view v) {
    if (v.empty() || v[0] != '/') return false;
    std::string_view last;
    size_t i = 1;
    for (;;) {
      size_t end = v.find('/', i);
      std::string_view comp = v.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
      if (comp.empty() || comp == "." || comp == "..") return false;
      for (char c : comp)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
          return false;
      last = comp;
      if (end == std::string_view::npos) break;
      i = end + 1;
    }
    return last.substr(0, 4) == "nrb-";
  }
  static bool valid_shm_name(std::string_view v) {
    if (v.size() < 2 || v[0] != '/') return false;
    for (size_t i = 1; i < v.size(); ++i) {
      const char c = v[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
            c == '-'))
        return false;
    }
    return true;
  }

  void welcome(const Obj& h, Welcome& m) {
    m.session = req(h, "session", [&](const Obj& o) { return uint(o, 1); });
    m.renderer = req(h, "renderer", str_of());
    m.capabilities = req(h, "capabilities", [&](const Obj& o) { return str_list(o); });
    m.required = req(h, "required", [&](const Obj& o) { return bufspecs(o); });
    m.optional = req(h, "optional", [&](const Obj& o) { return bufspecs(o); });
    req(h, "output", [&](const Obj& o) {
      const Obj& om = map(o);
      req(om, "name", [&](const Obj& x) {
        static constexpr std::array<std::string_view, 1> kOutput = {"output"};
        vocab(x, kOutput);
      });
      m.output.name = "output";
      m.output.format = req(om, "format", [&](const Obj& x) { return format(x); });
      m.output.width = req(om, "width", [&](const Obj& x) { return dimension(x); });
      m.output.height = req(om, "height", [&](const Obj& x) { return dimension(x); });
    });
    m.max_in_flight = req(h, "max_in_flight", [&](const Obj& o) { return uint(o, 1, kMaxInFlight, true); });
    m.styles = req(h, "styles", [&](const Obj& o) { return str_list(o); });
    opt(h, "limits", [&](const Obj& o) {
      const Obj& lm = map(o);
      WelcomeLimits l;
      l.frame_bytes = req(lm, "frame_bytes", [&](const Obj& x) { return uint(x, 1); });
      l.session_bytes = req(lm, "session_bytes", [&](const Obj& x) { return uint(x, 1); });
      l.message_bytes = req(lm, "message_bytes", [&](const Obj& x) { return uint(x, 1); });
      l.total_bytes = req(lm, "total_bytes", [&](const Obj& x) { return uint(x, 1); });
      l.max_pixels = req(lm, "max_pixels", [&](const Obj& x) { return uint(x, 1); });
      l.sessions = req(lm, "sessions", [&](const Obj& x) { return uint(x, 1); });
      l.sessions_per_peer = req(lm, "sessions_per_peer", [&](const Obj& x) { return uint(x, 1); });
      m.limits = l;
    });
    opt(h, "redirect", [&](const Obj& o) {
      const Obj& rm = map(o);
      Redirect r;
      r.endpoint = req(rm, "endpoint", [&](const Obj& x) {
        const std::string_view v = str(x, kMaxEndpointBytes, true);
        if (v.substr(0, 6) != "tcp://" && v.substr(0, 6) != "ipc://")
          fail(ErrorCode::BAD_VALUE, "\"" + clip(v) + "\" is not tcp://... or ipc://...");
        return std::string(v);
      });
      r.ticket = req(rm, "ticket", [&](const Obj& x) { return std::string(str(x, kMaxTicketBytes, true)); });
      m.redirect = std::move(r);
    });
  }

  void frame(const Obj& h, Frame& m) {
    m.session = req(h, "session", uint_of());
    m.frame = req(h, "frame", uint_of());
    m.time_ns = req(h, "time_ns", uint_of());
    m.dt = req(h, "dt", [&](const Obj& o) { return flt(o, 0.0, 10.0); });
    m.deadline_ms = req(h, "deadline_ms", [&](const Obj& o) { return flt(o, 0.0, 60000.0, false, true); });
    opt(h, "camera", [&](const Obj& o) { m.camera = camera(o); });
    req(h, "buffers", [&](const Obj& o) {
      uint32_t n;
      const Obj* a = array(o, kMaxBuffers, n);
      m.buffers.resize(n);
      for (uint32_t i = 0; i < n; ++i) {
        At at(*this, size_t(i));
        m.buffers[i] = bufdesc(a[i]);
        for (uint32_t j = 0; j < i; ++j)
          if (m.buffers[j].name == m.buffers[i].name)
            fail(ErrorCode::BAD_VALUE, "buffer \"" + m.buffers[i].name + "\" appears twice");
      }
    });
    req(h, "events", [&](const Obj& o) {
      uint32_t n;
      const Obj* a = array(o, kMaxEvents, n);
      m.events.resize(n);
      for (uint32_t i = 0; i < n; ++i) {
        At at(*this, size_t(i));
        m.events[i] = event(a[i]);
      }
    });
    req(h, "styles", [&](const Obj& o) {
      uint32_t n;
      const Obj* a = array(o, kMaxEvents, n);
      m.styles.resize(n);
      for (uint32_t i = 0; i < n; ++i) {
        At at(*this, size_t(i));
        m.styles[i] = stylecmd(a[i]);
      }
    });
    opt(h, "controls", [&](const Obj& o) {
      uint32_t n;
      const Obj* a = array(o, kMaxEvents, n);
      m.controls.resize(n);
      for (uint32_t i = 0; i < n; ++i) {
        At at(*this, size_t(i));
        m.controls[i] = control(a[i]);
      }
    });
    opt(h, "result_slot", [&](const Obj& o) {
      const uint64_t v = uint(o);
      if (!opts_.shm_pool || v >= opts_.shm_pool->slots)
        fail(ErrorCode::BAD_VALUE, "result_slot " + std::to_string(v) + " is not a slot of a negotiated pool");
      m.result_slot = v;
    });
  }

  void result(const Obj& h, Result& m) {
    m.session = req(h, "session", uint_of());
    m.frame = req(h, "frame", uint_of());
    m.status = req(h, "status", [&](const Obj& o) {
      static constexpr std::array<std::string_view, 2> kStatus = {"ok", "skipped"};
      return vocab(o, kStatus) == 0 ? ResultStatus::ok : ResultStatus::skipped;
    });
    if (m.status == ResultStatus::ok) {
      req(h, "output", [&](const Obj& o) {
        image_ = true;  // a lossy codec is valid here only (section 6.3.1)
        m.output = bufdesc(o);
        if (m.output->name != "output")
          fail(ErrorCode::BAD_VALUE, "name \"" + m.output->name + "\" must be \"output\"");
      });
    } else {
      opt(h, "output", [&](const Obj&) { fail(ErrorCode::BAD_VALUE, "a skipped RESULT carries no output"); });
    }
    req(h, "timing", [&](const Obj& o) {
      const Obj& t = map(o);
      auto ms = [&](const char* key) { return req(t, key, [&](const Obj& x) { return flt(x, 0.0); }); };
      m.timing.queue_ms = ms("queue_ms");
      m.timing.decode_ms = ms("decode_ms");
      m.timing.style_ms = ms("style_ms");
      m.timing.render_ms = ms("render_ms");
      m.timing.encode_ms = ms("encode_ms");
      m.timing.total_ms = ms("total_ms");
    });
  }

  void error(const Obj& h, Error& m) {
    m.code = static_cast<ErrorCode>(req(h, "code", uint_of()));
    m.name = req(h, "name", str_of());
    m.message = req(h, "message", str_of(kMaxErrorMessage));
    opt(h, "session", [&](const Obj& o) { m.session = uint(o); });
    opt(h, "frame", [&](const Obj& o) { m.frame = uint(o); });
  }

  template <typename P>
  void ping(const Obj& h, P& m) {
    m.nonce = req(h, "nonce", uint_of());
    m.time_ns = req(h, "time_ns", uint_of());
  }

  void bye(const Obj& h, Bye& m) {
    opt(h, "session", [&](const Obj& o) { m.session = uint(o); });
    opt(h, "reason", [&](const Obj& o) { m.reason = std::string(str(o)); });
  }

  void part(const Obj& h, Part& m) {  // section 5.12
    m.session = req(h, "session", uint_of());
    m.frame = req(h, "frame", uint_of());
    m.buffer = req(h, "buffer", [&](const Obj& o) { return buffer_name(o); });
    m.index = req(h, "index", [&](const Obj& o) { return uint(o, 0, kMaxPartIndex, /*limit=*/true); });
    // Section 9.1, after `index`: each direction streams where its own capability was negotiated, "output" the
    // image (6.3.4), any other buffer a FRAME's (6.3.5).
    if (m.buffer == "output" && !opts_.allow_streamed_output)
      fail(ErrorCode::BAD_VALUE, "a PART of \"output\" without streamed_output negotiated");
    if (m.buffer != "output" && !opts_.allow_streamed_frames)
      fail(ErrorCode::BAD_VALUE, "a PART of \"" + m.buffer + "\" without streamed_frames negotiated");
  }
  // Step 8 for a PART: its one payload frame, the chunk as it is (decompressed where section 6.3.4 says).
  void part_payload(Part& m, Bytes f) {
    if (f.size == 0) fail(ErrorCode::BAD_VALUE, "the PART's payload is empty");
    if (f.size > kMaxChunkWireBytes)
      fail(ErrorCode::LIMIT_EXCEEDED, "the PART's payload is " + std::to_string(f.size) + " bytes, above 2^31");
    m.payload = f.data;
    m.payload_size = f.size;
  }

  // Step 6.
  void must_understand(const Obj& h, MessageType t) {
    opt(h, "must_understand", [&](const Obj& o) {
      uint32_t n;
      const Obj* a = array(o, kMaxList, n);
      const auto& known = known_keys(t);
      for (uint32_t i = 0; i < n; ++i) {
        At at(*this, size_t(i));
        const std::string_view v = str(a[i]);
        if (std::find(known.begin(), known.end(), v) == known.end())
          fail(ErrorCode::UNKNOWN_REQUIRED, "key \"" + clip(v) + "\" must be understood but is not part of NRB/1");
      }
    });
  }

  // ----- step 8: payloads ----------------------------------------------------------------------------------------
  void payload(BufferDesc& b, Bytes f) {
    At at(*this, b.name);
    const uint64_t size = b.byte_size();
    b.payload = f.data;
    b.payload_size = f.size;
    if (b.compression == Compression::none) {
      if (f.size != size)
        fail(ErrorCode::PAYLOAD_MISMATCH,
             "payload is " + std::to_string(f.size) + " bytes, stride x height = " + std::to_string(size));
      b.data = f.data;
      b.size = f.size;
      return;
    }
    if (!b.chunks.empty()) {  // section 6.3.2: the table adds up to the payload, checked before decompressing
      uint64_t sum = 0;
      for (uint64_t c : b.chunks) sum += c;
      if (sum != f.size)
        fail(ErrorCode::PAYLOAD_MISMATCH,
             "the chunks add up to " + std::to_string(sum) + " bytes, the payload is " + std::to_string(f.size));
    }
    if (opts_.defer_decompression) return;  // inflate() later, on another thread
    const std::string why = inflate_payload(b, nullptr);
    if (!why.empty()) fail(ErrorCode::PAYLOAD_MISMATCH, why);
  }

 private:
  const DecodeOptions& opts_;
  bool image_ = false;  // reading a RESULT's output, where a lossy codec may be (section 6.3.1)
  std::string path_;
};

DecodeResult failure(ErrorCode c, std::string msg) {
  DecodeResult r;
  r.error.code = c;
  r.error.message = std::move(msg);
  return r;
}

template <typename M>
M decode_body(Decoder& d, const Obj& h, uint64_t nrb, void (Decoder::*parse)(const Obj&, M&)) {
  M m;
  m.nrb = nrb;
  (d.*parse)(h, m);
  return m;
}

Message decode_header(Decoder& d, const Obj& h) {
  // Step 3.
  const uint64_t nrb = d.req(h, "nrb", [&](const Obj& o) { return d.uint(o); });
  // Step 4.
  const MessageType type = d.req(h, "type", [&](const Obj& o) {
    const std::string_view v = d.str(o);
    auto t = type_from_name(v);
    if (!t) d.fail(ErrorCode::UNKNOWN_TYPE, "unknown message type \"" + clip(v) + "\"");
    return *t;
  });
  // Step 5.
  if (type != MessageType::hello && nrb != kProtocolVersion)
    d.fail(ErrorCode::VERSION_UNSUPPORTED, "protocol version " + std::to_string(nrb) + " is not supported");
  // Step 6.
  d.must_understand(h, type);
  // Step 7.
  switch (type) {
    case MessageType::hello: return decode_body<Hello>(d, h, nrb, &Decoder::hello);
    case MessageType::welcome: return decode_body<Welcome>(d, h, nrb, &Decoder::welcome);
    case MessageType::frame: return decode_body<Frame>(d, h, nrb, &Decoder::frame);
    case MessageType::result: return decode_body<Result>(d, h, nrb, &Decoder::result);
    case MessageType::error: return decode_body<Error>(d, h, nrb, &Decoder::error);
    case MessageType::ping: return decode_body<Ping>(d, h, nrb, &Decoder::ping<Ping>);
    case MessageType::pong: return decode_body<Pong>(d, h, nrb, &Decoder::ping<Pong>);
    case MessageType::bye: return decode_body<Bye>(d, h, nrb, &Decoder::bye);
    case MessageType::part: return decode_body<Part>(d, h, nrb, &Decoder::part);
  }
  d.fail(ErrorCode::INTERNAL, "unreachable");
}

// A repeated key would let a second value hide the first from the field checks (protocol section 9.1 step 2).
// Keys are all str here (the pre-scan admitted nothing else); nesting is bounded by the unpack limits.
bool has_repeated_key(const msgpack::object& o) {
  using T = msgpack::type::object_type;
  if (o.type == T::ARRAY) {
    for (uint32_t i = 0; i < o.via.array.size; ++i)
      if (has_repeated_key(o.via.array.ptr[i])) return true;
  } else if (o.type == T::MAP) {
    std::unordered_set<std::string_view> seen;
    seen.reserve(o.via.map.size);
    for (uint32_t i = 0; i < o.via.map.size; ++i) {
      const auto& kv = o.via.map.ptr[i];
      if (!seen.emplace(kv.key.via.str.ptr, kv.key.via.str.size).second) return true;
      if (has_repeated_key(kv.val)) return true;
    }
  }
  return false;
}

DecodeResult decode_impl(const Bytes* frames, size_t n, const DecodeOptions& opts) {
  // Step 1.
  if (n == 0 || frames == nullptr) return failure(ErrorCode::MALFORMED, "the message has no frames");
  const Bytes header = frames[0];
  if (header.size > kMaxHeaderBytes)
    return failure(ErrorCode::LIMIT_EXCEEDED,
                   "the header is " + std::to_string(header.size) + " bytes, more than 65536");
  // Step 2.
  if (header.size == 0 || header.data == nullptr) return failure(ErrorCode::MALFORMED, "the header is empty");
  if (const char* why = prescan(header.data, header.size)) return failure(ErrorCode::MALFORMED, why);
  std::size_t off = 0;
  msgpack::object_handle oh;
  try {
    oh = unpack_checked(header.data, header.size, off);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {  // not expected after the pre-scan
    return failure(ErrorCode::MALFORMED, std::string("msgpack: ") + e.what());
  }
  if (off != header.size) return failure(ErrorCode::MALFORMED, "trailing bytes after the header");
  const Obj& h = oh.get();
  if (h.type != T::MAP) return failure(ErrorCode::MALFORMED, "the header is not a msgpack map");
  if (has_repeated_key(h)) return failure(ErrorCode::MALFORMED, "a key is repeated within one map");

  Decoder d(opts);
  DecodeResult r;
  try {
    r.message = decode_header(d, h);  // steps 3-7
    if (auto* part = std::get_if<Part>(&*r.message)) {  // step 8: exactly one payload frame, the chunk
      if (n != 2) return failure(ErrorCode::MALFORMED, std::to_string(n - 1) + " payload frames for a PART (1)");
      d.part_payload(*part, frames[1]);
      return r;
    }
    // Step 8: one payload frame per inline descriptor, in descriptor order.
    std::vector<BufferDesc*> inline_bufs;
    if (auto* f = std::get_if<Frame>(&*r.message)) {
      for (auto& b : f->buffers)
        if (b.is_inline()) inline_bufs.push_back(&b);
    } else if (auto* res = std::get_if<Result>(&*r.message)) {
      if (res->output && res->output->is_inline()) inline_bufs.push_back(&*res->output);
    }
    if (n - 1 != inline_bufs.size())
      return failure(ErrorCode::MALFORMED, std::to_string(n - 1) + " payload frames for " +
                                               std::to_string(inline_bufs.size()) + " inline buffers");
    for (size_t i = 0; i < inline_bufs.size(); ++i) d.payload(*inline_bufs[i], frames[i + 1]);
  } catch (Reject& e) {
    return failure(e.code, std::move(e.message));
  }
  return r;
}

}  // namespace

std::optional<DecodeError> inflate(BufferDesc& b, const ParallelRunner* run) noexcept {
  if (b.compression == Compression::none || b.data != nullptr) return std::nullopt;
  try {
    std::string why = inflate_payload(b, run);
    if (why.empty()) return std::nullopt;
    return DecodeError{ErrorCode::PAYLOAD_MISMATCH, b.name + ": " + why};
  } catch (const std::bad_alloc&) {
    return DecodeError{ErrorCode::INTERNAL, "out of memory"};
  } catch (const std::exception& e) {
    return DecodeError{ErrorCode::INTERNAL, e.what()};
  }
}

std::string inflate_chunk(Compression c, const uint8_t* in, size_t n, uint8_t* out, uint64_t raw_len,
                          unsigned shuffle_texel) noexcept {
  try {
    if (c != Compression::lz4 && c != Compression::zstd) return "only an lz4 or zstd payload comes in chunks";
    return unframe_chunk(c, in, n, out, raw_len, shuffle_texel);
  } catch (...) {  // std::bad_alloc (the text fits std::string's inline buffer: it allocates nothing)
    return "out of memory";
  }
}

std::optional<FramePeek> peek_frame(const uint8_t* in, size_t n) noexcept {
  if (!in || n < 4) return std::nullopt;
  const uint32_t magic = uint32_t(in[0]) | uint32_t(in[1]) << 8 | uint32_t(in[2]) << 16 | uint32_t(in[3]) << 24;
  if (magic == 0xFD2FB528u) {  // ZSTD_MAGICNUMBER
    const unsigned long long size = ZSTD_getFrameContentSize(in, n);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) return std::nullopt;
    return FramePeek{Compression::zstd, uint64_t(size)};
  }
  if (magic == 0x184D2204u) {  // LZ4F_MAGICNUMBER
    LZ4F_dctx* raw = nullptr;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&raw, LZ4F_VERSION))) return std::nullopt;
    std::unique_ptr<LZ4F_dctx, LZ4F_errorCode_t (*)(LZ4F_dctx*)> ctx(raw, LZ4F_freeDecompressionContext);
    LZ4F_frameInfo_t info;
    std::memset(&info, 0, sizeof info);
    size_t consumed = n;
    if (LZ4F_isError(LZ4F_getFrameInfo(ctx.get(), &info, in, &consumed)) || info.contentSize == 0)
      return std::nullopt;
    return FramePeek{Compression::lz4, uint64_t(info.contentSize)};
  }
  return std::nullopt;
}

uint64_t chunk_bytes_for(uint64_t size, unsigned workers) noexcept {
  constexpr uint64_t kMinBuffer = 512 * 1024, kAlign = 64 * 1024;
  if (workers < 2 || size < kMinBuffer) return 0;
  uint64_t per = (size + std::min<uint64_t>(workers, kMaxChunks) - 1) / std::min<uint64_t>(workers, kMaxChunks);
  per = (per + kAlign - 1) / kAlign * kAlign;
  return per < size ? per : 0;
}

uint64_t stream_chunk_bytes_for(uint64_t size) noexcept {
  constexpr uint64_t kStreamChunk = uint64_t(1) << 20, kAlign = 64 * 1024;
  const uint64_t per = std::max(kStreamChunk, (size + kMaxChunks - 1) / kMaxChunks);
  return (per + kAlign - 1) / kAlign * kAlign;
}

DecodeResult decode(const Bytes* frames, size_t n, const DecodeOptions& opts) noexcept {
  try {
    return decode_impl(frames, n, opts);
  } catch (const std::bad_alloc&) {
    return failure(ErrorCode::INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    return failure(ErrorCode::INTERNAL, e.what());
  } catch (...) {
    return failure(ErrorCode::INTERNAL, "unknown exception");
  }
}

bool is_valid_utf8(std::string_view s) noexcept {
  return valid_utf8(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

namespace {

// One standalone msgpack value (an event's or style command's params) through one Decoder rule, with the checks and
// error mapping every such entry point shares: `rule(decoder, object)` returns what to store in `*out`.
template <typename T, typename Rule>
std::optional<DecodeError> decode_standalone(const uint8_t* data, size_t size, T* out, Rule rule) noexcept {
  try {
    if (size == 0 || data == nullptr) return DecodeError{ErrorCode::MALFORMED, "empty params"};
    if (size > kMaxHeaderBytes) return DecodeError{ErrorCode::LIMIT_EXCEEDED, "params larger than a header"};
    if (const char* why = prescan(data, size)) return DecodeError{ErrorCode::MALFORMED, why};
    std::size_t off = 0;
    auto oh = unpack_checked(data, size, off);
    DecodeOptions opts;
    Decoder d(opts);
    try {
      T value = rule(d, oh.get());
      if (out) *out = std::move(value);
    } catch (Reject& e) {
      return DecodeError{e.code, std::move(e.message)};
    }
    return std::nullopt;
  } catch (const std::bad_alloc&) {
    return DecodeError{ErrorCode::INTERNAL, "out of memory"};
  } catch (const std::exception& e) {
    return DecodeError{ErrorCode::MALFORMED, e.what()};
  }
}

}  // namespace

std::optional<DecodeError> canonicalize_params(const uint8_t* data, size_t size,
                                               std::vector<uint8_t>* canonical) noexcept {
  return decode_standalone(data, size, canonical,
                           [](Decoder& d, const msgpack::object& o) { return d.params(o); });
}

std::optional<DecodeError> decode_style_params(const uint8_t* data, size_t size,
                                               std::vector<StyleParam>* params) noexcept {
  return decode_standalone(data, size, params,
                           [](Decoder& d, const msgpack::object& o) { return d.style_params(o); });
}

}  // namespace nrb::wire
