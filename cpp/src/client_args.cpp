#include "client_args.hpp"

#include <cmath>
#include <stdexcept>

namespace nrb::detail {

namespace {
[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

bool finite(double v) { return std::isfinite(v); }

template <size_t N>
void check_finite(const std::optional<std::array<double, N>>& a, const char* what) {
  if (!a) return;
  for (double v : *a)
    if (!finite(v)) bad(std::string("camera.") + what + " must be finite");
}
void check_finite(const std::optional<double>& v, const char* what) {
  if (v && !finite(*v)) bad(std::string("camera.") + what + " must be finite");
}
}  // namespace

bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

void check_buffer(BufferArgs& b) {
  if (!wire::is_valid_buffer_name(b.name) || b.name == "output")
    bad("buffer name \"" + b.name + "\" is not a section 6.1 name or x_ vendor name");
  if (b.width < 1 || b.height < 1) bad("buffer \"" + b.name + "\": width and height must be at least 1");
  if (b.width > wire::kMaxDimension || b.height > wire::kMaxDimension)
    throw std::out_of_range("buffer \"" + b.name + "\": width and height must be at most 16384");
  uint64_t row = uint64_t(b.width) * wire::bytes_per_pixel(b.format);
  if (b.stride == 0) b.stride = row;
  if (b.stride < row) bad("buffer \"" + b.name + "\": stride is smaller than width * bytes per pixel");
  if (b.stride > wire::kMaxStride || b.stride * b.height > wire::kMaxBufferBytes)
    throw std::out_of_range("buffer \"" + b.name + "\": larger than 1 GiB");
  bool is_depth = b.name == "depth" || b.name == "linear_depth";
  if ((b.depth_reversed || b.depth_infinite) && !is_depth)
    bad("buffer \"" + b.name + "\": depth flags apply to depth buffers only");
}

std::string check_string(std::string_view s, const char* what, size_t max_len, bool allow_empty) {
  if (s.empty() && !allow_empty) bad(std::string(what) + " must not be empty");
  if (s.size() > max_len) bad(std::string(what) + " is longer than " + std::to_string(max_len) + " bytes");
  if (!valid_utf8(s)) bad(std::string(what) + " is not valid UTF-8");
  return std::string(s);
}

wire::Target make_target(wire::Scope scope, const uint32_t* ids, size_t count) {
  wire::Target t;
  t.scope = scope;
  if (scope == wire::Scope::global) {
    if (count != 0) bad("target: a global target takes no ids");
    return t;
  }
  if (count == 0 || !ids) bad("target: material and object targets need at least one id");
  if (count > wire::kMaxTargetIds) bad("target: at most 1024 ids");
  t.ids.assign(ids, ids + count);
  return t;
}

std::vector<uint8_t> make_params(const void* msgpack, size_t size) {
  if (!msgpack || size == 0) return {0x80};
  std::vector<uint8_t> canonical;
  if (auto err = wire::canonicalize_params(static_cast<const uint8_t*>(msgpack), size, &canonical))
    bad("event params: " + std::string(wire::error_name(err->code)) + ": " + err->message);
  return canonical;
}

wire::Event make_event(std::string_view name, const void* params, size_t params_size, wire::Target target) {
  wire::Event e;
  e.name = check_string(name, "event name", wire::kMaxNameBytes);
  e.params = make_params(params, params_size);
  e.target = std::move(target);
  return e;
}

wire::StyleCommand make_style(std::string_view style, double strength, double over, wire::Target target) {
  wire::StyleCommand s;
  s.style = check_string(style, "style name", wire::kMaxNameBytes);
  if (!finite(strength) || strength < 0.0 || strength > 1.0) bad("style strength must be in [0, 1]");
  if (!finite(over) || over < 0.0 || over > 3600.0) bad("style transition (over) must be in [0, 3600] seconds");
  s.strength = strength;
  s.over = over;
  s.target = std::move(target);
  return s;
}

wire::StyleCommand make_style_params(std::string_view style, const void* params, size_t params_size, double strength,
                                     double over, wire::Target target) {
  wire::StyleCommand s = make_style(style, strength, over, std::move(target));
  static const uint8_t kEmpty = 0x80;
  const uint8_t* data = params && params_size ? static_cast<const uint8_t*>(params) : &kEmpty;
  const size_t size = params && params_size ? params_size : 1;
  std::vector<wire::StyleParam> out;
  if (auto err = wire::decode_style_params(data, size, &out)) {
    std::string why = "style \"" + s.style + "\" params: " + std::string(wire::error_name(err->code)) + ": " +
                      err->message;
    if (err->code == wire::ErrorCode::LIMIT_EXCEEDED) throw std::out_of_range(why);
    bad(why);
  }
  s.params = std::move(out);
  return s;
}

wire::Control make_intensity(double value, double over) {
  if (!finite(value) || value < 0.0 || value > 1.0) bad("intensity must be in [0, 1]");
  if (!finite(over) || over < 0.0 || over > 3600.0) bad("intensity transition (over) must be in [0, 3600] seconds");
  wire::Control c;
  c.control = wire::ControlKind::intensity;
  c.value = value;
  c.over = over;
  return c;
}

wire::Control make_exclude(wire::Target target, bool excluded) {
  if (target.scope == wire::Scope::global && excluded)
    bad("exclude: a global target only includes every id again; to show the engine's image everywhere set the "
        "intensity to 0");
  wire::Control c;
  c.control = wire::ControlKind::exclude;
  c.value = excluded ? 1.0 : 0.0;
  c.target = std::move(target);
  return c;
}

void check_camera(const wire::Camera& c) {
  check_finite(c.view_to_clip, "view_to_clip");
  check_finite(c.clip_to_view, "clip_to_view");
  check_finite(c.clip_to_prev_clip, "clip_to_prev_clip");
  check_finite(c.prev_clip_to_clip, "prev_clip_to_clip");
  check_finite(c.world_to_view, "world_to_view");
  check_finite(c.position, "position");
  check_finite(c.up, "up");
  check_finite(c.right, "right");
  check_finite(c.forward, "forward");
  check_finite(c.near_plane, "near");
  check_finite(c.fov_y, "fov_y");
  check_finite(c.aspect, "aspect");
  check_finite(c.jitter, "jitter");
  check_finite(c.mv_scale, "mv_scale");
  check_finite(c.pre_exposure, "pre_exposure");
  if (c.near_plane && *c.near_plane <= 0.0) bad("camera.near must be > 0");
  if (c.far_plane) {
    double f = *c.far_plane;
    if (std::isnan(f) || f == -INFINITY) bad("camera.far must be a number or +inf");
    if (c.near_plane && f <= *c.near_plane) bad("camera.far must be greater than near");
  }
  if (c.fov_y && (*c.fov_y <= 0.0 || *c.fov_y >= 3.14159265358979323846)) bad("camera.fov_y must be in (0, pi)");
  if (c.aspect && *c.aspect <= 0.0) bad("camera.aspect must be > 0");
  if (c.pre_exposure && *c.pre_exposure <= 0.0) bad("camera.pre_exposure must be > 0");
  for (const auto* s : {&c.render_size, &c.output_size})
    if (*s && ((*s)->width < 1 || (*s)->height < 1 || (*s)->width > wire::kMaxDimension ||
               (*s)->height > wire::kMaxDimension))
      bad("camera render/output size must be 1..16384");
}

}  // namespace nrb::detail
