// bridge._native.Client: the engine-side client (libnrb's C ABI through nrb.hpp) for Python: the Panda3D plugin,
// tests and benchmarks. numpy arrays in (tag_buffer copies C-contiguous or row-strided arrays) and out
// (acquire_result returns a zero-copy view that keeps the result acquired while the array lives). Every call that
// can wait or take a lock releases the GIL; the log callback re-acquires it on the client's I/O thread.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nrb/nrb.hpp"  // public headers only: the params encoder and the constants are libnrb's (nrb.h)

namespace py = pybind11;

namespace {

nrb_format format_from(const std::string& name) {
  for (nrb_format f = NRB_FORMAT_RGBA8; f <= NRB_FORMAT_R32U; ++f)
    if (name == nrb_format_name(f)) return f;
  throw py::value_error("unknown format \"" + name + "\" (rgba8, rgba8_srgb, rgba16f, rgba32f, rg8, rg16f, rg32f, "
                        "r8, r16f, r32f, r16u, r32u)");
}

struct FormatLayout {
  uint32_t channels;
  uint32_t channel_bytes;
  py::dtype dtype;
};

FormatLayout layout_of(nrb_format f) {
  switch (f) {
    case NRB_FORMAT_RGBA8:
    case NRB_FORMAT_RGBA8_SRGB: return {4, 1, py::dtype("uint8")};
    case NRB_FORMAT_RGBA16F: return {4, 2, py::dtype("float16")};
    case NRB_FORMAT_RGBA32F: return {4, 4, py::dtype("float32")};
    case NRB_FORMAT_RG8: return {2, 1, py::dtype("uint8")};
    case NRB_FORMAT_RG16F: return {2, 2, py::dtype("float16")};
    case NRB_FORMAT_RG32F: return {2, 4, py::dtype("float32")};
    case NRB_FORMAT_R8: return {1, 1, py::dtype("uint8")};
    case NRB_FORMAT_R16F: return {1, 2, py::dtype("float16")};
    case NRB_FORMAT_R32F: return {1, 4, py::dtype("float32")};
    case NRB_FORMAT_R16U: return {1, 2, py::dtype("uint16")};
    case NRB_FORMAT_R32U: return {1, 4, py::dtype("uint32")};
    default: throw py::value_error("unknown format");
  }
}

// A numpy view (h, w[, c]) over `data` with row pitch `stride`; `base` keeps the memory alive.
py::array view_of(void* data, nrb_format f, uint32_t width, uint32_t height, uint32_t stride, py::handle base) {
  FormatLayout l = layout_of(f);
  std::vector<py::ssize_t> shape{py::ssize_t(height), py::ssize_t(width)};
  std::vector<py::ssize_t> strides{py::ssize_t(stride), py::ssize_t(l.channels * l.channel_bytes)};
  if (l.channels > 1) {
    shape.push_back(l.channels);
    strides.push_back(l.channel_bytes);
  }
  return py::array(l.dtype, shape, strides, data, base);
}

nrb_scope scope_from(const std::string& s) {
  if (s == "global") return NRB_SCOPE_GLOBAL;
  if (s == "material") return NRB_SCOPE_MATERIAL;
  if (s == "object") return NRB_SCOPE_OBJECT;
  throw py::value_error("target scope must be \"global\", \"material\" or \"object\"");
}

// target: None | "global" | (scope, ids) | {"scope": ..., "ids": [...]}
std::pair<nrb_scope, std::vector<uint32_t>> target_from(const py::object& t) {
  if (t.is_none()) return {NRB_SCOPE_GLOBAL, {}};
  if (py::isinstance<py::str>(t)) return {scope_from(t.cast<std::string>()), {}};
  if (py::isinstance<py::dict>(t)) {
    py::dict d = t.cast<py::dict>();
    std::string scope = d.contains("scope") ? d["scope"].cast<std::string>() : "global";
    std::vector<uint32_t> ids = d.contains("ids") ? d["ids"].cast<std::vector<uint32_t>>() : std::vector<uint32_t>{};
    return {scope_from(scope), ids};
  }
  auto tup = t.cast<std::pair<std::string, std::vector<uint32_t>>>();
  return {scope_from(tup.first), tup.second};
}

// Python value -> typed params (section 3.2 values) through nrb_params: libnrb encodes them and checks depth, size
// and keys at the value that breaks them (nrb::error, a ValueError here).
void write_value(nrb::params& p, const char* key, const py::handle& v) {
  if (v.is_none()) {
    p.set_nil(key);
  } else if (py::isinstance<py::bool_>(v)) {
    p.set_bool(key, v.cast<bool>());
  } else if (py::isinstance<py::int_>(v)) {
    py::int_ i = v.cast<py::int_>();
    if (i >= py::int_(0))
      p.set_uint(key, v.cast<uint64_t>());
    else
      p.set_int(key, v.cast<int64_t>());
  } else if (py::isinstance<py::float_>(v)) {
    p.set_float(key, v.cast<double>());
  } else if (py::isinstance<py::str>(v)) {
    p.set_string(key, v.cast<std::string>());
  } else if (py::isinstance<py::bytes>(v) || py::isinstance<py::bytearray>(v)) {
    std::string b = v.cast<std::string>();
    p.set_bytes(key, b.data(), b.size());
  } else if (py::isinstance<py::dict>(v)) {
    p.begin_map(key);
    for (auto kv : v.cast<py::dict>()) {
      if (!py::isinstance<py::str>(kv.first)) throw py::type_error("event params keys must be str");
      write_value(p, kv.first.cast<std::string>().c_str(), kv.second);
    }
    p.end();
  } else if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
    p.begin_array(key);
    for (auto item : v.cast<py::sequence>()) write_value(p, nullptr, item);
    p.end();
  } else if (py::hasattr(v, "item")) {  // numpy scalars
    write_value(p, key, v.attr("item")());
  } else {
    throw py::type_error("event params values must be None, bool, int, float, str, bytes, list or dict");
  }
}

// params: None (the empty map), a dict (typed), or msgpack bytes (passed through, validated by libnrb).
std::optional<nrb::params> params_from(const py::object& params) {
  if (params.is_none() || py::isinstance<py::bytes>(params)) return std::nullopt;
  if (!py::isinstance<py::dict>(params)) throw py::type_error("params must be a dict (or msgpack bytes)");
  nrb::params p;
  for (auto kv : params.cast<py::dict>()) {
    if (!py::isinstance<py::str>(kv.first)) throw py::type_error("event params keys must be str");
    write_value(p, kv.first.cast<std::string>().c_str(), kv.second);
  }
  return p;
}

template <size_t N>
void set_array(double (&dst)[N], const py::handle& v, const char* key) {
  py::array_t<double, py::array::c_style | py::array::forcecast> a = py::array_t<double>::ensure(v);
  if (!a || static_cast<size_t>(a.size()) != N)
    throw py::value_error(std::string("camera.") + key + " needs " + std::to_string(N) + " numbers");
  std::memcpy(dst, a.data(), sizeof dst);
}

void set_size(uint32_t& w, uint32_t& h, const py::handle& v) {
  auto p = v.cast<std::pair<uint32_t, uint32_t>>();
  w = p.first;
  h = p.second;
}

// A camera tone_mapping name ("aces", ...) as its NRB_TONE_MAPPING_* constant.
nrb_tone_mapping tone_mapping_from(const std::string& name) {
  for (nrb_tone_mapping t = NRB_TONE_MAPPING_NONE; t <= NRB_TONE_MAPPING_COUNT; ++t)
    if (name == nrb_tone_mapping_name(t)) return t;
  throw py::value_error("camera.tone_mapping \"" + name + "\" is not one of none, clamp, reinhard, aces, agx, other");
}

nrb_camera camera_from(const py::dict& d) {
  nrb_camera c;
  nrb_camera_init(&c);
  for (auto kv : d) {
    std::string k = kv.first.cast<std::string>();
    py::handle v = kv.second;
    if (v.is_none()) continue;
    if (k == "view_to_clip") set_array(c.view_to_clip, v, "view_to_clip");
    else if (k == "clip_to_view") set_array(c.clip_to_view, v, "clip_to_view");
    else if (k == "clip_to_prev_clip") set_array(c.clip_to_prev_clip, v, "clip_to_prev_clip");
    else if (k == "prev_clip_to_clip") set_array(c.prev_clip_to_clip, v, "prev_clip_to_clip");
    else if (k == "world_to_view") set_array(c.world_to_view, v, "world_to_view");
    else if (k == "position") set_array(c.position, v, "position");
    else if (k == "up") set_array(c.up, v, "up");
    else if (k == "right") set_array(c.right, v, "right");
    else if (k == "forward") set_array(c.forward, v, "forward");
    else if (k == "near") c.near_plane = v.cast<double>();
    else if (k == "far") c.far_plane = v.cast<double>();
    else if (k == "fov_y") c.fov_y = v.cast<double>();
    else if (k == "aspect") c.aspect = v.cast<double>();
    else if (k == "jitter") set_array(c.jitter, v, "jitter");
    else if (k == "mv_scale") set_array(c.mv_scale, v, "mv_scale");
    else if (k == "depth_inverted") c.depth_inverted = v.cast<bool>();
    else if (k == "depth_infinite") c.depth_infinite = v.cast<bool>();
    else if (k == "mv_jittered") c.mv_jittered = v.cast<bool>();
    else if (k == "mv_3d") c.mv_3d = v.cast<bool>();
    else if (k == "mv_dilated") c.mv_dilated = v.cast<bool>();
    else if (k == "camera_motion_included") c.camera_motion_included = v.cast<bool>();
    else if (k == "orthographic") c.orthographic = v.cast<bool>();
    else if (k == "reset") c.reset = v.cast<bool>();
    else if (k == "pre_exposure") c.pre_exposure = v.cast<double>();
    else if (k == "tone_mapping") c.tone_mapping = tone_mapping_from(v.cast<std::string>());
    else if (k == "render_size") set_size(c.render_width, c.render_height, v);
    else if (k == "output_size") set_size(c.output_width, c.output_height, v);
    else throw py::key_error("unknown camera key \"" + k + "\" (docs/protocol.md section 8)");
  }
  return c;
}

void set_floats(float (&dst)[3], const py::handle& v, const std::string& key) {
  py::array_t<double, py::array::c_style | py::array::forcecast> a = py::array_t<double>::ensure(v);
  if (!a || a.size() != 3) throw py::value_error(key + " needs 3 numbers");
  for (int k = 0; k < 3; ++k) dst[k] = static_cast<float>(a.data()[k]);
}

// One light as a dict (bridge.lights.Light's fields): type "point" | "spot" | "directional", color, position,
// direction, range, inner, outer (radians). Unknown keys are a KeyError; the values are checked by libnrb.
nrb_light light_from(const py::handle& h, size_t i) {
  const std::string at = "lights[" + std::to_string(i) + "]";
  if (!py::isinstance<py::dict>(h)) throw py::type_error(at + " is not a dict");
  nrb_light l;
  nrb_light_init(&l);
  bool typed = false;
  for (auto kv : h.cast<py::dict>()) {
    std::string k = kv.first.cast<std::string>();
    py::handle v = kv.second;
    if (k == "type" || k == "kind") {
      std::string t = v.cast<std::string>();
      if (t == "point") l.type = NRB_LIGHT_POINT;
      else if (t == "spot") l.type = NRB_LIGHT_SPOT;
      else if (t == "directional") l.type = NRB_LIGHT_DIRECTIONAL;
      else throw py::value_error(at + ".type \"" + t + "\" is not point, spot or directional");
      typed = true;
    } else if (k == "color") set_floats(l.color, v, at + ".color");
    else if (k == "position") set_floats(l.position, v, at + ".position");
    else if (k == "direction") set_floats(l.direction, v, at + ".direction");
    else if (k == "range") l.range = v.cast<float>();
    else if (k == "inner") l.inner_cone = v.cast<float>();
    else if (k == "outer") l.outer_cone = v.cast<float>();
    else throw py::key_error("unknown light key \"" + k + "\" (type, color, position, direction, range, inner, outer)");
  }
  if (!typed) throw py::value_error(at + " has no type");
  return l;
}

bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

const char* state_name(nrb_connection_state s) {
  switch (s) {
    case NRB_STATE_DISABLED: return "disabled";
    case NRB_STATE_CONNECTING: return "connecting";
    case NRB_STATE_CONNECTED: return "connected";
    case NRB_STATE_REFUSED: return "refused";
    default: return "unknown";
  }
}

nrb_link link_from(const std::string& s) {
  if (s == "auto") return NRB_LINK_AUTO;
  if (s == "local") return NRB_LINK_LOCAL;
  if (s == "remote") return NRB_LINK_REMOTE;
  throw py::value_error("link must be \"auto\", \"local\" or \"remote\"");
}

const char* compression_str(nrb_compression c) {
  return c == NRB_COMPRESSION_LZ4 ? "lz4" : c == NRB_COMPRESSION_ZSTD ? "zstd" : "none";
}

// bridge._native.Client: the binding of libnrb's client for Python (the Panda3D plugin's only engine client).
// Owns the nrb::client and the Python log callable. Destruction and every blocking call release the GIL, so the
// I/O thread can finish a log callback (which needs the GIL) while we wait for it.
class ClientBinding {
 public:
  explicit ClientBinding(py::kwargs kw) {
    nrb::client_config cfg;
    auto take = [&](const char* key) -> py::object {
      if (!kw.contains(key)) return py::none();
      py::object v = kw[key];
      PyDict_DelItemString(kw.ptr(), key);
      return v;
    };
    py::object v;
    if (!(v = take("endpoint")).is_none()) cfg.endpoint(v.cast<std::string>());
    if (!(v = take("transport")).is_none()) {
      std::string t = v.cast<std::string>();
      if (t == "auto") cfg->transport = NRB_TRANSPORT_AUTO;
      else if (t == "inline" || t == "zmq" || t == "tcp" || t == "ipc") cfg->transport = NRB_TRANSPORT_INLINE;
      else if (t == "shm") cfg->transport = NRB_TRANSPORT_SHM;
      else throw py::value_error("transport must be \"auto\", \"inline\" or \"shm\"");
    }
    if (!(v = take("frames_in_flight")).is_none()) cfg->frames_in_flight = v.cast<uint32_t>();
    if (!(v = take("deadline_ms")).is_none()) cfg->deadline_ms = v.cast<double>();
    if (!(v = take("connect_timeout_ms")).is_none()) cfg->connect_timeout_ms = v.cast<uint32_t>();
    if (!(v = take("handshake_timeout_ms")).is_none()) cfg->handshake_timeout_ms = v.cast<uint32_t>();
    if (!(v = take("server_timeout_ms")).is_none()) cfg->server_timeout_ms = v.cast<uint32_t>();
    if (!(v = take("ping_interval_ms")).is_none()) cfg->ping_interval_ms = v.cast<uint32_t>();
    if (!(v = take("reconnect_backoff_min_ms")).is_none()) cfg->reconnect_backoff_min_ms = v.cast<uint32_t>();
    if (!(v = take("reconnect_backoff_max_ms")).is_none()) cfg->reconnect_backoff_max_ms = v.cast<uint32_t>();
    std::string curve[3];  // empty: not given (libnrb: all three or none)
    if (!(v = take("curve_server_key")).is_none()) curve[0] = v.cast<std::string>();
    if (!(v = take("curve_public_key")).is_none()) curve[1] = v.cast<std::string>();
    if (!(v = take("curve_secret_key")).is_none()) curve[2] = v.cast<std::string>();
    if (!curve[0].empty() || !curve[1].empty() || !curve[2].empty()) cfg.curve_keys(curve[0], curve[1], curve[2]);
    std::string engine = "python", engine_version;
    if (!(v = take("engine")).is_none()) engine = v.cast<std::string>();
    if (!(v = take("engine_version")).is_none()) engine_version = v.cast<std::string>();
    cfg.engine(engine, engine_version);
    if (!(v = take("render_size")).is_none()) set_size(cfg->render_width, cfg->render_height, v);
    if (!(v = take("output_size")).is_none()) set_size(cfg->output_width, cfg->output_height, v);
    if (!(v = take("buffers")).is_none()) {
      for (auto item : v) {
        auto p = item.cast<std::pair<std::string, std::string>>();
        cfg.buffer(p.first, format_from(p.second));
      }
    }
    if (!(v = take("compression")).is_none()) {
      std::string c = v.cast<std::string>();
      if (c == "auto") cfg->compression = NRB_COMPRESSION_NONE;  // the link's: lz4 on a remote link
      else if (c == "none") cfg->compression = NRB_COMPRESSION_OFF;
      else if (c == "lz4") cfg->compression = NRB_COMPRESSION_LZ4;
      else if (c == "zstd") cfg->compression = NRB_COMPRESSION_ZSTD;
      else throw py::value_error("compression must be \"auto\", \"none\", \"lz4\" or \"zstd\"");
    }
    if (!(v = take("compression_level")).is_none()) cfg->compression_level = v.cast<int32_t>();
    if (!(v = take("shm_slots")).is_none()) cfg->shm_slots = v.cast<uint32_t>();
    if (!(v = take("renderer")).is_none()) cfg.renderer(v.cast<std::string>());
    if (!(v = take("lossy_quality")).is_none()) cfg->lossy_quality = v.cast<uint32_t>();
    if (!(v = take("lossy_codec")).is_none()) {
      const std::string codec = v.cast<std::string>();
      if (codec != "jpeg" && codec != "webp") throw py::value_error("lossy_codec must be \"jpeg\" or \"webp\"");
      cfg->lossy_codec = codec == "webp" ? NRB_LOSSY_CODEC_WEBP : NRB_LOSSY_CODEC_JPEG;
    }
    if (!(v = take("enabled")).is_none()) cfg->start_disabled = v.cast<bool>() ? 0u : 1u;
    if (!(v = take("link")).is_none()) cfg->link = link_from(v.cast<std::string>());
    if (!(v = take("exact_formats")).is_none()) cfg->exact_formats = v.cast<bool>() ? 1u : 0u;
    cfg->log_level = NRB_LOG_INFO;  // the Python API's documented default ("info")
    if (!(v = take("log_level")).is_none()) {
      std::string l = v.cast<std::string>();
      cfg->log_level = l == "debug" ? NRB_LOG_DEBUG : l == "info" ? NRB_LOG_INFO : l == "warning" ? NRB_LOG_WARNING
                                                                                                   : NRB_LOG_ERROR;
    }
    if (!(v = take("log")).is_none()) {
      log_ = std::make_shared<py::function>(v.cast<py::function>());
      std::weak_ptr<py::function> weak = log_;
      cfg.log([weak](nrb_log_level level, const char* msg) {
        if (!Py_IsInitialized() || finalizing()) return;
        py::gil_scoped_acquire gil;
        auto fn = weak.lock();
        if (!fn) return;
        try {
          (*fn)(static_cast<int>(level), std::string(msg));
        } catch (py::error_already_set& e) {
          e.discard_as_unraisable("bridge._native.Client log callback");
        }
      });
    }
    if (!kw.empty()) {
      std::string names;
      for (auto kv : kw) names += (names.empty() ? "" : ", ") + kv.first.cast<std::string>();
      throw py::type_error("Client() got unexpected keyword arguments: " + names);
    }
    py::gil_scoped_release nogil;
    client_ = std::make_shared<nrb::client>(cfg);
  }

  ~ClientBinding() { close(); }

  // Arrays returned by acquire_result share ownership of the client (their pixels belong to it): close() stops
  // all traffic at once, and the client itself goes when the last of them does.
  void close() {
    if (!client_) return;
    {
      py::gil_scoped_release nogil;
      if (client_.use_count() > 1) {
        try {
          client_->set_enabled(false);
        } catch (...) {
        }
      }
      client_.reset();
    }
  }

  nrb::client& c() {
    if (!client_) throw std::runtime_error("the client is closed");
    return *client_;
  }

  struct Held {
    std::shared_ptr<nrb::client> client;  // declared first: destroyed after the result is released
    nrb::result result;
  };

  uint64_t begin(double dt, double deadline_ms) {
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    return cl.begin(dt, deadline_ms);
  }

  bool frame_live() { return c().frame_live(); }
  bool sending() { return c().sending(); }

  void tag_buffer(const std::string& name, const std::string& format, py::array a, bool depth_reversed,
                  bool depth_infinite) {
    nrb::client& cl = c();
    nrb_format f = format_from(format);
    FormatLayout l = layout_of(f);
    if (!a.dtype().is(l.dtype))
      throw py::type_error("buffer \"" + name + "\": format " + format + " needs dtype " +
                           py::str(l.dtype).cast<std::string>() + ", got " + py::str(a.dtype()).cast<std::string>());
    bool has_c = a.ndim() == 3;
    if (!(a.ndim() == 2 && l.channels == 1) && !(has_c && a.shape(2) == l.channels))
      throw py::value_error("buffer \"" + name + "\": expected shape (height, width" +
                            (l.channels > 1 ? ", " + std::to_string(l.channels) : std::string()) + ")");
    // Rows may be strided; pixels within a row must be packed. Anything else is packed first.
    py::ssize_t px = l.channels * l.channel_bytes;
    bool packed_rows = a.strides(1) == px && (!has_c || a.strides(2) == py::ssize_t(l.channel_bytes)) &&
                       a.strides(0) >= px * a.shape(1);
    if (!packed_rows) a = py::array::ensure(a, py::array::c_style);
    uint32_t flags = (depth_reversed ? NRB_BUFFER_DEPTH_REVERSED : 0) | (depth_infinite ? NRB_BUFFER_DEPTH_INFINITE : 0);
    auto h = static_cast<uint32_t>(a.shape(0)), w = static_cast<uint32_t>(a.shape(1));
    auto stride = static_cast<uint32_t>(a.strides(0));
    const void* data = a.data();
    py::gil_scoped_release nogil;  // `a` stays referenced by this frame
    cl.tag_buffer(name.c_str(), f, w, h, data, stride, flags);
  }

  py::array acquire_slot(py::object self, const std::string& name, const std::string& format, uint32_t width,
                         uint32_t height, bool depth_reversed, bool depth_infinite) {
    nrb::client& cl = c();
    nrb_format f = format_from(format);
    uint32_t flags = (depth_reversed ? NRB_BUFFER_DEPTH_REVERSED : 0) | (depth_infinite ? NRB_BUFFER_DEPTH_INFINITE : 0);
    nrb::slot s{};
    {
      py::gil_scoped_release nogil;
      s = cl.acquire_slot(name.c_str(), f, width, height, 0, flags);
    }
    return view_of(s.data, f, width, height, s.stride, self);
  }

  void set_camera(const py::dict& d) {
    nrb_camera cam = camera_from(d);
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    cl.set_camera(cam);
  }

  void set_lights(const py::sequence& seq) {
    std::vector<nrb_light> lights;
    for (size_t i = 0; i < seq.size(); ++i) lights.push_back(light_from(seq[i], i));
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    cl.set_lights(lights.data(), static_cast<uint32_t>(lights.size()));
  }

  void submit() {
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    cl.submit();
  }

  void fire_event(const std::string& name, const py::object& params, const py::object& target) {
    std::optional<nrb::params> typed = params_from(params);
    std::string raw = py::isinstance<py::bytes>(params) ? params.cast<std::string>() : std::string();
    auto t = target_from(target);
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    if (typed)
      cl.fire_event(name, *typed, t.first, t.second);
    else
      cl.fire_event(name, raw, t.first, t.second);
  }

  void set_style(const std::string& style, double strength, double over, const py::object& target) {
    auto t = target_from(target);
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    cl.set_style(style, strength, over, t.first, t.second);
  }

  void set_style_params(const std::string& style, const py::object& params, double strength, double over,
                        const py::object& target) {
    std::optional<nrb::params> typed = params_from(params);
    if (!typed && !params.is_none()) throw py::type_error("style params must be a dict");
    if (!typed) typed.emplace();
    auto t = target_from(target);
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    cl.set_style_params(style, *typed, strength, over, t.first, t.second);
  }

  void set_intensity(double value, double over) {
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    cl.set_intensity(value, over);
  }

  void exclude(const py::object& target, bool excluded) {
    auto t = target_from(target);
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    cl.exclude(t.first, t.second, excluded);
  }

  py::object acquire_result(bool with_info, bool copy) {
    nrb::client& cl = c();
    auto held = std::make_unique<nrb::result>();
    {
      py::gil_scoped_release nogil;
      *held = cl.acquire_result();
    }
    if (!*held) return py::none();
    const nrb::result& r = *held;
    py::dict info;
    info["frame_id"] = r.frame_id();
    info["age_frames"] = r.age_frames();
    info["round_trip_ms"] = r.round_trip_ms();
    info["server_ms"] = r.server_ms();
    info["format"] = std::string(nrb_format_name(r.format()));
    py::array arr;
    void* px = const_cast<void*>(r.pixels());
    if (copy) {
      py::array view = view_of(px, r.format(), r.width(), r.height(), r.stride(), py::none());
      arr = view.attr("copy")();  // while still acquired; released when `held` goes
    } else {
      // The capsule owns the acquisition (and a share of the client): the pixels stay valid exactly as long as the
      // array or a view of it.
      auto* hold = new Held{client_, std::move(*held)};
      py::capsule owner(hold, [](void* p) {
        auto* h = static_cast<Held*>(p);
        if (Py_IsInitialized() && !finalizing()) {
          py::gil_scoped_release nogil;  // the last share may stop the I/O thread, which may want the GIL to log
          delete h;
        } else {
          delete h;
        }
      });
      const nrb::result& rr = hold->result;
      arr = view_of(px, rr.format(), rr.width(), rr.height(), rr.stride(), owner);
      arr.attr("flags").attr("writeable") = false;
    }
    if (with_info) return py::make_tuple(arr, info);
    return arr;
  }

  bool enabled() {
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    return cl.enabled();
  }
  void set_enabled(bool on) {
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    cl.set_enabled(on);
  }

  py::dict stats() {
    nrb::client& cl = c();
    nrb_stats s;
    {
      py::gil_scoped_release nogil;
      s = cl.stats();
    }
    py::dict d;
    d["frames_submitted"] = s.frames_submitted;
    d["frames_sent"] = s.frames_sent;
    d["frames_dropped"] = s.frames_dropped;
    d["results_received"] = s.results_received;
    d["results_late"] = s.results_late;
    d["frames_lost"] = s.frames_lost;
    d["errors_received"] = s.errors_received;
    d["fallbacks"] = s.fallbacks;
    d["events_sent"] = s.events_sent;
    d["events_pending"] = s.events_pending;
    d["events_discarded"] = s.events_discarded;
    d["bytes_sent"] = s.bytes_sent;
    d["bytes_received"] = s.bytes_received;
    d["reconnects"] = s.reconnects;
    d["in_flight"] = s.in_flight;
    d["rtt_p50_ms"] = s.rtt_p50_ms;
    d["rtt_p95_ms"] = s.rtt_p95_ms;
    d["rtt_p99_ms"] = s.rtt_p99_ms;
    d["state"] = state_name(s.state);
    d["shm_active"] = s.shm_active != 0;
    d["doorbell_active"] = s.doorbell_active != 0;
    d["in_flight_limit"] = s.in_flight_limit;
    d["service_ms"] = s.service_ms;
    d["link_ms"] = s.link_ms;
    d["compression"] = compression_str(s.compression_active);
    d["session"] = s.session;
    d["refusal_code"] = s.refusal_code;
    d["refusal_message"] = py::str(s.refusal_message);  // cut UTF-8-safely by libnrb
    return d;
  }

  void retry() {
    nrb::client& cl = c();
    py::gil_scoped_release nogil;
    cl.retry();
  }

  std::string last_error() { return client_ ? std::string(nrb_last_error(client_->handle())) : std::string(); }
  // nrb_client_get_link: {"link": "local" | "remote", "render_size": (w, h)}.
  py::dict link() {
    const auto l = c().link();
    py::dict d;
    d["link"] = l.link == NRB_LINK_REMOTE ? "remote" : "local";
    d["render_size"] = py::make_tuple(l.render_width, l.render_height);
    return d;
  }

 private:
  std::shared_ptr<nrb::client> client_;
  std::shared_ptr<py::function> log_;
};

}  // namespace

void register_client(py::module_& m) {
  // nrb::error -> RuntimeError subclass carrying the status name.
  static py::exception<nrb::error> client_error(m, "ClientError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const nrb::error& e) {
      if (e.status() == NRB_ERROR_INVALID_ARGUMENT || e.status() == NRB_ERROR_LIMIT_EXCEEDED)
        PyErr_SetString(PyExc_ValueError, e.what());
      else
        py::set_error(client_error, e.what());
    }
  });

  py::class_<ClientBinding>(m, "Client", R"doc(
The engine-side NRB/1 client (libnrb). Never blocks on the network: an I/O thread connects, handshakes, sends
frames and receives results; when no fresh result is there, acquire_result() returns None and the engine shows its
own image.

Keyword arguments (all optional but render_size): endpoint ("tcp://127.0.0.1:5555"), transport ("auto", "inline",
"shm"), frames_in_flight (0: adaptive), deadline_ms (100), connect_timeout_ms, handshake_timeout_ms, server_timeout_ms,
ping_interval_ms, reconnect_backoff_min_ms, reconnect_backoff_max_ms, curve_server_key, curve_public_key,
curve_secret_key (Z85), log (callable(level: int, message: str), called on the I/O thread), log_level ("debug",
"info", "warning", "error"), engine, engine_version, render_size ((w, h)), output_size ((w, h)), buffers
([(name, format), ...]), compression ("auto": none on a local link, lz4 on a remote one; "none": never; "lz4", "zstd"),
compression_level, shm_slots, enabled (True),
renderer (the renderer wanted, docs/protocol.md 5.11), lossy_quality (0: exact images; 1..100: JPEG allowed, 6.3.1),
link ("auto", "local", "remote": nrb.h nrb_link; render_size (0, 0) then means the link's default), exact_formats,
lossy_codec ("jpeg", "webp").
)doc")
      .def(py::init<py::kwargs>())
      .def("close", &ClientBinding::close, "Say BYE, stop the I/O thread, free everything (also done on garbage collection).")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](ClientBinding& c, py::args) { c.close(); })
      .def("begin", &ClientBinding::begin, py::arg("dt") = -1.0, py::arg("deadline_ms") = 0.0,
           "Begin a frame (dt < 0: measured); returns its frame id.")
      .def("frame_live", &ClientBinding::frame_live,
           "Whether the frame begun will be sent (False: disabled, not connected, or holding frames back from a "
           "renderer too slow for the deadline); when False its G-buffers need not be read back or written.")
      .def("sending", &ClientBinding::sending,
           "Whether a frame begun now would be sent (ask before a readback that completes later); any thread.")
      .def("tag_buffer", &ClientBinding::tag_buffer, py::arg("name"), py::arg("format"), py::arg("array"), py::kw_only(),
           py::arg("depth_reversed") = false, py::arg("depth_infinite") = false,
           "Copy a G-buffer (numpy array (h, w[, c]) of the format's dtype; rows may be strided) into the frame.")
      .def(
          "acquire_slot",
          [](py::object self, const std::string& name, const std::string& format, uint32_t width, uint32_t height,
             bool dr, bool di) {
            return self.cast<ClientBinding&>().acquire_slot(self, name, format, width, height, dr, di);
          },
          py::arg("name"), py::arg("format"), py::arg("width"), py::arg("height"), py::kw_only(),
          py::arg("depth_reversed") = false, py::arg("depth_infinite") = false,
          "A writable numpy view where the engine writes buffer `name` itself (shared memory when negotiated). "
          "Valid until submit() or the next begin(): do not keep it.")
      .def("set_camera", &ClientBinding::set_camera, py::arg("camera"),
           "Camera constants as a dict with docs/protocol.md section 8 keys (matrices: 16 numbers or 4x4).")
      .def("set_lights", &ClientBinding::set_lights, py::arg("lights"),
           "The frame's light list (nrb_frame_set_lights, docs/protocol.md 6.1 x_lights): dicts with type "
           "('point', 'spot', 'directional'), color (linear RGB x intensity), position, direction (unit, the way "
           "it shines), range (0: none), inner and outer (spot cone half-angles, radians). [] sends none.")
      .def("fire_event", &ClientBinding::fire_event, py::arg("name"), py::arg("params") = py::none(),
           py::arg("target") = py::none(),
           "Queue a gameplay event: params is a dict (or msgpack bytes); target None/'global', "
           "('material'|'object', [ids]) or {'scope': ..., 'ids': [...]}.")
      .def("set_style", &ClientBinding::set_style, py::arg("style"), py::arg("strength") = 1.0, py::arg("over") = 0.0,
           py::arg("target") = py::none(), "Queue a style command (strength 0..1, over: transition seconds).")
      .def("set_style_params", &ClientBinding::set_style_params, py::arg("style"), py::arg("params"),
           py::arg("strength") = 1.0, py::arg("over") = 0.0, py::arg("target") = py::none(),
           "Define (or redefine) style `style` from a parameter dict ({'hue': 35, 'gain': (0.8, 1.1, 0.7), "
           "'lut': 'sunset', 'base': 'photoreal'}; docs/protocol.md 5.3) and move `target` to it. The renderer checks "
           "names and ranges: a bad one is answered BAD_VALUE for that frame.")
      .def("set_intensity", &ClientBinding::set_intensity, py::arg("value"), py::arg("over") = 0.0,
           "How much of the re-rendered image is shown over the engine's own hudless_color: 0..1 over `over` s.")
      .def("exclude", &ClientBinding::exclude, py::arg("target"), py::arg("excluded") = true,
           "Exclude ('material'|'object', [ids]) from re-rendering (their pixels keep the engine's image), or "
           "include them again (excluded=False; target None: every id).")
      .def("submit", &ClientBinding::submit, "Submit the current frame; returns at once.")
      .def("acquire_result", &ClientBinding::acquire_result, py::kw_only(), py::arg("with_info") = false,
           py::arg("copy") = false,
           "The newest fresh rendered image as a read-only numpy array (a zero-copy view that keeps the result "
           "acquired while it lives; copy=True returns a private copy), or None: show the engine's own image. "
           "with_info=True returns (array, {frame_id, age_frames, round_trip_ms, server_ms, format}).")
      .def_property("enabled", &ClientBinding::enabled, &ClientBinding::set_enabled,
                    "Neural rendering on/off (off: no traffic at all; on: reconnects and resumes).")
      .def("stats", &ClientBinding::stats,
           "Counters, round-trip percentiles and connection state as a dict. state: 'disabled', 'connecting', "
           "'connected' or 'refused' (an ERROR answered HELLO; refusal_code and refusal_message say why, "
           "retry() or enabled off and on asks again).")
      .def("retry", &ClientBinding::retry,
           "Leave the 'refused' state and ask the renderer again (nrb_client_retry); a no-op in any other state.")
      .def_property_readonly("link", &ClientBinding::link,
                             "nrb_client_get_link: {'link': 'local' | 'remote', 'render_size': (w, h)}: the link by "
                             "nrb.h's rule (or as configured) and the size to render the G-buffers at.")
      .def_property_readonly("last_error", &ClientBinding::last_error,
                             "Text of the last error of this client: a failing call, or its connection (the "
                             "renderer's refusal, no WELCOME in time).");

  m.def("client_version", [] { return std::string(nrb_get_version_string()); }, "libnrb client version.");
  m.def(
      "endpoint_link",
      [](const std::string& endpoint) {
        nrb_link l = NRB_LINK_LOCAL;
        nrb::detail::check(nrb_endpoint_link(endpoint.c_str(), &l), nullptr);
        return std::string(l == NRB_LINK_REMOTE ? "remote" : "local");
      },
      py::arg("endpoint"), "nrb_endpoint_link: 'local' or 'remote' by nrb.h's rule (no network traffic).");

  // nrb.h's constants, so Python engines (the Panda3D plugin) name buffers and formats the way C and C++ ones do:
  // BUFFER_ALBEDO == "albedo", ..., BUFFER_NAMES (every NRB_BUFFER_* name, in nrb.h's order), FORMATS (wire names in
  // nrb_format order), ABI_VERSION.
  py::list names;
  for (uint32_t i = 0; const char* name = nrb_buffer_name(i); ++i) {
    std::string attr = "BUFFER_";
    for (const char* ch = name; *ch; ++ch) attr += static_cast<char>(std::toupper(static_cast<unsigned char>(*ch)));
    m.attr(attr.c_str()) = name;
    names.append(name);
  }
  m.attr("BUFFER_NAMES") = py::tuple(names);
  py::list formats;
  for (nrb_format f = NRB_FORMAT_RGBA8; f < NRB_FORMAT_RGBA8 + NRB_FORMAT_COUNT; ++f) formats.append(nrb_format_name(f));
  m.attr("FORMATS") = py::tuple(formats);
  m.attr("ABI_VERSION") = nrb_get_abi_version();
  m.attr("MAX_LIGHTS") = NRB_MAX_LIGHTS;
  py::list tone_mappings;  // camera tone_mapping names, NRB_TONE_MAPPING_NONE .. OTHER
  for (nrb_tone_mapping t = NRB_TONE_MAPPING_NONE; t <= NRB_TONE_MAPPING_COUNT; ++t)
    tone_mappings.append(nrb_tone_mapping_name(t));
  m.attr("TONE_MAPPINGS") = py::tuple(tone_mappings);
}
