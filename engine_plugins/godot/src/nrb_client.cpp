// NRBClient implementation: see nrb_client.h.
#include "nrb_client.h"

#include <godot_cpp/core/class_db.hpp>
#include <godot_cpp/variant/callable.hpp>
#include <godot_cpp/variant/callable_method_pointer.hpp>
#include <godot_cpp/variant/rid.hpp>
#include <godot_cpp/variant/array.hpp>
#include <godot_cpp/variant/color.hpp>
#include <godot_cpp/variant/packed_float64_array.hpp>
#include <godot_cpp/variant/vector2i.hpp>
#include <godot_cpp/variant/vector3.hpp>
#include <godot_cpp/variant/utility_functions.hpp>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace godot {

namespace {

nrb_format format_from(const String& name) {
  const CharString s = name.utf8();
  for (nrb_format f = NRB_FORMAT_RGBA8; f <= NRB_FORMAT_R32U; ++f) {
    const char* n = nrb_format_name(f);
    if (n != nullptr && std::strcmp(n, s.get_data()) == 0) return f;
  }
  return NRB_FORMAT_UNKNOWN;
}

bool scope_from(const String& scope, nrb_scope* out) {
  if (scope == "global" || scope.is_empty()) *out = NRB_SCOPE_GLOBAL;
  else if (scope == "material") *out = NRB_SCOPE_MATERIAL;
  else if (scope == "object") *out = NRB_SCOPE_OBJECT;
  else return false;
  return true;
}

// A target as nrb.h takes it (styles, events, exclusions), with the id list it points into.
struct Target {
  std::vector<uint32_t> ids;
  nrb_target target{NRB_SCOPE_GLOBAL, nullptr, 0};
};

// GDScript's (scope, ids) as a Target; false, with why in *error, for a scope that is not global/material/object.
bool make_target(const String& scope, const PackedInt32Array& ids, Target* out, String* error) {
  if (!scope_from(scope, &out->target.scope)) {
    *error = "scope must be global, material or object";
    return false;
  }
  out->ids.assign(ids.ptr(), ids.ptr() + ids.size());
  out->target.ids = out->ids.data();
  out->target.id_count = static_cast<uint32_t>(out->ids.size());
  return true;
}

// --- event params: a Dictionary as libnrb's typed params (nrb_params encodes and checks them; no msgpack here) ----
// Adds `v` as the value of `key` (nullptr inside an array). Returns the first failing status; libnrb enforces
// section 3.2 (depth <= 8, <= 4096 bytes, UTF-8 keys) at the value that breaks it and says why in
// nrb_last_error(NULL). A Dictionary key that is not a string is refused here (*bad_key set).
nrb_status put_variant(nrb_params* p, const char* key, const Variant& v, bool* bad_key) {
  switch (v.get_type()) {
    case Variant::NIL: return nrb_params_set_nil(p, key);
    case Variant::BOOL: return nrb_params_set_bool(p, key, static_cast<bool>(v) ? 1 : 0);
    case Variant::INT: return nrb_params_set_int(p, key, static_cast<int64_t>(v));
    case Variant::FLOAT: return nrb_params_set_float(p, key, static_cast<double>(v));
    case Variant::STRING:
    case Variant::STRING_NAME: {
      const CharString s = String(v).utf8();
      return nrb_params_set_string_n(p, key, s.get_data(), static_cast<size_t>(s.length()));
    }
    case Variant::PACKED_BYTE_ARRAY: {
      const PackedByteArray b = v;
      return nrb_params_set_bytes(p, key, b.ptr(), static_cast<size_t>(b.size()));
    }
    case Variant::DICTIONARY: {
      const Dictionary d = v;
      nrb_status st = nrb_params_begin_map(p, key);
      const Array keys = d.keys();
      for (int64_t i = 0; st == NRB_OK && i < keys.size(); ++i) {
        const Variant k = keys[i];
        if (k.get_type() != Variant::STRING && k.get_type() != Variant::STRING_NAME) {
          *bad_key = true;
          return NRB_ERROR_INVALID_ARGUMENT;
        }
        st = put_variant(p, String(k).utf8().get_data(), d[k], bad_key);
      }
      return st == NRB_OK ? nrb_params_end(p) : st;
    }
    default: {
      if (v.get_type() >= Variant::ARRAY) {  // Array and the Packed*Array types
        const Array a = v;
        nrb_status st = nrb_params_begin_array(p, key);
        for (int64_t i = 0; st == NRB_OK && i < a.size(); ++i) st = put_variant(p, nullptr, a[i], bad_key);
        return st == NRB_OK ? nrb_params_end(p) : st;
      }
      const CharString s = String(v).utf8();  // vectors, colours, ...: their text form
      return nrb_params_set_string_n(p, key, s.get_data(), static_cast<size_t>(s.length()));
    }
  }
}

// A CurveZMQ key as libzmq takes it: 40 characters of the Z85 alphabet (ZeroMQ RFC 32). libnrb checks only the
// length; a key with a stray quote or space would otherwise fail later, inside the I/O thread, on every reconnect.
bool is_z85_key(const String& key) {
  static const char kZ85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  if (key.length() != 40) return false;
  for (int64_t i = 0; i < key.length(); ++i) {
    const char32_t c = key[i];
    if (c == 0 || c > 127 || std::strchr(kZ85, static_cast<int>(c)) == nullptr) return false;
  }
  return true;
}

// Why three CurveZMQ keys cannot be used, or an empty string when they can (all three valid, or none). It names
// the key at fault but never shows it: it may be the secret one.
String curve_keys_problem(const String& server_public_key, const String& client_public_key,
                          const String& client_secret_key) {
  if (server_public_key.is_empty() && client_public_key.is_empty() && client_secret_key.is_empty()) return String();
  const String keys[3] = {server_public_key, client_public_key, client_secret_key};
  const char* const names[3] = {"server public key", "client public key", "client secret key"};
  for (int i = 0; i < 3; ++i) {
    if (keys[i].is_empty()) {
      return String("the ") + names[i] +
             " is missing; CurveZMQ needs all three keys (server public, client public, client secret) or none";
    }
    if (!is_z85_key(keys[i])) {
      return String("the ") + names[i] + " is not a CurveZMQ key (40 characters of Z85 text, as `nrb keys show` " +
             "prints it; this one has " + String::num_int64(keys[i].length()) + " characters)";
    }
  }
  return String();
}

// A run-time style's parameter as libnrb takes it (nrb.h, nrb_set_style_params): a float, 3 floats in an array, or
// a string (lut, base). Anything else is NRB_ERROR_INVALID_ARGUMENT with *why set.
nrb_status put_style_param(nrb_params* p, const char* key, const Variant& v, String* why) {
  double rgb[3];
  switch (v.get_type()) {
    case Variant::INT:
    case Variant::FLOAT: return nrb_params_set_float(p, key, static_cast<double>(v));
    case Variant::STRING:
    case Variant::STRING_NAME: return nrb_params_set_string(p, key, String(v).utf8().get_data());
    case Variant::VECTOR3: {
      const Vector3 c = v;
      rgb[0] = c.x, rgb[1] = c.y, rgb[2] = c.z;
      break;
    }
    case Variant::COLOR: {  // a Color's channels as given (no sRGB conversion: the parameters say their space)
      const Color c = v;
      rgb[0] = c.r, rgb[1] = c.g, rgb[2] = c.b;
      break;
    }
    case Variant::ARRAY:
    case Variant::PACKED_FLOAT32_ARRAY:
    case Variant::PACKED_FLOAT64_ARRAY:
    case Variant::PACKED_INT32_ARRAY:
    case Variant::PACKED_INT64_ARRAY: {
      const Array a = v;
      if (a.size() != 3) {
        *why = String("style parameter ") + key + " takes a number or 3 numbers (R, G, B)";
        return NRB_ERROR_INVALID_ARGUMENT;
      }
      for (int i = 0; i < 3; ++i) {
        const Variant x = a[i];
        if (x.get_type() != Variant::INT && x.get_type() != Variant::FLOAT) {
          *why = String("style parameter ") + key + " takes numbers";
          return NRB_ERROR_INVALID_ARGUMENT;
        }
        rgb[i] = static_cast<double>(x);
      }
      break;
    }
    default:
      *why = String("style parameter ") + key + " takes a number, 3 numbers or (lut, base) a style's name";
      return NRB_ERROR_INVALID_ARGUMENT;
  }
  nrb_status st = nrb_params_begin_array(p, key);
  for (int i = 0; st == NRB_OK && i < 3; ++i) st = nrb_params_set_float(p, nullptr, rgb[i]);
  return st == NRB_OK ? nrb_params_end(p) : st;
}

nrb_tone_mapping tone_mapping_from(const String& name) {
  const CharString s = name.utf8();
  for (nrb_tone_mapping t = NRB_TONE_MAPPING_NONE; t <= NRB_TONE_MAPPING_COUNT; ++t) {
    const char* n = nrb_tone_mapping_name(t);
    if (n != nullptr && std::strcmp(n, s.get_data()) == 0) return t;
  }
  return NRB_TONE_MAPPING_UNSET;
}

bool read_doubles(const Dictionary& d, const char* key, double* out, int n) {
  if (!d.has(key)) return false;
  const Array a = d[key];
  if (a.size() != n) return false;
  for (int i = 0; i < n; ++i) out[i] = static_cast<double>(a[i]);
  return true;
}

}  // namespace

NRBClient::~NRBClient() { close(); }

bool NRBClient::check(nrb_status status, const char* what) {
  if (status >= 0) return true;
  error_ = String(what) + ": " + nrb_status_name(status) + ": " + nrb_last_error(client_);
  return false;
}

bool NRBClient::set_curve_keys(const String& server_public_key, const String& client_public_key,
                               const String& client_secret_key) {
  // Kept even when refused, so that configure refuses them too instead of connecting without them.
  curve_server_public_key_ = server_public_key;
  curve_client_public_key_ = client_public_key;
  curve_client_secret_key_ = client_secret_key;
  const String problem = curve_keys_problem(server_public_key, client_public_key, client_secret_key);
  if (problem.is_empty()) return true;
  error_ = "set_curve_keys: " + problem;
  return false;
}

bool NRBClient::configure(const String& endpoint, int64_t width, int64_t height, const Dictionary& buffers,
                          int64_t frames_in_flight, double deadline_ms, const String& engine,
                          const String& engine_version, bool enabled) {
  close();
  const String curve_problem = curve_keys_problem(curve_server_public_key_, curve_client_public_key_,
                                                  curve_client_secret_key_);
  if (!curve_problem.is_empty()) {
    error_ = "configure: " + curve_problem;
    return false;
  }
  const CharString ep = endpoint.utf8();
  const CharString en = engine.utf8();
  const CharString ev = engine_version.utf8();
  const CharString csp = curve_server_public_key_.utf8();
  const CharString ccp = curve_client_public_key_.utf8();
  const CharString ccs = curve_client_secret_key_.utf8();
  std::vector<CharString> names;
  std::vector<nrb_buffer_spec> specs;
  const Array keys = buffers.keys();
  names.reserve(static_cast<size_t>(keys.size()));
  for (int64_t i = 0; i < keys.size(); ++i) {
    const nrb_format f = format_from(String(buffers[keys[i]]));
    if (f == NRB_FORMAT_UNKNOWN) {
      error_ = "unknown format for buffer " + String(keys[i]);
      return false;
    }
    names.push_back(String(keys[i]).utf8());
    specs.push_back(nrb_buffer_spec{nullptr, f});
  }
  for (size_t i = 0; i < specs.size(); ++i) specs[i].name = names[i].get_data();

  nrb_client_config cfg;
  nrb_client_config_init(&cfg);
  cfg.endpoint = ep.get_data();
  cfg.frames_in_flight = static_cast<uint32_t>(frames_in_flight);
  cfg.deadline_ms = deadline_ms;
  cfg.engine_name = en.get_data();
  cfg.engine_version = ev.get_data();
  // The effect's G-buffer size is the image wanted back; the render size is libnrb's default for the link
  // (nrb.h nrb_link): the same size on this host, half of it on a remote link, where libnrb resamples the buffers
  // this plugin tags at this size and sends the compact formats. The plugin encodes nothing itself.
  cfg.output_width = static_cast<uint32_t>(width);
  cfg.output_height = static_cast<uint32_t>(height);
  cfg.buffers = specs.data();
  cfg.buffer_count = static_cast<uint32_t>(specs.size());
  cfg.start_disabled = enabled ? 0u : 1u;
  if (!curve_server_public_key_.is_empty()) {  // checked above: all three keys or none
    cfg.curve_server_public_key = csp.get_data();
    cfg.curve_client_public_key = ccp.get_data();
    cfg.curve_client_secret_key = ccs.get_data();
  }
  nrb_client* created = nullptr;
  const nrb_status st = nrb_client_create(&cfg, &created);
  if (st != NRB_OK) {
    error_ = String("nrb_client_create: ") + nrb_status_name(st) + ": " + nrb_last_error(nullptr);
    return false;
  }
  client_ = created;
  return true;
}

void NRBClient::close() {
  pending_.clear();  // read-backs still in flight find no frame and return
  if (client_ != nullptr) {
    nrb_client_destroy(client_);
    client_ = nullptr;
  }
}

void NRBClient::set_enabled(bool enabled) {
  if (client_ != nullptr) check(nrb_set_enabled(client_, enabled ? 1 : 0), "nrb_set_enabled");
}

bool NRBClient::is_enabled() const {
  int on = 0;
  return client_ != nullptr && nrb_get_enabled(client_, &on) == NRB_OK && on != 0;
}

int64_t NRBClient::begin_frame(double dt, double deadline_ms) {
  if (client_ == nullptr) return -1;
  nrb_frame_info info;
  std::memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  info.struct_version = NRB_FRAME_INFO_VERSION;
  info.dt = dt;
  info.deadline_ms = deadline_ms > 0.0 ? deadline_ms : 0.0;  // 0: the configured deadline
  uint64_t id = 0;
  return check(nrb_frame_begin(client_, &info, &id), "nrb_frame_begin") ? static_cast<int64_t>(id) : -1;
}

bool NRBClient::tag_buffer(const String& name, const String& format, const PackedByteArray& data, int64_t width,
                           int64_t height, bool depth_reversed) {
  if (client_ == nullptr) return false;
  const nrb_format f = format_from(format);
  const uint32_t bpp = nrb_format_bytes_per_pixel(f);
  if (bpp == 0 || width <= 0 || height <= 0 || data.size() < width * height * bpp) {
    error_ = "tag_buffer " + name + ": bad format or too little data";
    return false;
  }
  const CharString n = name.utf8();
  nrb_buffer_desc desc;
  std::memset(&desc, 0, sizeof desc);
  desc.struct_size = sizeof desc;
  desc.struct_version = NRB_BUFFER_DESC_VERSION;
  desc.name = n.get_data();
  desc.format = f;
  desc.width = static_cast<uint32_t>(width);
  desc.height = static_cast<uint32_t>(height);
  desc.stride = static_cast<uint32_t>(width * bpp);  // RenderingDevice read-back rows are tight
  desc.data = data.ptr();
  desc.flags = depth_reversed ? NRB_BUFFER_DEPTH_REVERSED : 0u;
  return check(nrb_frame_tag_buffer(client_, &desc), "nrb_frame_tag_buffer");
}

bool NRBClient::set_lights(const Array& lights) {
  if (client_ == nullptr) return false;
  std::vector<nrb_light> out(static_cast<size_t>(lights.size()));
  for (int64_t i = 0; i < lights.size(); ++i) {
    nrb_light& l = out[static_cast<size_t>(i)];
    nrb_light_init(&l);
    const Dictionary d = lights[i];
    const String type = d.get("type", "point");
    l.type = type == "spot" ? NRB_LIGHT_SPOT : type == "directional" ? NRB_LIGHT_DIRECTIONAL : NRB_LIGHT_POINT;
    const auto vec = [&](const char* key, float* dst) {
      if (!d.has(key)) return;
      const Variant v = d[key];
      if (v.get_type() == Variant::COLOR) {
        const Color c = v;
        dst[0] = c.r, dst[1] = c.g, dst[2] = c.b;
      } else {
        const Vector3 p = v;
        dst[0] = p.x, dst[1] = p.y, dst[2] = p.z;
      }
    };
    vec("color", l.color);
    vec("position", l.position);
    vec("direction", l.direction);
    l.range = static_cast<float>(static_cast<double>(d.get("range", 0.0)));
    l.inner_cone = static_cast<float>(static_cast<double>(d.get("inner", 0.0)));
    l.outer_cone = static_cast<float>(static_cast<double>(d.get("outer", 0.0)));
  }
  return check(nrb_frame_set_lights(client_, out.data(), static_cast<uint32_t>(out.size())), "nrb_frame_set_lights");
}

bool NRBClient::set_camera(const Dictionary& d) {
  if (client_ == nullptr) return false;
  nrb_camera c;
  nrb_camera_init(&c);
  read_doubles(d, "view_to_clip", c.view_to_clip, 16);
  read_doubles(d, "clip_to_view", c.clip_to_view, 16);
  read_doubles(d, "clip_to_prev_clip", c.clip_to_prev_clip, 16);
  read_doubles(d, "prev_clip_to_clip", c.prev_clip_to_clip, 16);
  read_doubles(d, "world_to_view", c.world_to_view, 16);
  read_doubles(d, "position", c.position, 3);
  read_doubles(d, "up", c.up, 3);
  read_doubles(d, "right", c.right, 3);
  read_doubles(d, "forward", c.forward, 3);
  read_doubles(d, "jitter", c.jitter, 2);
  read_doubles(d, "mv_scale", c.mv_scale, 2);
  c.near_plane = d.get("near", 0.0);
  c.far_plane = d.get("far", 0.0);
  c.fov_y = d.get("fov_y", 0.0);
  c.aspect = d.get("aspect", 0.0);
  c.pre_exposure = d.get("pre_exposure", 0.0);
  if (d.has("tone_mapping")) {  // how hudless_color was made (protocol section 8): a NRB_TONE_MAPPING_* name
    c.tone_mapping = tone_mapping_from(d["tone_mapping"]);
    if (c.tone_mapping == NRB_TONE_MAPPING_UNSET) {
      error_ = "set_camera: tone_mapping must be none, clamp, reinhard, aces, agx or other";
      return false;
    }
  }
  c.depth_inverted = static_cast<bool>(d.get("depth_inverted", false));
  c.depth_infinite = static_cast<bool>(d.get("depth_infinite", false));
  c.camera_motion_included = static_cast<bool>(d.get("camera_motion_included", true));
  c.reset = static_cast<bool>(d.get("reset", false));
  double size[2] = {0, 0};
  if (read_doubles(d, "render_size", size, 2)) {
    c.render_width = static_cast<uint32_t>(size[0]);
    c.render_height = static_cast<uint32_t>(size[1]);
  }
  if (read_doubles(d, "output_size", size, 2)) {
    c.output_width = static_cast<uint32_t>(size[0]);
    c.output_height = static_cast<uint32_t>(size[1]);
  }
  return check(nrb_frame_set_camera(client_, &c), "nrb_frame_set_camera");
}

bool NRBClient::submit() {
  return client_ != nullptr && check(nrb_frame_submit(client_), "nrb_frame_submit");
}

bool NRBClient::read_back_and_submit(Object* rd, const Array& buffers, int64_t width, int64_t height,
                                     const Dictionary& constants, const Dictionary& camera, double dt,
                                     double deadline_ms) {
  // No readback for a frame libnrb would not send: disabled, not connected, or holding frames back from a renderer
  // too slow for the deadline (docs/protocol.md 5.9, engine rule 5); the game's events wait in libnrb for the next.
  int sending = 0;
  if (client_ == nullptr || rd == nullptr || nrb_get_sending(client_, &sending) != NRB_OK || sending == 0) return false;
  PendingFrame frame;
  frame.buffers = buffers;
  frame.width = width;
  frame.height = height;
  frame.constants = constants;
  frame.camera = camera;
  frame.dt = dt;
  frame.deadline_ms = deadline_ms;
  frame.data.resize(static_cast<size_t>(buffers.size()));
  // Not static: a StringName destroyed after the engine at exit would call into a Godot that is gone.
  const StringName kAsync("texture_get_data_async");
  const StringName kSync("texture_get_data");
  if (!rd->has_method(kAsync)) {  // Godot 4.3: one GPU stall per frame
    for (int64_t i = 0; i < buffers.size(); ++i) {
      const Array spec = buffers[i];
      frame.data[static_cast<size_t>(i)] = rd->call(kSync, spec[2], 0);
    }
    return submit_read_back(frame);
  }
  const int64_t ticket = ++next_ticket_;
  pending_[ticket] = frame;
  while (pending_.size() > kMaxPendingReadBacks) pending_.erase(pending_.begin());  // never let them pile up
  for (int64_t i = 0; i < buffers.size(); ++i) {
    const Array spec = buffers[i];
    const Callable done = callable_mp(this, &NRBClient::on_read_back).bind(ticket, i);
    const int64_t err = rd->call(kAsync, spec[2], 0, done);
    if (err != 0) {  // the texture is gone (resized this frame): abandon the frame
      pending_.erase(ticket);
      error_ = "texture_get_data_async failed for " + String(spec[0]);
      return false;
    }
  }
  return true;
}

void NRBClient::on_read_back(const PackedByteArray& data, int64_t ticket, int64_t index) {
  const auto it = pending_.find(ticket);
  if (it == pending_.end()) return;  // abandoned
  PendingFrame& frame = it->second;
  if (index < 0 || static_cast<size_t>(index) >= frame.data.size()) return;
  frame.data[static_cast<size_t>(index)] = data;
  if (++frame.arrived < frame.data.size()) return;
  const PendingFrame done = frame;
  pending_.erase(it);
  submit_read_back(done);
}

bool NRBClient::submit_read_back(const PendingFrame& frame) {
  if (client_ == nullptr || begin_frame(frame.dt, frame.deadline_ms) < 0) return false;
  for (int64_t i = 0; i < frame.buffers.size(); ++i) {
    const Array spec = frame.buffers[i];
    if (!tag_buffer(spec[0], spec[1], frame.data[static_cast<size_t>(i)], frame.width, frame.height,
                    static_cast<bool>(spec[3]))) {
      return false;
    }
  }
  const Array names = frame.constants.keys();
  for (int64_t i = 0; i < names.size(); ++i) {
    const Variant value = frame.constants[names[i]];
    if (value.get_type() == Variant::ARRAY) {  // the light list, packed by libnrb
      if (!set_lights(value)) return false;
    } else if (!tag_buffer(names[i], "rgba32f", value, 1, 1, false)) {
      return false;
    }
  }
  return set_camera(frame.camera) && submit();
}

PackedByteArray NRBClient::acquire_result() {
  PackedByteArray out;
  if (client_ == nullptr) return out;
  nrb_result r;
  std::memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  r.struct_version = NRB_RESULT_VERSION;
  if (nrb_acquire_result(client_, &r) != NRB_OK) return out;  // NRB_NO_RESULT: show the engine's own image
  const uint32_t bpp = nrb_format_bytes_per_pixel(r.format);
  const uint32_t row = r.width * bpp;
  out.resize(static_cast<int64_t>(row) * r.height);
  uint8_t* dst = out.ptrw();
  const auto* src = static_cast<const uint8_t*>(r.pixels);
  for (uint32_t y = 0; y < r.height; ++y) std::memcpy(dst + size_t(y) * row, src + size_t(y) * r.stride, row);
  result_width_ = r.width;
  result_height_ = r.height;
  result_frame_ = r.frame_id;
  result_format_ = r.format;
  nrb_release_result(client_, &r);
  return out;
}

String NRBClient::get_result_format() const {
  const char* n = nrb_format_name(result_format_);
  return n != nullptr ? String(n) : String();
}

bool NRBClient::set_style(const String& style, double strength, double over, const String& scope,
                          const PackedInt32Array& ids) {
  if (client_ == nullptr) return false;
  Target t;
  if (!make_target(scope, ids, &t, &error_)) return false;
  return check(nrb_set_style(client_, style.utf8().get_data(), strength, over, &t.target), "nrb_set_style");
}

bool NRBClient::set_style_params(const String& style, const Dictionary& params, double strength, double over,
                                 const String& scope, const PackedInt32Array& ids) {
  if (client_ == nullptr) return false;
  Target t;
  if (!make_target(scope, ids, &t, &error_)) return false;
  nrb_params* p = nullptr;
  nrb_status st = nrb_params_create(&p);
  String why;
  const Array keys = params.keys();
  for (int64_t i = 0; st == NRB_OK && i < keys.size(); ++i) {
    const Variant k = keys[i];
    if (k.get_type() != Variant::STRING && k.get_type() != Variant::STRING_NAME) {
      why = "style parameters: names must be strings";
      st = NRB_ERROR_INVALID_ARGUMENT;
    } else {
      st = put_style_param(p, String(k).utf8().get_data(), params[k], &why);
    }
  }
  if (st != NRB_OK) {
    error_ = !why.is_empty() ? why : String("style parameters: ") + String::utf8(nrb_last_error(nullptr));
    nrb_params_destroy(p);
    return false;
  }
  const bool ok = check(nrb_set_style_params(client_, style.utf8().get_data(), p, strength, over, &t.target),
                        "nrb_set_style_params");
  nrb_params_destroy(p);
  return ok;
}

bool NRBClient::set_intensity(double value, double over) {
  return client_ != nullptr && check(nrb_set_intensity(client_, value, over), "nrb_set_intensity");
}

bool NRBClient::exclude(const String& scope, const PackedInt32Array& ids, bool excluded) {
  if (client_ == nullptr) return false;
  Target t;
  if (!make_target(scope, ids, &t, &error_)) return false;
  return check(nrb_exclude(client_, &t.target, excluded ? 1 : 0), "nrb_exclude");
}

bool NRBClient::fire_event(const String& name, const Dictionary& params, const String& scope,
                           const PackedInt32Array& ids) {
  if (client_ == nullptr) return false;
  Target t;
  if (!make_target(scope, ids, &t, &error_)) return false;
  nrb_params* p = nullptr;
  nrb_status st = nrb_params_create(&p);
  bool bad_key = false;
  const Array keys = params.keys();
  for (int64_t i = 0; st == NRB_OK && i < keys.size(); ++i) {
    const Variant k = keys[i];
    if (k.get_type() != Variant::STRING && k.get_type() != Variant::STRING_NAME) {
      bad_key = true;
      st = NRB_ERROR_INVALID_ARGUMENT;
    } else {
      st = put_variant(p, String(k).utf8().get_data(), params[k], &bad_key);
    }
  }
  if (st != NRB_OK) {
    error_ = bad_key ? String("event params: keys must be strings")
                     : String("event params: ") + String::utf8(nrb_last_error(nullptr));
    nrb_params_destroy(p);
    return false;
  }
  const bool ok = check(nrb_fire_event_params(client_, name.utf8().get_data(), p, &t.target), "nrb_fire_event_params");
  nrb_params_destroy(p);
  return ok;
}

Dictionary NRBClient::get_buffer_names() const {
  Dictionary d;
  for (uint32_t i = 0; const char* name = nrb_buffer_name(i); ++i) d[String(name).to_upper()] = String(name);
  return d;
}

Dictionary NRBClient::get_link() const {
  Dictionary d;
  nrb_link link = NRB_LINK_LOCAL;
  uint32_t w = 0, h = 0;
  if (client_ == nullptr || nrb_client_get_link(client_, &link, &w, &h) != NRB_OK) return d;
  d["link"] = link == NRB_LINK_REMOTE ? "remote" : "local";
  d["render_size"] = Vector2i(static_cast<int32_t>(w), static_cast<int32_t>(h));
  return d;
}

Dictionary NRBClient::get_stats() const {
  Dictionary d;
  if (client_ == nullptr) {
    d["state"] = "unavailable";
    return d;
  }
  nrb_stats s;
  std::memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  s.struct_version = NRB_STATS_VERSION;
  if (nrb_get_stats(client_, &s) != NRB_OK) return d;
  d["frames_submitted"] = static_cast<int64_t>(s.frames_submitted);
  d["frames_sent"] = static_cast<int64_t>(s.frames_sent);
  d["frames_dropped"] = static_cast<int64_t>(s.frames_dropped);
  d["results_received"] = static_cast<int64_t>(s.results_received);
  d["results_late"] = static_cast<int64_t>(s.results_late);
  d["frames_lost"] = static_cast<int64_t>(s.frames_lost);
  d["fallbacks"] = static_cast<int64_t>(s.fallbacks);
  d["reconnects"] = static_cast<int64_t>(s.reconnects);
  d["in_flight"] = static_cast<int64_t>(s.in_flight);
  d["in_flight_limit"] = static_cast<int64_t>(s.in_flight_limit);  // the adaptive choice (frames_in_flight 0)
  d["rtt_p50_ms"] = s.rtt_p50_ms;
  d["rtt_p95_ms"] = s.rtt_p95_ms;
  d["rtt_p99_ms"] = s.rtt_p99_ms;
  // Where the round trip goes (nrb_stats v5): the renderer's own time per frame, and the fastest recent transport.
  d["service_ms"] = s.service_ms;
  d["link_ms"] = s.link_ms;
  switch (s.state) {
    case NRB_STATE_CONNECTED: d["state"] = "connected"; break;
    case NRB_STATE_CONNECTING: d["state"] = "connecting"; break;
    case NRB_STATE_REFUSED: d["state"] = "refused"; break;
    default: d["state"] = "disabled"; break;
  }
  // Why the renderer refused the session (its ERROR message), empty otherwise: overlays show it.
  d["refusal_code"] = static_cast<int64_t>(s.refusal_code);
  d["refusal_message"] = String::utf8(s.refusal_message);
  d["last_error"] = get_last_error();
  d["pending_read_backs"] = get_pending_read_backs();
  return d;
}

bool NRBClient::retry() {
  return client_ != nullptr && check(nrb_client_retry(client_), "nrb_client_retry");
}

String NRBClient::get_last_error() const {
  if (!error_.is_empty()) return error_;
  return client_ != nullptr ? String(nrb_last_error(client_)) : String(nrb_last_error(nullptr));
}

void NRBClient::_bind_methods() {
  ClassDB::bind_method(D_METHOD("set_curve_keys", "server_public_key", "client_public_key", "client_secret_key"),
                       &NRBClient::set_curve_keys);
  ClassDB::bind_method(D_METHOD("configure", "endpoint", "width", "height", "buffers", "frames_in_flight",
                                "deadline_ms", "engine", "engine_version", "enabled"),
                       &NRBClient::configure);
  ClassDB::bind_method(D_METHOD("close"), &NRBClient::close);
  ClassDB::bind_method(D_METHOD("set_enabled", "enabled"), &NRBClient::set_enabled);
  ClassDB::bind_method(D_METHOD("is_enabled"), &NRBClient::is_enabled);
  ClassDB::bind_method(D_METHOD("begin_frame", "dt", "deadline_ms"), &NRBClient::begin_frame, DEFVAL(0.0));
  ClassDB::bind_method(D_METHOD("tag_buffer", "name", "format", "data", "width", "height", "depth_reversed"),
                       &NRBClient::tag_buffer);
  ClassDB::bind_method(D_METHOD("set_camera", "camera"), &NRBClient::set_camera);
  ClassDB::bind_method(D_METHOD("set_lights", "lights"), &NRBClient::set_lights);
  ClassDB::bind_method(D_METHOD("submit"), &NRBClient::submit);
  ClassDB::bind_method(D_METHOD("read_back_and_submit", "rd", "buffers", "width", "height", "constants", "camera",
                                "dt", "deadline_ms"),
                       &NRBClient::read_back_and_submit);
  ClassDB::bind_method(D_METHOD("get_pending_read_backs"), &NRBClient::get_pending_read_backs);
  ClassDB::bind_method(D_METHOD("retry"), &NRBClient::retry);
  ClassDB::bind_method(D_METHOD("acquire_result"), &NRBClient::acquire_result);
  ClassDB::bind_method(D_METHOD("get_result_width"), &NRBClient::get_result_width);
  ClassDB::bind_method(D_METHOD("get_result_height"), &NRBClient::get_result_height);
  ClassDB::bind_method(D_METHOD("get_result_frame"), &NRBClient::get_result_frame);
  ClassDB::bind_method(D_METHOD("get_result_format"), &NRBClient::get_result_format);
  ClassDB::bind_method(D_METHOD("set_style", "style", "strength", "over", "scope", "ids"), &NRBClient::set_style);
  ClassDB::bind_method(D_METHOD("set_style_params", "style", "params", "strength", "over", "scope", "ids"),
                       &NRBClient::set_style_params);
  ClassDB::bind_method(D_METHOD("set_intensity", "value", "over"), &NRBClient::set_intensity);
  ClassDB::bind_method(D_METHOD("exclude", "scope", "ids", "excluded"), &NRBClient::exclude);
  ClassDB::bind_method(D_METHOD("fire_event", "name", "params", "scope", "ids"), &NRBClient::fire_event);
  ClassDB::bind_method(D_METHOD("get_buffer_names"), &NRBClient::get_buffer_names);
  ClassDB::bind_method(D_METHOD("get_stats"), &NRBClient::get_stats);
  ClassDB::bind_method(D_METHOD("get_link"), &NRBClient::get_link);
  ClassDB::bind_method(D_METHOD("get_last_error"), &NRBClient::get_last_error);
}

}  // namespace godot
