// Test-only bridge between nrb::wire messages and the JSON of tests/vectors (tests/vectors/README.md): the header
// map as JSON plus payload bytes. Header-only and nlohmann-based so that libnrb itself never depends on nlohmann;
// used by cpp/tests/test_protocol.cpp and the Python glue (cpp/python/wire_module.cpp).
//
// JSON has no NaN/Infinity; Python's json module writes them as the bare tokens NaN, Infinity, -Infinity.
// parse_json() accepts those tokens and dump_json() writes them, so camera `far` = +inf survives the round trip.
#pragma once

#include "protocol.hpp"

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace nrb::wire::json {

using Json = nlohmann::ordered_json;  // keeps key order: params maps are encoded in the order given

inline constexpr const char* kInfToken = "__nrb_json_inf__";
inline constexpr const char* kNegInfToken = "__nrb_json_-inf__";
inline constexpr const char* kNanToken = "__nrb_json_nan__";

// Parses JSON text, accepting bare NaN / Infinity / -Infinity outside strings (as Python's json.dumps writes them).
inline Json parse_json(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_str = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_str) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_str = false;
      }
      continue;
    }
    if (c == '"') {
      in_str = true;
      out += c;
    } else if (text.compare(i, 9, "-Infinity") == 0) {
      out += std::string("\"") + kNegInfToken + "\"";
      i += 8;
    } else if (text.compare(i, 8, "Infinity") == 0) {
      out += std::string("\"") + kInfToken + "\"";
      i += 7;
    } else if (text.compare(i, 3, "NaN") == 0) {
      out += std::string("\"") + kNanToken + "\"";
      i += 2;
    } else {
      out += c;
    }
  }
  return Json::parse(out);
}

// A JSON value for a double; non-finite values become tokens that dump_json() writes as Python does.
inline Json number(double d) {
  if (std::isnan(d)) return kNanToken;
  if (std::isinf(d)) return d > 0 ? kInfToken : kNegInfToken;
  return d;
}

inline std::string dump_json(const Json& j) {
  std::string s = j.dump();
  for (auto [token, bare] : {std::pair<const char*, const char*>{kNegInfToken, "-Infinity"},
                             {kInfToken, "Infinity"},
                             {kNanToken, "NaN"}}) {
    const std::string quoted = std::string("\"") + token + "\"";
    for (size_t pos = s.find(quoted); pos != std::string::npos; pos = s.find(quoted, pos))
      s.replace(pos, quoted.size(), bare);
  }
  return s;
}

// ----------------------------------------------------------------------------------------------------------------
// JSON -> message
// ----------------------------------------------------------------------------------------------------------------
namespace detail {

[[noreturn]] inline void bad(const std::string& what) { throw std::invalid_argument("vector header: " + what); }

inline const Json& at(const Json& j, const char* key) {
  if (!j.is_object()) bad(std::string("expected an object around ") + key);
  auto it = j.find(key);
  if (it == j.end()) bad(std::string("missing ") + key);
  return *it;
}
inline const Json* find(const Json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}
inline uint64_t u64(const Json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
  bad("expected an unsigned integer, got " + j.dump());
}
inline uint32_t u32(const Json& j) {
  const uint64_t v = u64(j);
  if (v > UINT32_MAX) bad("value does not fit in 32 bits: " + j.dump());
  return static_cast<uint32_t>(v);
}
inline double f64(const Json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == kInfToken) return std::numeric_limits<double>::infinity();
    if (s == kNegInfToken) return -std::numeric_limits<double>::infinity();
    if (s == kNanToken) return std::numeric_limits<double>::quiet_NaN();
  }
  bad("expected a number, got " + j.dump());
}
inline bool boolean(const Json& j) {
  if (!j.is_boolean()) bad("expected a boolean, got " + j.dump());
  return j.get<bool>();
}
inline std::string str(const Json& j) {
  if (!j.is_string()) bad("expected a string, got " + j.dump());
  return j.get<std::string>();
}
inline std::vector<std::string> strs(const Json& j) {
  if (!j.is_array()) bad("expected an array of strings");
  std::vector<std::string> v;
  for (const auto& x : j) v.push_back(str(x));
  return v;
}
template <size_t N>
inline std::array<double, N> floats(const Json& j) {
  if (!j.is_array() || j.size() != N) bad("expected " + std::to_string(N) + " numbers");
  std::array<double, N> a{};
  for (size_t i = 0; i < N; ++i) a[i] = f64(j[i]);
  return a;
}
inline Size2 size2(const Json& j) {
  if (!j.is_array() || j.size() != 2) bad("expected [w, h]");
  return {u32(j[0]), u32(j[1])};
}
inline Format format(const Json& j) {
  auto f = format_from_name(str(j));
  if (!f) bad("unknown format " + j.dump());
  return *f;
}
inline BufferSpec bufspec(const Json& j) { return {str(at(j, "name")), format(at(j, "format"))}; }
inline std::vector<BufferSpec> bufspecs(const Json& j) {
  if (!j.is_array()) bad("expected an array of bufspecs");
  std::vector<BufferSpec> v;
  for (const auto& x : j) v.push_back(bufspec(x));
  return v;
}
inline Compression compression(const Json& j) {
  const std::string s = str(j);
  if (s == "lz4") return Compression::lz4;
  if (s == "zstd") return Compression::zstd;
  if (s == "jpeg") return Compression::jpeg;
  if (s == "webp") return Compression::webp;
  bad("unknown compression " + s);
}
inline BufferDesc bufdesc(const Json& j) {
  BufferDesc b;
  b.name = str(at(j, "name"));
  b.format = format(at(j, "format"));
  b.width = u32(at(j, "width"));
  b.height = u32(at(j, "height"));
  b.stride = u64(at(j, "stride"));
  if (auto* x = find(j, "compression")) b.compression = compression(*x);
  if (auto* x = find(j, "chunks"))
    for (const auto& c : *x) b.chunks.push_back(u64(c));
  if (auto* x = find(j, "chunk_bytes")) b.chunk_bytes = u64(*x);
  if (auto* x = find(j, "filter")) b.shuffle = str(*x) == "shuffle";
  if (auto* x = find(j, "streamed")) b.streamed = boolean(*x);
  if (auto* x = find(j, "depth_reversed")) b.depth_reversed = boolean(*x);
  if (auto* x = find(j, "depth_infinite")) b.depth_infinite = boolean(*x);
  if (auto* x = find(j, "shm")) b.shm = ShmRef{u64(at(*x, "slot")), u64(at(*x, "offset"))};
  return b;
}
inline Target target(const Json& j) {
  Target t;
  const std::string scope = str(at(j, "scope"));
  if (scope == "global")
    t.scope = Scope::global;
  else if (scope == "material")
    t.scope = Scope::material;
  else if (scope == "object")
    t.scope = Scope::object;
  else
    bad("unknown scope " + scope);
  const Json& ids = at(j, "ids");
  if (!ids.is_array()) bad("ids must be an array");
  for (const auto& x : ids) t.ids.push_back(u32(x));
  return t;
}

// JSON value -> canonical msgpack (section 3.1): JSON int -> shortest int, JSON float -> float64, objects keep
// their key order. {"$bin": "hex"} stands for a msgpack bin (JSON has no bytes).
inline std::vector<uint8_t> hex_bytes(const std::string& hex) {
  if (hex.size() % 2) bad("odd-length hex");
  std::vector<uint8_t> out(hex.size() / 2);
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    bad("bad hex digit");
  };
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(nib(hex[2 * i]) << 4 | nib(hex[2 * i + 1]));
  return out;
}
inline void write_param(const Json& j, ParamsWriter& w) {
  switch (j.type()) {
    case Json::value_t::null: w.nil(); return;
    case Json::value_t::boolean: w.boolean(j.get<bool>()); return;
    case Json::value_t::number_unsigned: w.u64(j.get<uint64_t>()); return;
    case Json::value_t::number_integer: w.i64(j.get<int64_t>()); return;
    case Json::value_t::number_float: w.f64(j.get<double>()); return;
    case Json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      if (s == kInfToken || s == kNegInfToken || s == kNanToken)
        w.f64(f64(j));
      else
        w.str(s);
      return;
    }
    case Json::value_t::array:
      w.array(static_cast<uint32_t>(j.size()));
      for (const auto& x : j) write_param(x, w);
      return;
    case Json::value_t::object:
      if (j.size() == 1 && j.begin().key() == "$bin" && j.begin()->is_string()) {
        auto b = hex_bytes(j.begin()->get<std::string>());
        w.bin(b.data(), b.size());
        return;
      }
      w.map(static_cast<uint32_t>(j.size()));
      for (auto it = j.begin(); it != j.end(); ++it) {
        w.str(it.key());
        write_param(it.value(), w);
      }
      return;
    default: bad("unsupported JSON value in params");
  }
}
inline Event event(const Json& j) {
  Event e;
  e.name = str(at(j, "name"));
  const Json& p = at(j, "params");
  if (!p.is_object()) bad("params must be an object");
  ParamsWriter w;
  write_param(p, w);
  e.params = w.take();
  e.target = target(at(j, "target"));
  return e;
}
inline Camera camera(const Json& j) {
  Camera c;
  if (auto* x = find(j, "view_to_clip")) c.view_to_clip = floats<16>(*x);
  if (auto* x = find(j, "clip_to_view")) c.clip_to_view = floats<16>(*x);
  if (auto* x = find(j, "clip_to_prev_clip")) c.clip_to_prev_clip = floats<16>(*x);
  if (auto* x = find(j, "prev_clip_to_clip")) c.prev_clip_to_clip = floats<16>(*x);
  if (auto* x = find(j, "world_to_view")) c.world_to_view = floats<16>(*x);
  if (auto* x = find(j, "position")) c.position = floats<3>(*x);
  if (auto* x = find(j, "up")) c.up = floats<3>(*x);
  if (auto* x = find(j, "right")) c.right = floats<3>(*x);
  if (auto* x = find(j, "forward")) c.forward = floats<3>(*x);
  if (auto* x = find(j, "near")) c.near_plane = f64(*x);
  if (auto* x = find(j, "far")) c.far_plane = f64(*x);
  if (auto* x = find(j, "fov_y")) c.fov_y = f64(*x);
  if (auto* x = find(j, "aspect")) c.aspect = f64(*x);
  if (auto* x = find(j, "jitter")) c.jitter = floats<2>(*x);
  if (auto* x = find(j, "mv_scale")) c.mv_scale = floats<2>(*x);
  if (auto* x = find(j, "depth_inverted")) c.depth_inverted = boolean(*x);
  if (auto* x = find(j, "depth_infinite")) c.depth_infinite = boolean(*x);
  if (auto* x = find(j, "mv_jittered")) c.mv_jittered = boolean(*x);
  if (auto* x = find(j, "mv_3d")) c.mv_3d = boolean(*x);
  if (auto* x = find(j, "mv_dilated")) c.mv_dilated = boolean(*x);
  if (auto* x = find(j, "camera_motion_included")) c.camera_motion_included = boolean(*x);
  if (auto* x = find(j, "orthographic")) c.orthographic = boolean(*x);
  if (auto* x = find(j, "reset")) c.reset = boolean(*x);
  if (auto* x = find(j, "pre_exposure")) c.pre_exposure = f64(*x);
  if (auto* x = find(j, "tone_mapping")) {
    auto t = tone_mapping_from_name(str(*x));
    if (!t) throw std::runtime_error("json: unknown tone_mapping");
    c.tone_mapping = *t;
  }
  if (auto* x = find(j, "render_size")) c.render_size = size2(*x);
  if (auto* x = find(j, "output_size")) c.output_size = size2(*x);
  return c;
}
inline StyleCommand stylecmd(const Json& s) {
  StyleCommand c{str(at(s, "style")), f64(at(s, "strength")), f64(at(s, "over")), target(at(s, "target")), {}};
  if (auto* x = find(s, "params")) {
    c.params.emplace();
    for (const auto& [key, v] : x->items()) {
      StyleParam p;
      p.key = key;
      if (v.is_string()) {
        p.kind = StyleParam::Kind::text;
        p.text = v.get<std::string>();
      } else if (v.is_array()) {
        p.kind = StyleParam::Kind::rgb;
        p.value = floats<3>(v);
      } else {
        p.value[0] = f64(v);
      }
      c.params->push_back(std::move(p));
    }
  }
  return c;
}
inline Control control(const Json& j) {
  Control c;
  const std::string kind = str(at(j, "control"));
  if (kind == "intensity")
    c.control = ControlKind::intensity;
  else if (kind == "exclude")
    c.control = ControlKind::exclude;
  else
    throw std::runtime_error("json: unknown control");
  c.value = f64(at(j, "value"));
  c.over = f64(at(j, "over"));
  c.target = target(at(j, "target"));
  return c;
}
inline void common(const Json& j, Common& c) {
  c.nrb = u64(at(j, "nrb"));
  if (auto* x = find(j, "must_understand")) c.must_understand = strs(*x);
}

}  // namespace detail

// Builds a message from a vector header plus the raw (uncompressed) pixel bytes of each inline buffer, in
// descriptor order. A buffer with `compression` is compressed here (into `storage`), as bridge/protocol.py's
// encoder does. The message views `payloads` and `storage`: keep both alive while it is used.
inline Message message_from_json(const Json& h, const std::vector<std::vector<uint8_t>>& payloads,
                                 std::vector<std::vector<uint8_t>>& storage) {
  using namespace detail;
  const std::string type = str(at(h, "type"));
  auto t = type_from_name(type);
  if (!t) bad("unknown type " + type);
  size_t next = 0;
  auto attach = [&](BufferDesc& b) {
    if (!b.is_inline()) return;
    if (next >= payloads.size()) bad("fewer payloads than inline buffers");
    const auto& p = payloads[next++];
    b.data = p.data();
    b.size = p.size();
    if (b.compression == Compression::none) {
      b.payload = b.data;
      b.payload_size = b.size;
    } else if (is_image_codec(b.compression)) {
      storage.push_back(b.compression == Compression::jpeg
                            ? encode_jpeg(p.data(), b.width, b.height, b.stride, int(kDefaultLossyQuality))
                            : encode_webp(p.data(), b.width, b.height, b.stride, int(kDefaultLossyQuality)));
      b.payload = storage.back().data();
      b.payload_size = storage.back().size();
    } else if (b.chunk_bytes > 0) {
      // Section 6.3.2: independent frames back to back. A table the header gives is kept as the description of
      // the wire (chunked vectors are decode-only: another compressor's chunk lengths differ); none: filled in.
      std::vector<uint8_t> all;
      std::vector<uint64_t> table;
      for (uint64_t at = 0; at < p.size(); at += b.chunk_bytes) {
        const auto c = compress(b.compression, p.data() + at, std::min<uint64_t>(b.chunk_bytes, p.size() - at), 0,
                                b.shuffle ? bytes_per_pixel(b.format) : 0);
        all.insert(all.end(), c.begin(), c.end());
        table.push_back(c.size());
      }
      if (b.chunks.empty()) b.chunks = std::move(table);
      storage.push_back(std::move(all));
      b.payload = storage.back().data();
      b.payload_size = storage.back().size();
    } else {
      storage.push_back(compress(b.compression, p.data(), p.size(), 0, b.shuffle ? bytes_per_pixel(b.format) : 0));
      b.payload = storage.back().data();
      b.payload_size = storage.back().size();
    }
  };
  storage.reserve(storage.size() + payloads.size());  // views into storage must not move
  Message out;
  switch (*t) {
    case MessageType::hello: {
      Hello m;
      common(h, m);
      m.min_version = u64(at(h, "min_version"));
      m.engine = str(at(h, "engine"));
      m.engine_version = str(at(h, "engine_version"));
      m.client = str(at(h, "client"));
      m.capabilities = strs(at(h, "capabilities"));
      m.render_size = size2(at(h, "render_size"));
      m.output_size = size2(at(h, "output_size"));
      m.buffers = bufspecs(at(h, "buffers"));
      if (auto* x = find(h, "shm")) m.shm = ShmPool{str(at(*x, "name")), u64(at(*x, "slots")), u64(at(*x, "slot_size"))};
      if (auto* x = find(h, "doorbell")) m.doorbell = DoorbellSpec{str(at(*x, "to_renderer")), str(at(*x, "to_engine"))};
      if (auto* x = find(h, "ticket")) m.ticket = str(*x);
      if (auto* x = find(h, "renderer")) m.renderer = str(*x);
      if (auto* x = find(h, "lossy_output"))
        m.lossy_output = Hello::LossyOutput{str(at(*x, "codec")), u64(at(*x, "quality"))};
      out = std::move(m);
      break;
    }
    case MessageType::welcome: {
      Welcome m;
      common(h, m);
      m.session = u64(at(h, "session"));
      m.renderer = str(at(h, "renderer"));
      m.capabilities = strs(at(h, "capabilities"));
      m.required = bufspecs(at(h, "required"));
      m.optional = bufspecs(at(h, "optional"));
      const Json& o = at(h, "output");
      m.output.name = str(at(o, "name"));
      m.output.format = format(at(o, "format"));
      m.output.width = u32(at(o, "width"));
      m.output.height = u32(at(o, "height"));
      m.max_in_flight = u64(at(h, "max_in_flight"));
      m.styles = strs(at(h, "styles"));
      if (auto* x = find(h, "limits"))
        m.limits = WelcomeLimits{u64(at(*x, "frame_bytes")), u64(at(*x, "session_bytes")),
                                 u64(at(*x, "message_bytes")), u64(at(*x, "total_bytes")),
                                 u64(at(*x, "max_pixels")),   u64(at(*x, "sessions")),
                                 u64(at(*x, "sessions_per_peer"))};
      if (auto* x = find(h, "redirect")) m.redirect = Redirect{str(at(*x, "endpoint")), str(at(*x, "ticket"))};
      out = std::move(m);
      break;
    }
    case MessageType::frame: {
      Frame m;
      common(h, m);
      m.session = u64(at(h, "session"));
      m.frame = u64(at(h, "frame"));
      m.time_ns = u64(at(h, "time_ns"));
      m.dt = f64(at(h, "dt"));
      m.deadline_ms = f64(at(h, "deadline_ms"));
      if (auto* x = find(h, "camera")) m.camera = camera(*x);
      for (const auto& b : at(h, "buffers")) m.buffers.push_back(bufdesc(b));
      for (const auto& e : at(h, "events")) m.events.push_back(event(e));
      for (const auto& s : at(h, "styles")) m.styles.push_back(stylecmd(s));
      if (auto* x = find(h, "controls"))
        for (const auto& c : *x) m.controls.push_back(control(c));
      if (auto* x = find(h, "result_slot")) m.result_slot = u64(*x);
      for (auto& b : m.buffers) attach(b);
      out = std::move(m);
      break;
    }
    case MessageType::result: {
      Result m;
      common(h, m);
      m.session = u64(at(h, "session"));
      m.frame = u64(at(h, "frame"));
      const std::string status = str(at(h, "status"));
      if (status == "ok")
        m.status = ResultStatus::ok;
      else if (status == "skipped")
        m.status = ResultStatus::skipped;
      else
        bad("unknown status " + status);
      if (auto* x = find(h, "output")) m.output = bufdesc(*x);
      const Json& tj = at(h, "timing");
      m.timing = {f64(at(tj, "queue_ms")),  f64(at(tj, "decode_ms")), f64(at(tj, "style_ms")),
                  f64(at(tj, "render_ms")), f64(at(tj, "encode_ms")), f64(at(tj, "total_ms"))};
      if (m.output) attach(*m.output);
      out = std::move(m);
      break;
    }
    case MessageType::error: {
      Error m;
      common(h, m);
      m.code = static_cast<ErrorCode>(u64(at(h, "code")));
      m.name = str(at(h, "name"));
      m.message = str(at(h, "message"));
      if (auto* x = find(h, "session")) m.session = u64(*x);
      if (auto* x = find(h, "frame")) m.frame = u64(*x);
      out = std::move(m);
      break;
    }
    case MessageType::ping:
    case MessageType::pong: {
      auto fill = [&](auto& m) {
        common(h, m);
        m.nonce = u64(at(h, "nonce"));
        m.time_ns = u64(at(h, "time_ns"));
      };
      if (*t == MessageType::ping) {
        Ping m;
        fill(m);
        out = std::move(m);
      } else {
        Pong m;
        fill(m);
        out = std::move(m);
      }
      break;
    }
    case MessageType::bye: {
      Bye m;
      common(h, m);
      if (auto* x = find(h, "session")) m.session = u64(*x);
      if (auto* x = find(h, "reason")) m.reason = str(*x);
      out = std::move(m);
      break;
    }
    case MessageType::part: {  // its payload is the chunk's compressed bytes as they are (never compressed here)
      Part m;
      common(h, m);
      m.session = u64(at(h, "session"));
      m.frame = u64(at(h, "frame"));
      m.buffer = str(at(h, "buffer"));
      m.index = u64(at(h, "index"));
      if (next >= payloads.size()) bad("a PART needs its payload");
      m.payload = payloads[next].data();
      m.payload_size = payloads[next].size();
      ++next;
      out = std::move(m);
      break;
    }
  }
  if (next != payloads.size()) bad("more payloads than inline buffers");
  return out;
}

// ----------------------------------------------------------------------------------------------------------------
// message -> JSON (canonical key order)
// ----------------------------------------------------------------------------------------------------------------
namespace detail {

inline std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) s[2 * i] = d[p[i] >> 4], s[2 * i + 1] = d[p[i] & 15];
  return s;
}
inline Json from_msgpack(const msgpack::object& o) {
  using T = msgpack::type::object_type;
  switch (o.type) {
    case T::NIL: return nullptr;
    case T::BOOLEAN: return o.via.boolean;
    case T::POSITIVE_INTEGER: return o.via.u64;
    case T::NEGATIVE_INTEGER: return o.via.i64;
    case T::FLOAT32: case T::FLOAT64: return number(o.via.f64);
    case T::STR: return std::string(o.via.str.ptr, o.via.str.size);
    case T::BIN: {
      Json j = Json::object();
      j["$bin"] = hex(reinterpret_cast<const uint8_t*>(o.via.bin.ptr), o.via.bin.size);
      return j;
    }
    case T::ARRAY: {
      Json j = Json::array();
      for (uint32_t i = 0; i < o.via.array.size; ++i) j.push_back(from_msgpack(o.via.array.ptr[i]));
      return j;
    }
    case T::MAP: {
      Json j = Json::object();
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        j[std::string(kv.key.via.str.ptr, kv.key.via.str.size)] = from_msgpack(kv.val);
      }
      return j;
    }
    default: bad("ext in params");
  }
}
inline Json params_json(const std::vector<uint8_t>& p) {
  if (p.empty()) return Json::object();
  auto oh = msgpack::unpack(reinterpret_cast<const char*>(p.data()), p.size());
  return from_msgpack(oh.get());
}
template <size_t N>
inline Json floats_json(const std::array<double, N>& a) {
  Json j = Json::array();
  for (double d : a) j.push_back(number(d));
  return j;
}
inline Json size_json(const Size2& s) { return Json::array({s.width, s.height}); }
inline Json bufspec_json(const BufferSpec& b) {
  Json j = Json::object();
  j["name"] = b.name;
  j["format"] = std::string(format_name(b.format));
  return j;
}
inline Json bufspecs_json(const std::vector<BufferSpec>& v) {
  Json j = Json::array();
  for (const auto& b : v) j.push_back(bufspec_json(b));
  return j;
}
inline Json bufdesc_json(const BufferDesc& b) {
  Json j = Json::object();
  j["name"] = b.name;
  j["format"] = std::string(format_name(b.format));
  j["width"] = b.width;
  j["height"] = b.height;
  j["stride"] = b.stride;
  if (b.compression != Compression::none) j["compression"] = std::string(compression_name(b.compression));
  if (!b.chunks.empty()) {
    j["chunks"] = b.chunks;
    j["chunk_bytes"] = b.chunk_bytes;
  }
  if (b.shuffle) j["filter"] = "shuffle";
  if (b.streamed) j["streamed"] = true;
  if (b.depth_reversed) j["depth_reversed"] = *b.depth_reversed;
  if (b.depth_infinite) j["depth_infinite"] = *b.depth_infinite;
  if (b.shm) {
    Json s = Json::object();
    s["slot"] = b.shm->slot;
    s["offset"] = b.shm->offset;
    j["shm"] = s;
  }
  return j;
}
inline Json target_json(const Target& t) {
  Json j = Json::object();
  j["scope"] = std::string(scope_name(t.scope));
  j["ids"] = Json::array();
  for (uint32_t id : t.ids) j["ids"].push_back(id);
  return j;
}
inline Json camera_json(const Camera& c) {
  Json j = Json::object();
  if (c.view_to_clip) j["view_to_clip"] = floats_json(*c.view_to_clip);
  if (c.clip_to_view) j["clip_to_view"] = floats_json(*c.clip_to_view);
  if (c.clip_to_prev_clip) j["clip_to_prev_clip"] = floats_json(*c.clip_to_prev_clip);
  if (c.prev_clip_to_clip) j["prev_clip_to_clip"] = floats_json(*c.prev_clip_to_clip);
  if (c.world_to_view) j["world_to_view"] = floats_json(*c.world_to_view);
  if (c.position) j["position"] = floats_json(*c.position);
  if (c.up) j["up"] = floats_json(*c.up);
  if (c.right) j["right"] = floats_json(*c.right);
  if (c.forward) j["forward"] = floats_json(*c.forward);
  if (c.near_plane) j["near"] = number(*c.near_plane);
  if (c.far_plane) j["far"] = number(*c.far_plane);
  if (c.fov_y) j["fov_y"] = number(*c.fov_y);
  if (c.aspect) j["aspect"] = number(*c.aspect);
  if (c.jitter) j["jitter"] = floats_json(*c.jitter);
  if (c.mv_scale) j["mv_scale"] = floats_json(*c.mv_scale);
  if (c.depth_inverted) j["depth_inverted"] = *c.depth_inverted;
  if (c.depth_infinite) j["depth_infinite"] = *c.depth_infinite;
  if (c.mv_jittered) j["mv_jittered"] = *c.mv_jittered;
  if (c.mv_3d) j["mv_3d"] = *c.mv_3d;
  if (c.mv_dilated) j["mv_dilated"] = *c.mv_dilated;
  if (c.camera_motion_included) j["camera_motion_included"] = *c.camera_motion_included;
  if (c.orthographic) j["orthographic"] = *c.orthographic;
  if (c.reset) j["reset"] = *c.reset;
  if (c.pre_exposure) j["pre_exposure"] = number(*c.pre_exposure);
  if (c.tone_mapping) j["tone_mapping"] = std::string(tone_mapping_name(*c.tone_mapping));
  if (c.render_size) j["render_size"] = size_json(*c.render_size);
  if (c.output_size) j["output_size"] = size_json(*c.output_size);
  return j;
}
inline Json head(const Common& c, MessageType t) {
  Json j = Json::object();
  j["nrb"] = c.nrb;
  j["type"] = std::string(type_name(t));
  return j;
}
inline void tail(Json& j, const Common& c) {
  if (c.must_understand) j["must_understand"] = *c.must_understand;
}

}  // namespace detail

// The header of `m` as JSON in canonical key order (the "header" of a vector).
inline Json message_to_json(const Message& msg) {
  using namespace detail;
  Json j;
  std::visit(
      [&](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        j = head(m, message_type(msg));
        if constexpr (std::is_same_v<M, Hello>) {
          j["min_version"] = m.min_version;
          j["engine"] = m.engine;
          j["engine_version"] = m.engine_version;
          j["client"] = m.client;
          j["capabilities"] = m.capabilities;
          j["render_size"] = size_json(m.render_size);
          j["output_size"] = size_json(m.output_size);
          j["buffers"] = bufspecs_json(m.buffers);
          if (m.shm) {
            Json s = Json::object();
            s["name"] = m.shm->name;
            s["slots"] = m.shm->slots;
            s["slot_size"] = m.shm->slot_size;
            j["shm"] = s;
          }
          if (m.doorbell) {
            Json d = Json::object();
            d["to_renderer"] = m.doorbell->to_renderer;
            d["to_engine"] = m.doorbell->to_engine;
            j["doorbell"] = d;
          }
          if (m.ticket) j["ticket"] = *m.ticket;
          if (m.renderer) j["renderer"] = *m.renderer;
          if (m.lossy_output) {
            Json l = Json::object();
            l["codec"] = m.lossy_output->codec;
            l["quality"] = m.lossy_output->quality;
            j["lossy_output"] = l;
          }
        } else if constexpr (std::is_same_v<M, Welcome>) {
          j["session"] = m.session;
          j["renderer"] = m.renderer;
          j["capabilities"] = m.capabilities;
          j["required"] = bufspecs_json(m.required);
          j["optional"] = bufspecs_json(m.optional);
          Json o = Json::object();
          o["name"] = m.output.name;
          o["format"] = std::string(format_name(m.output.format));
          o["width"] = m.output.width;
          o["height"] = m.output.height;
          j["output"] = o;
          j["max_in_flight"] = m.max_in_flight;
          j["styles"] = m.styles;
          if (m.limits) {
            Json l = Json::object();
            l["frame_bytes"] = m.limits->frame_bytes;
            l["session_bytes"] = m.limits->session_bytes;
            l["message_bytes"] = m.limits->message_bytes;
            l["total_bytes"] = m.limits->total_bytes;
            l["max_pixels"] = m.limits->max_pixels;
            l["sessions"] = m.limits->sessions;
            l["sessions_per_peer"] = m.limits->sessions_per_peer;
            j["limits"] = l;
          }
          if (m.redirect) {
            Json r = Json::object();
            r["endpoint"] = m.redirect->endpoint;
            r["ticket"] = m.redirect->ticket;
            j["redirect"] = r;
          }
        } else if constexpr (std::is_same_v<M, Frame>) {
          j["session"] = m.session;
          j["frame"] = m.frame;
          j["time_ns"] = m.time_ns;
          j["dt"] = number(m.dt);
          j["deadline_ms"] = number(m.deadline_ms);
          if (m.camera) j["camera"] = camera_json(*m.camera);
          j["buffers"] = Json::array();
          for (const auto& b : m.buffers) j["buffers"].push_back(bufdesc_json(b));
          j["events"] = Json::array();
          for (const auto& e : m.events) {
            Json ej = Json::object();
            ej["name"] = e.name;
            ej["params"] = params_json(e.params);
            ej["target"] = target_json(e.target);
            j["events"].push_back(ej);
          }
          j["styles"] = Json::array();
          for (const auto& s : m.styles) {
            Json sj = Json::object();
            sj["style"] = s.style;
            sj["strength"] = number(s.strength);
            sj["over"] = number(s.over);
            sj["target"] = target_json(s.target);
            if (s.params) {
              Json pj = Json::object();
              for (const auto& p : *s.params) {
                if (p.kind == StyleParam::Kind::text)
                  pj[p.key] = p.text;
                else if (p.kind == StyleParam::Kind::rgb)
                  pj[p.key] = floats_json(p.value);
                else
                  pj[p.key] = number(p.value[0]);
              }
              sj["params"] = pj;
            }
            j["styles"].push_back(sj);
          }
          if (!m.controls.empty()) {
            j["controls"] = Json::array();
            for (const auto& c : m.controls) {
              Json cj = Json::object();
              cj["control"] = std::string(control_name(c.control));
              cj["value"] = number(c.value);
              cj["over"] = number(c.over);
              cj["target"] = target_json(c.target);
              j["controls"].push_back(cj);
            }
          }
          if (m.result_slot) j["result_slot"] = *m.result_slot;
        } else if constexpr (std::is_same_v<M, Result>) {
          j["session"] = m.session;
          j["frame"] = m.frame;
          j["status"] = m.status == ResultStatus::ok ? "ok" : "skipped";
          if (m.output) j["output"] = bufdesc_json(*m.output);
          Json t = Json::object();
          t["queue_ms"] = number(m.timing.queue_ms);
          t["decode_ms"] = number(m.timing.decode_ms);
          t["style_ms"] = number(m.timing.style_ms);
          t["render_ms"] = number(m.timing.render_ms);
          t["encode_ms"] = number(m.timing.encode_ms);
          t["total_ms"] = number(m.timing.total_ms);
          j["timing"] = t;
        } else if constexpr (std::is_same_v<M, Error>) {
          j["code"] = static_cast<uint64_t>(m.code);
          j["name"] = m.name;
          j["message"] = m.message;
          if (m.session) j["session"] = *m.session;
          if (m.frame) j["frame"] = *m.frame;
        } else if constexpr (std::is_same_v<M, Ping> || std::is_same_v<M, Pong>) {
          j["nonce"] = m.nonce;
          j["time_ns"] = m.time_ns;
        } else if constexpr (std::is_same_v<M, Bye>) {
          if (m.session) j["session"] = *m.session;
          if (m.reason) j["reason"] = *m.reason;
        } else if constexpr (std::is_same_v<M, Part>) {
          j["session"] = m.session;
          j["frame"] = m.frame;
          j["buffer"] = m.buffer;
          j["index"] = m.index;
        }
        tail(j, m);
      },
      msg);
  return j;
}

// The pixel bytes of each inline buffer of a decoded message, in descriptor order (decompressed where the wire
// payload was compressed; a streamed one has none), or a PART's payload as it is (sections 6.3.4, 6.3.5): what a
// vector's "payloads" lists.
inline std::vector<Bytes> inline_pixels(const Message& msg) {
  std::vector<Bytes> out;
  if (auto* f = std::get_if<Frame>(&msg)) {
    for (const auto& b : f->buffers)
      if (b.is_inline()) out.emplace_back(b.data, b.size);
  } else if (auto* r = std::get_if<Result>(&msg)) {
    if (r->output && r->output->is_inline()) out.emplace_back(r->output->data, r->output->size);
  } else if (auto* p = std::get_if<Part>(&msg)) {
    out.emplace_back(p->payload, p->payload_size);
  }
  return out;
}

// Decode options from a vector's "context" (absent: both compressions, no pool). `pool` receives the pool.
inline DecodeOptions options_from_context(const Json* context, ShmPool& pool) {
  DecodeOptions o;
  o.allow_lz4 = o.allow_zstd = true;
  if (!context) return o;
  if (auto* c = detail::find(*context, "compression")) {
    o.allow_lz4 = o.allow_zstd = o.allow_jpeg = o.allow_webp = false;
    for (const auto& x : *c) {
      if (x == "lz4") o.allow_lz4 = true;
      if (x == "zstd") o.allow_zstd = true;
      if (x == "jpeg") o.allow_jpeg = true;
      if (x == "webp") o.allow_webp = true;
      if (x == "chunked") o.allow_chunked = true;
      if (x == "shuffle") o.allow_shuffle = true;
      if (x == "streamed_output") o.allow_streamed_output = true;
      if (x == "streamed_frames") o.allow_streamed_frames = true;
    }
  }
  if (auto* p = detail::find(*context, "shm_pool"); p && !p->is_null()) {
    pool = ShmPool{detail::str(detail::at(*p, "name")), detail::u64(detail::at(*p, "slots")),
                   detail::u64(detail::at(*p, "slot_size"))};
    o.shm_pool = &pool;
  }
  return o;
}

}  // namespace nrb::wire::json
