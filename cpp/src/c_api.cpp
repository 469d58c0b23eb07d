// The C ABI (cpp/include/nrb/nrb.h) over nrb::detail::Client. Every entry point catches everything: no exception
// crosses the boundary; failures become an nrb_status plus a per-client last-error text.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "client.hpp"
#include "nrb/nrb.h"
#include "params_builder.hpp"

using nrb::detail::Client;
using nrb::detail::ResultImage;
namespace wire = nrb::wire;

struct nrb_params {
  nrb::detail::ParamsBuilder builder;
};

struct nrb_client {
  std::unique_ptr<Client> impl;  // also keeps the last error: the I/O thread reports connection problems there
  mutable std::mutex mutex;      // held
  std::vector<std::shared_ptr<const ResultImage>> held;  // results acquired and not yet released
};

namespace {

std::string& create_error() {
  thread_local std::string e;
  return e;
}

void set_error(const nrb_client* c, const std::string& msg) {
  if (!c) {
    create_error() = msg;
    return;
  }
  try {
    c->impl->set_last_error(msg);
  } catch (...) {  // out of memory: keep the status, lose the text
  }
}

// `s` cut to at most `cap - 1` bytes without splitting a UTF-8 sequence, NUL-terminated, into `out`.
void copy_utf8(char* out, size_t cap, const std::string& s) {
  size_t n = std::min(s.size(), cap - 1);
  if (n < s.size())
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // s[n] continues a sequence
  std::memcpy(out, s.data(), n);
  std::memset(out + n, 0, cap - n);
}

// How many bytes of nrb_stats each struct_version has (a caller gets no more than its version's fields).
size_t stats_size(uint32_t version) {
  if (version == 1) return offsetof(nrb_stats, session) + sizeof(uint64_t);
  if (version == 2) return offsetof(nrb_stats, doorbell_active) + sizeof(uint32_t);
  if (version == 3) return offsetof(nrb_stats, refusal_message) + sizeof(nrb_stats::refusal_message);
  if (version == 4) return offsetof(nrb_stats, in_flight_limit) + sizeof(uint32_t);
  return sizeof(nrb_stats);
}

nrb_status fail(const nrb_client* c, nrb_status s, const std::string& msg) {
  set_error(c, msg);
  return s;
}

// Runs `fn`, mapping exceptions to statuses.
template <class Fn>
nrb_status guarded(const nrb_client* c, const char* fn_name, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const std::invalid_argument& e) {
    return fail(c, NRB_ERROR_INVALID_ARGUMENT, std::string(fn_name) + ": " + e.what());
  } catch (const std::out_of_range& e) {
    return fail(c, NRB_ERROR_LIMIT_EXCEEDED, std::string(fn_name) + ": " + e.what());
  } catch (const std::logic_error& e) {
    return fail(c, NRB_ERROR_INVALID_STATE, std::string(fn_name) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail(c, NRB_ERROR_OUT_OF_MEMORY, std::string(fn_name) + ": out of memory");
  } catch (const zmq::error_t& e) {
    return fail(c, NRB_ERROR_TRANSPORT, std::string(fn_name) + ": ZeroMQ: " + e.what());
  } catch (const std::exception& e) {
    return fail(c, NRB_ERROR_INTERNAL, std::string(fn_name) + ": " + e.what());
  } catch (...) {
    return fail(c, NRB_ERROR_INTERNAL, std::string(fn_name) + ": unknown exception");
  }
}

// Copies a caller's versioned input struct: at most sizeof(T) bytes of it, the rest zero.
// `v1_size`: the struct's size at struct_version 1 (fields appended later read as zero for an older caller).
template <class T>
nrb_status read_struct(const nrb_client* c, const T* in, uint32_t version, const char* what, T& out,
                       size_t v1_size = sizeof(T)) {
  std::memset(&out, 0, sizeof out);
  if (!in) return fail(c, NRB_ERROR_INVALID_ARGUMENT, std::string(what) + " is NULL");
  if (in->struct_version == 0 || in->struct_version > version || in->struct_size < 2 * sizeof(uint32_t))
    return fail(c, NRB_ERROR_UNSUPPORTED_VERSION,
                std::string(what) + ": struct_version/struct_size not set or newer than this library");
  std::memcpy(&out, in, std::min<size_t>(in->struct_size, sizeof out));
  if (in->struct_size < v1_size)
    return fail(c, NRB_ERROR_UNSUPPORTED_VERSION, std::string(what) + ": struct_size smaller than version 1");
  return NRB_OK;
}

// Writes `value` into a caller's versioned output struct (at most its struct_size bytes), keeping its header.
// `version_size`: how many bytes the caller's struct_version defines (never more is written).
template <class T>
nrb_status write_struct(const nrb_client* c, T* out, const T& value, const char* what,
                        size_t oldest_size = sizeof(T), size_t version_size = sizeof(T)) {
  if (!out) return fail(c, NRB_ERROR_INVALID_ARGUMENT, std::string(what) + " is NULL");
  uint32_t size = out->struct_size, version = out->struct_version;
  if (version == 0 || size < oldest_size)
    return fail(c, NRB_ERROR_UNSUPPORTED_VERSION, std::string(what) + ": struct_size/struct_version not set");
  // A caller built against an older header gets the fields it knows (the first struct_size bytes).
  std::memcpy(out, &value, std::min({size_t(size), sizeof(T), version_size}));
  out->struct_size = size;
  out->struct_version = version;
  return NRB_OK;
}

bool to_format(nrb_format f, wire::Format& out) {
  if (f < NRB_FORMAT_RGBA8 || f > NRB_FORMAT_R32U) return false;
  out = static_cast<wire::Format>(f - 1);  // same order as section 6.2
  return true;
}

nrb_format from_format(wire::Format f) { return static_cast<nrb_format>(static_cast<uint32_t>(f) + 1); }

std::string str_or(const char* s, const char* fallback) { return s ? std::string(s) : std::string(fallback); }

nrb::detail::BufferArgs buffer_args(const nrb_buffer_desc& d) {
  nrb::detail::BufferArgs b;
  if (!d.name) throw std::invalid_argument("buffer name is NULL");
  b.name = d.name;
  if (!to_format(d.format, b.format)) throw std::invalid_argument("buffer \"" + b.name + "\": unknown format");
  b.width = d.width;
  b.height = d.height;
  b.stride = d.stride;
  b.depth_reversed = (d.flags & NRB_BUFFER_DEPTH_REVERSED) != 0;
  b.depth_infinite = (d.flags & NRB_BUFFER_DEPTH_INFINITE) != 0;
  return b;
}

wire::Target target_of(const nrb_target* t) {
  if (!t) return wire::Target{};
  if (t->scope > NRB_SCOPE_OBJECT) throw std::invalid_argument("target: unknown scope");
  return nrb::detail::make_target(static_cast<wire::Scope>(t->scope), t->ids, t->id_count);
}

template <size_t N>
std::optional<std::array<double, N>> nonzero(const double (&a)[N]) {
  std::array<double, N> out;
  bool any = false;
  for (size_t i = 0; i < N; ++i) {
    out[i] = a[i];
    any = any || a[i] != 0.0;
  }
  if (!any) return std::nullopt;
  return out;
}
template <size_t N>
std::array<double, N> always(const double (&a)[N]) {
  std::array<double, N> out;
  for (size_t i = 0; i < N; ++i) out[i] = a[i];
  return out;
}
std::optional<double> nonzero(double v) { return v != 0.0 ? std::optional<double>(v) : std::nullopt; }
std::optional<wire::Size2> nonzero_size(uint32_t w, uint32_t h) {
  if (w == 0 && h == 0) return std::nullopt;
  return wire::Size2{w, h};
}

wire::Camera camera_of(const nrb_camera& c) {
  wire::Camera w;
  w.view_to_clip = nonzero(c.view_to_clip);
  w.clip_to_view = nonzero(c.clip_to_view);
  w.clip_to_prev_clip = nonzero(c.clip_to_prev_clip);
  w.prev_clip_to_clip = nonzero(c.prev_clip_to_clip);
  w.world_to_view = nonzero(c.world_to_view);
  w.position = always(c.position);
  w.up = nonzero(c.up);
  w.right = nonzero(c.right);
  w.forward = nonzero(c.forward);
  w.near_plane = nonzero(c.near_plane);
  w.far_plane = nonzero(c.far_plane);
  w.fov_y = nonzero(c.fov_y);
  w.aspect = nonzero(c.aspect);
  w.jitter = always(c.jitter);
  w.mv_scale = always(c.mv_scale);
  w.depth_inverted = c.depth_inverted != 0;
  w.depth_infinite = c.depth_infinite != 0;
  w.mv_jittered = c.mv_jittered != 0;
  w.mv_3d = c.mv_3d != 0;
  w.mv_dilated = c.mv_dilated != 0;
  w.camera_motion_included = c.camera_motion_included != 0;
  w.orthographic = c.orthographic != 0;
  w.reset = c.reset != 0;
  w.pre_exposure = nonzero(c.pre_exposure);
  if (c.tone_mapping > NRB_TONE_MAPPING_COUNT) throw std::invalid_argument("camera.tone_mapping is not an NRB_TONE_MAPPING_*");
  if (c.tone_mapping != NRB_TONE_MAPPING_UNSET)
    w.tone_mapping = static_cast<wire::ToneMapping>(c.tone_mapping - NRB_TONE_MAPPING_NONE);
  w.render_size = nonzero_size(c.render_width, c.render_height);
  w.output_size = nonzero_size(c.output_width, c.output_height);
  return w;
}

nrb::detail::ClientOptions options_of(const nrb_client_config& c) {
  nrb::detail::ClientOptions o;
  if (c.endpoint) o.endpoint = c.endpoint;
  if (c.transport > NRB_TRANSPORT_SHM) throw std::invalid_argument("unknown transport");
  o.shm = static_cast<nrb::detail::ShmMode>(c.transport);
  if (c.frames_in_flight) o.frames_in_flight = c.frames_in_flight;
  if (c.deadline_ms != 0.0) o.deadline_ms = c.deadline_ms;
  if (c.connect_timeout_ms) o.connect_timeout_ms = c.connect_timeout_ms;
  if (c.handshake_timeout_ms) o.handshake_timeout_ms = c.handshake_timeout_ms;
  if (c.server_timeout_ms) o.server_timeout_ms = c.server_timeout_ms;
  if (c.ping_interval_ms) o.ping_interval_ms = c.ping_interval_ms;
  if (c.reconnect_backoff_min_ms) o.backoff_min_ms = c.reconnect_backoff_min_ms;
  if (c.reconnect_backoff_max_ms) o.backoff_max_ms = c.reconnect_backoff_max_ms;
  o.backoff_max_ms = std::max(o.backoff_max_ms, o.backoff_min_ms);
  o.curve_server_key = str_or(c.curve_server_public_key, "");
  o.curve_public_key = str_or(c.curve_client_public_key, "");
  o.curve_secret_key = str_or(c.curve_client_secret_key, "");
  o.engine = str_or(c.engine_name, "unknown");
  o.engine_version = str_or(c.engine_version, "");
  o.render_size = {c.render_width, c.render_height};
  if (c.render_width || c.render_height)
    o.output_size = {c.output_width ? c.output_width : c.render_width,
                     c.output_height ? c.output_height : c.render_height};
  else  // 0x0: the link's default render size, from the output size (ClientOptions::resolve_link)
    o.output_size = {c.output_width, c.output_height};
  if (c.buffer_count && !c.buffers) throw std::invalid_argument("buffers is NULL but buffer_count > 0");
  if (c.buffer_count > wire::kMaxBuffers) throw std::invalid_argument("at most 32 buffers");
  for (uint32_t i = 0; i < c.buffer_count; ++i) {
    wire::BufferSpec s;
    if (!c.buffers[i].name) throw std::invalid_argument("buffers[" + std::to_string(i) + "].name is NULL");
    s.name = c.buffers[i].name;
    if (!to_format(c.buffers[i].format, s.format))
      throw std::invalid_argument("buffers[" + std::to_string(i) + "]: unknown format");
    o.buffers.push_back(std::move(s));
  }
  if (c.compression > NRB_COMPRESSION_OFF) throw std::invalid_argument("compression is not an NRB_COMPRESSION_*");
  o.raw_frames = c.compression == NRB_COMPRESSION_OFF;
  o.compression = o.raw_frames ? wire::Compression::none
                               : static_cast<wire::Compression>(c.compression);  // none, lz4, zstd: same order
  o.compression_level = c.compression_level;
  o.shm_slots = c.shm_slots;
  o.start_enabled = c.start_disabled == 0;
  o.renderer = str_or(c.renderer, "");
  if (c.lossy_quality > 100) throw std::invalid_argument("lossy_quality must be 0 (off) or 1..100");
  o.lossy_quality = c.lossy_quality;
  if (c.link > NRB_LINK_REMOTE) throw std::invalid_argument("link is not an NRB_LINK_*");
  o.link = static_cast<nrb::detail::LinkMode>(c.link);
  o.exact_formats = c.exact_formats != 0;
  if (c.lossy_codec > NRB_LOSSY_CODEC_WEBP) throw std::invalid_argument("lossy_codec is not an NRB_LOSSY_CODEC_*");
  o.lossy_codec = c.lossy_codec == NRB_LOSSY_CODEC_WEBP ? "webp" : "jpeg";
  return o;
}

// Every NRB_BUFFER_* constant, in nrb.h's order (section 6.1's tables, then the lighting constants).
constexpr const char* kBufferNames[NRB_BUFFER_NAME_COUNT] = {
    NRB_BUFFER_DEPTH, NRB_BUFFER_LINEAR_DEPTH, NRB_BUFFER_MOTION_VECTORS, NRB_BUFFER_HUDLESS_COLOR,
    NRB_BUFFER_SCALING_INPUT_COLOR, NRB_BUFFER_NORMALS, NRB_BUFFER_ROUGHNESS, NRB_BUFFER_NORMAL_ROUGHNESS,
    NRB_BUFFER_ALBEDO, NRB_BUFFER_SPECULAR_ALBEDO, NRB_BUFFER_EMISSIVE, NRB_BUFFER_EXPOSURE, NRB_BUFFER_POSITION,
    NRB_BUFFER_ALPHA, NRB_BUFFER_OPAQUE_COLOR, NRB_BUFFER_UI_COLOR_AND_ALPHA, NRB_BUFFER_REACTIVE_MASK,
    NRB_BUFFER_TRANSPARENCY_AND_COMPOSITION_MASK, NRB_BUFFER_DISOCCLUSION_MASK, NRB_BUFFER_METALLIC,
    NRB_BUFFER_ROUGHNESS_METALLIC, NRB_BUFFER_NORMALS_OCT, NRB_BUFFER_MATERIAL_ID, NRB_BUFFER_OBJECT_ID,
    NRB_BUFFER_OUTPUT, NRB_BUFFER_X_SUN_DIRECTION, NRB_BUFFER_X_SUN_IRRADIANCE, NRB_BUFFER_X_SKY_RADIANCE,
    NRB_BUFFER_NEURAL_MASK, NRB_BUFFER_X_LIGHTS,
};

// Runs a params-builder call: errors go to nrb_last_error(NULL) of this thread, as for nrb_client_create.
template <class Fn>
nrb_status params_call(nrb_params* p, const char* fn_name, Fn&& fn) noexcept {
  if (!p) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, std::string(fn_name) + ": params is NULL");
  return guarded(nullptr, fn_name, [&]() -> nrb_status {
    fn(p->builder);
    return NRB_OK;
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

extern "C" {

NRB_API uint32_t nrb_get_abi_version(void) { return NRB_ABI_VERSION; }

NRB_API const char* nrb_buffer_name(uint32_t index) {
  return index < NRB_BUFFER_NAME_COUNT ? kBufferNames[index] : nullptr;
}

NRB_API nrb_status nrb_params_create(nrb_params** out_params) {
  if (!out_params) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_params_create: out_params is NULL");
  *out_params = nullptr;
  return guarded(nullptr, "nrb_params_create", [&]() -> nrb_status {
    *out_params = new nrb_params();
    return NRB_OK;
  });
}

NRB_API void nrb_params_destroy(nrb_params* params) { delete params; }

NRB_API nrb_status nrb_params_clear(nrb_params* params) {
  return params_call(params, "nrb_params_clear", [](auto& b) { b.clear(); });
}
NRB_API nrb_status nrb_params_set_nil(nrb_params* params, const char* key) {
  return params_call(params, "nrb_params_set_nil", [&](auto& b) { b.nil(key); });
}
NRB_API nrb_status nrb_params_set_bool(nrb_params* params, const char* key, int value) {
  return params_call(params, "nrb_params_set_bool", [&](auto& b) { b.boolean(key, value != 0); });
}
NRB_API nrb_status nrb_params_set_int(nrb_params* params, const char* key, int64_t value) {
  return params_call(params, "nrb_params_set_int", [&](auto& b) { b.i64(key, value); });
}
NRB_API nrb_status nrb_params_set_uint(nrb_params* params, const char* key, uint64_t value) {
  return params_call(params, "nrb_params_set_uint", [&](auto& b) { b.u64(key, value); });
}
NRB_API nrb_status nrb_params_set_float(nrb_params* params, const char* key, double value) {
  return params_call(params, "nrb_params_set_float", [&](auto& b) { b.f64(key, value); });
}
NRB_API nrb_status nrb_params_set_string(nrb_params* params, const char* key, const char* value) {
  return params_call(params, "nrb_params_set_string", [&](auto& b) {
    if (!value) throw std::invalid_argument("value is NULL");
    b.str(key, value);
  });
}
NRB_API nrb_status nrb_params_set_string_n(nrb_params* params, const char* key, const char* value, size_t size) {
  return params_call(params, "nrb_params_set_string_n", [&](auto& b) {
    if (!value && size) throw std::invalid_argument("value is NULL but size > 0");
    b.str(key, std::string_view(value ? value : "", size));
  });
}
NRB_API nrb_status nrb_params_set_bytes(nrb_params* params, const char* key, const void* data, size_t size) {
  return params_call(params, "nrb_params_set_bytes", [&](auto& b) { b.bin(key, data, size); });
}
NRB_API nrb_status nrb_params_begin_map(nrb_params* params, const char* key) {
  return params_call(params, "nrb_params_begin_map", [&](auto& b) { b.begin_map(key); });
}
NRB_API nrb_status nrb_params_begin_array(nrb_params* params, const char* key) {
  return params_call(params, "nrb_params_begin_array", [&](auto& b) { b.begin_array(key); });
}
NRB_API nrb_status nrb_params_end(nrb_params* params) {
  return params_call(params, "nrb_params_end", [](auto& b) { b.end(); });
}

NRB_API nrb_status nrb_params_data(const nrb_params* params, const void** out_data, size_t* out_size) {
  if (!params) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_params_data: params is NULL");
  return guarded(nullptr, "nrb_params_data", [&]() -> nrb_status {
    if (!out_data || !out_size) throw std::invalid_argument("out_data/out_size is NULL");
    const std::vector<uint8_t>& e = params->builder.encoded();
    *out_data = e.data();
    *out_size = e.size();
    return NRB_OK;
  });
}

NRB_API uint32_t nrb_get_version(void) { return NRB_VERSION; }

NRB_API const char* nrb_get_version_string(void) { return "0.1.0"; }

NRB_API const char* nrb_status_name(nrb_status s) {
  switch (s) {
    case NRB_OK: return "NRB_OK";
    case NRB_NO_RESULT: return "NRB_NO_RESULT";
    case NRB_ERROR_INVALID_ARGUMENT: return "NRB_ERROR_INVALID_ARGUMENT";
    case NRB_ERROR_INVALID_STATE: return "NRB_ERROR_INVALID_STATE";
    case NRB_ERROR_UNSUPPORTED_VERSION: return "NRB_ERROR_UNSUPPORTED_VERSION";
    case NRB_ERROR_OUT_OF_MEMORY: return "NRB_ERROR_OUT_OF_MEMORY";
    case NRB_ERROR_LIMIT_EXCEEDED: return "NRB_ERROR_LIMIT_EXCEEDED";
    case NRB_ERROR_NOT_FOUND: return "NRB_ERROR_NOT_FOUND";
    case NRB_ERROR_TRANSPORT: return "NRB_ERROR_TRANSPORT";
    case NRB_ERROR_INTERNAL: return "NRB_ERROR_INTERNAL";
    default: return "NRB_UNKNOWN_STATUS";
  }
}

NRB_API uint32_t nrb_format_bytes_per_pixel(nrb_format format) {
  wire::Format f;
  return to_format(format, f) ? wire::bytes_per_pixel(f) : 0;
}

NRB_API const char* nrb_format_name(nrb_format format) {
  wire::Format f;
  return to_format(format, f) ? wire::format_name(f).data() : nullptr;  // the table's literals are NUL-terminated
}

NRB_API void nrb_client_config_init(nrb_client_config* config) {
  if (!config) return;
  std::memset(config, 0, sizeof *config);
  config->struct_size = sizeof *config;
  config->struct_version = NRB_CLIENT_CONFIG_VERSION;
}

NRB_API void nrb_camera_init(nrb_camera* camera) {
  if (!camera) return;
  std::memset(camera, 0, sizeof *camera);
  camera->struct_size = sizeof *camera;
  camera->struct_version = NRB_CAMERA_VERSION;
}

NRB_API void nrb_light_init(nrb_light* light) {
  if (!light) return;
  std::memset(light, 0, sizeof *light);
  light->struct_size = sizeof *light;
  light->struct_version = NRB_LIGHT_VERSION;
  light->direction[1] = -1.0f;
}

NRB_API nrb_status nrb_client_create(const nrb_client_config* config, nrb_client** out_client) {
  create_error().clear();
  if (!out_client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_client_create: out_client is NULL");
  *out_client = nullptr;
  return guarded(nullptr, "nrb_client_create", [&]() -> nrb_status {
    nrb_client_config cfg;
    // struct_version 1 ends before `renderer`: a v1 caller asks for no renderer and exact images
    if (nrb_status s = read_struct(nullptr, config, NRB_CLIENT_CONFIG_VERSION, "config", cfg,
                                   offsetof(nrb_client_config, renderer)))
      return s;
    if (config->struct_version < 2) cfg.renderer = nullptr, cfg.lossy_quality = 0;
    // before struct_version 3 there were no link defaults: such a caller keeps what it asked for on any link
    if (config->struct_version < 3) cfg.link = NRB_LINK_LOCAL, cfg.exact_formats = 0, cfg.lossy_codec = 0;
    nrb::detail::ClientOptions opts = options_of(cfg);
    nrb::detail::Logger log;
    if (cfg.log_fn) {
      nrb_log_fn fn = cfg.log_fn;
      void* user = cfg.log_user;
      log = nrb::detail::Logger(
          [fn, user](nrb::detail::LogLevel level, const std::string& msg) {
            fn(user, static_cast<nrb_log_level>(level), msg.c_str());
          },
          static_cast<nrb::detail::LogLevel>(std::min<uint32_t>(cfg.log_level, NRB_LOG_ERROR)));
    }
    auto c = std::make_unique<nrb_client>();
    c->impl = std::make_unique<Client>(std::move(opts), std::move(log));
    *out_client = c.release();
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_endpoint_link(const char* endpoint, nrb_link* out_link) {
  if (!endpoint || !out_link) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_endpoint_link: NULL argument");
  return guarded(nullptr, "nrb_endpoint_link", [&]() -> nrb_status {
    *out_link = nrb::detail::endpoint_is_local(endpoint) ? NRB_LINK_LOCAL : NRB_LINK_REMOTE;
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_client_get_link(const nrb_client* client, nrb_link* out_link, uint32_t* out_render_width,
                                       uint32_t* out_render_height) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_client_get_link: client is NULL");
  const auto& o = client->impl->options();
  if (out_link) *out_link = o.remote ? NRB_LINK_REMOTE : NRB_LINK_LOCAL;
  if (out_render_width) *out_render_width = o.render_size.width;
  if (out_render_height) *out_render_height = o.render_size.height;
  return NRB_OK;
}

NRB_API void nrb_client_destroy(nrb_client* client) {
  try {
    delete client;
  } catch (...) {
  }
}

NRB_API nrb_status nrb_frame_begin(nrb_client* client, const nrb_frame_info* info, uint64_t* out_frame_id) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_frame_begin: client is NULL");
  return guarded(client, "nrb_frame_begin", [&]() -> nrb_status {
    double dt = -1.0, deadline = 0.0;
    if (info) {
      nrb_frame_info fi;
      if (nrb_status s = read_struct(client, info, NRB_FRAME_INFO_VERSION, "info", fi)) return s;
      if (fi.dt > 10.0 || fi.dt != fi.dt) throw std::invalid_argument("dt must be at most 10 seconds");
      dt = fi.dt > 0.0 ? fi.dt : -1.0;  // 0 (the zeroed default) or negative: measured
      deadline = fi.deadline_ms;
    }
    uint64_t id = client->impl->begin(dt, deadline);
    if (out_frame_id) *out_frame_id = id;
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_frame_tag_buffer(nrb_client* client, const nrb_buffer_desc* desc) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_frame_tag_buffer: client is NULL");
  return guarded(client, "nrb_frame_tag_buffer", [&]() -> nrb_status {
    nrb_buffer_desc d;
    if (nrb_status s = read_struct(client, desc, NRB_BUFFER_DESC_VERSION, "desc", d)) return s;
    client->impl->tag_buffer(buffer_args(d), d.data);
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_frame_acquire_slot(nrb_client* client, const nrb_buffer_desc* desc, void** out_data,
                                          uint32_t* out_stride) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_frame_acquire_slot: client is NULL");
  return guarded(client, "nrb_frame_acquire_slot", [&]() -> nrb_status {
    if (!out_data) throw std::invalid_argument("out_data is NULL");
    *out_data = nullptr;
    nrb_buffer_desc d;
    if (nrb_status s = read_struct(client, desc, NRB_BUFFER_DESC_VERSION, "desc", d)) return s;
    uint64_t stride = 0;
    *out_data = client->impl->acquire_slot(buffer_args(d), &stride);
    if (out_stride) *out_stride = static_cast<uint32_t>(stride);
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_frame_set_camera(nrb_client* client, const nrb_camera* camera) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_frame_set_camera: client is NULL");
  return guarded(client, "nrb_frame_set_camera", [&]() -> nrb_status {
    nrb_camera cam;
    // struct_version 1 ends before tone_mapping: a v1 caller's camera sends no tone_mapping
    if (nrb_status s = read_struct(client, camera, NRB_CAMERA_VERSION, "camera", cam,
                                   offsetof(nrb_camera, tone_mapping)))
      return s;
    if (camera->struct_version < 2) cam.tone_mapping = NRB_TONE_MAPPING_UNSET;
    client->impl->set_camera(camera_of(cam));
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_frame_set_lights(nrb_client* client, const nrb_light* lights, uint32_t count) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_frame_set_lights: client is NULL");
  return guarded(client, "nrb_frame_set_lights", [&]() -> nrb_status {
    if (count > NRB_MAX_LIGHTS)
      throw std::out_of_range("at most " + std::to_string(NRB_MAX_LIGHTS) + " lights per frame, got " +
                              std::to_string(count));
    std::vector<nrb::detail::Light> list;
    list.reserve(count);
    if (count > 0) {
      if (!lights) throw std::invalid_argument("lights is NULL");
      // the caller's struct_size is the array's stride (a newer header's larger struct walks correctly)
      const size_t stride = lights->struct_size;
      const auto* base = reinterpret_cast<const unsigned char*>(lights);
      for (uint32_t i = 0; i < count; ++i) {
        const auto* in = reinterpret_cast<const nrb_light*>(base + i * stride);
        nrb_light l;
        if (in->struct_size != stride)
          throw std::invalid_argument("lights[" + std::to_string(i) + "]: struct_size differs from lights[0]'s");
        if (nrb_status s = read_struct(client, in, NRB_LIGHT_VERSION, "light", l)) return s;
        nrb::detail::Light d;
        d.type = l.type;
        for (int k = 0; k < 3; ++k) {
          d.position[k] = l.position[k];
          d.direction[k] = l.direction[k];
          d.color[k] = l.color[k];
        }
        d.range = l.range;
        d.inner_cone = l.inner_cone;
        d.outer_cone = l.outer_cone;
        list.push_back(d);
      }
    }
    client->impl->set_lights(list);
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_frame_submit(nrb_client* client) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_frame_submit: client is NULL");
  return guarded(client, "nrb_frame_submit", [&]() -> nrb_status {
    client->impl->submit();
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_fire_event(nrb_client* client, const char* name, const void* params, size_t params_size,
                                  const nrb_target* target) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_fire_event: client is NULL");
  return guarded(client, "nrb_fire_event", [&]() -> nrb_status {
    if (!name) throw std::invalid_argument("event name is NULL");
    client->impl->fire_event(nrb::detail::make_event(name, params, params_size, target_of(target)));
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_fire_event_params(nrb_client* client, const char* name, const nrb_params* params,
                                         const nrb_target* target) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_fire_event_params: client is NULL");
  return guarded(client, "nrb_fire_event_params", [&]() -> nrb_status {
    if (!name) throw std::invalid_argument("event name is NULL");
    static const uint8_t kEmptyMap = 0x80;
    const uint8_t* data = &kEmptyMap;
    size_t size = 1;
    if (params) {
      const std::vector<uint8_t>& e = params->builder.encoded();
      data = e.data();
      size = e.size();
    }
    client->impl->fire_event(nrb::detail::make_event(name, data, size, target_of(target)));
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_set_style(nrb_client* client, const char* style, double strength, double over_seconds,
                                 const nrb_target* target) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_set_style: client is NULL");
  return guarded(client, "nrb_set_style", [&]() -> nrb_status {
    if (!style) throw std::invalid_argument("style name is NULL");
    client->impl->set_style(nrb::detail::make_style(style, strength, over_seconds, target_of(target)));
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_set_style_params(nrb_client* client, const char* style, const nrb_params* params,
                                        double strength, double over_seconds, const nrb_target* target) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_set_style_params: client is NULL");
  return guarded(client, "nrb_set_style_params", [&]() -> nrb_status {
    if (!style) throw std::invalid_argument("style name is NULL");
    const void* data = nullptr;
    size_t size = 0;
    if (params) {
      const std::vector<uint8_t>& e = params->builder.encoded();
      data = e.data();
      size = e.size();
    }
    client->impl->set_style(
        nrb::detail::make_style_params(style, data, size, strength, over_seconds, target_of(target)));
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_set_intensity(nrb_client* client, double value, double over_seconds) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_set_intensity: client is NULL");
  return guarded(client, "nrb_set_intensity", [&]() -> nrb_status {
    client->impl->set_control(nrb::detail::make_intensity(value, over_seconds));
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_exclude(nrb_client* client, const nrb_target* target, int excluded) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_exclude: client is NULL");
  return guarded(client, "nrb_exclude", [&]() -> nrb_status {
    client->impl->set_control(nrb::detail::make_exclude(target_of(target), excluded != 0));
    return NRB_OK;
  });
}

NRB_API const char* nrb_tone_mapping_name(nrb_tone_mapping tone_mapping) {
  if (tone_mapping == NRB_TONE_MAPPING_UNSET || tone_mapping > NRB_TONE_MAPPING_COUNT) return nullptr;
  return wire::tone_mapping_name(static_cast<wire::ToneMapping>(tone_mapping - NRB_TONE_MAPPING_NONE)).data();
}

NRB_API nrb_status nrb_acquire_result(nrb_client* client, nrb_result* out_result) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_acquire_result: client is NULL");
  return guarded(client, "nrb_acquire_result", [&]() -> nrb_status {
    if (!out_result) throw std::invalid_argument("out_result is NULL");
    if (out_result->struct_version == 0 || out_result->struct_size < sizeof(nrb_result))
      return fail(client, NRB_ERROR_UNSUPPORTED_VERSION, "nrb_acquire_result: struct_size/struct_version not set");
    uint64_t age = 0;
    auto img = client->impl->acquire_result(&age);
    if (!img) return NRB_NO_RESULT;
    nrb_result r{};
    r.frame_id = img->frame_id;
    r.age_frames = age;
    r.pixels = img->pixels;
    r.width = img->width;
    r.height = img->height;
    r.stride = static_cast<uint32_t>(img->stride);
    r.format = from_format(img->format);
    r.round_trip_ms = img->round_trip_ms;
    r.server_ms = img->server_ms;
    {
      std::lock_guard<std::mutex> lock(client->mutex);
      client->held.push_back(img);
    }
    return write_struct(client, out_result, r, "out_result");
  });
}

NRB_API nrb_status nrb_release_result(nrb_client* client, const nrb_result* result) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_release_result: client is NULL");
  return guarded(client, "nrb_release_result", [&]() -> nrb_status {
    if (!result) throw std::invalid_argument("result is NULL");
    std::shared_ptr<const ResultImage> released;  // freed after the lock
    std::lock_guard<std::mutex> lock(client->mutex);
    auto& h = client->held;
    for (auto it = h.begin(); it != h.end(); ++it) {
      if ((*it)->frame_id == result->frame_id && (*it)->pixels == result->pixels) {
        released = std::move(*it);
        h.erase(it);
        return NRB_OK;
      }
    }
    return fail(client, NRB_ERROR_NOT_FOUND, "nrb_release_result: this result is not held");
  });
}

NRB_API nrb_status nrb_set_enabled(nrb_client* client, int enabled) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_set_enabled: client is NULL");
  return guarded(client, "nrb_set_enabled", [&]() -> nrb_status {
    client->impl->set_enabled(enabled != 0);
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_frame_get_live(const nrb_client* client, int* out_live) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_frame_get_live: client is NULL");
  return guarded(client, "nrb_frame_get_live", [&]() -> nrb_status {
    if (!out_live) throw std::invalid_argument("out_live is NULL");
    *out_live = client->impl->frame_live() ? 1 : 0;
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_get_sending(const nrb_client* client, int* out_sending) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_get_sending: client is NULL");
  return guarded(client, "nrb_get_sending", [&]() -> nrb_status {
    if (!out_sending) throw std::invalid_argument("out_sending is NULL");
    *out_sending = client->impl->sending() ? 1 : 0;
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_get_enabled(const nrb_client* client, int* out_enabled) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_get_enabled: client is NULL");
  return guarded(client, "nrb_get_enabled", [&]() -> nrb_status {
    if (!out_enabled) throw std::invalid_argument("out_enabled is NULL");
    *out_enabled = client->impl->enabled() ? 1 : 0;
    return NRB_OK;
  });
}

NRB_API nrb_status nrb_get_stats(const nrb_client* client, nrb_stats* out_stats) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_get_stats: client is NULL");
  return guarded(client, "nrb_get_stats", [&]() -> nrb_status {
    auto s = client->impl->stats();
    nrb_stats o{};
    o.frames_submitted = s.frames_submitted;
    o.frames_sent = s.frames_sent;
    o.frames_dropped = s.frames_dropped;
    o.results_received = s.results_received;
    o.results_late = s.results_late;
    o.frames_lost = s.frames_lost;
    o.errors_received = s.errors_received;
    o.fallbacks = s.fallbacks;
    o.events_sent = s.events_sent;
    o.events_pending = s.events_pending;
    o.events_discarded = s.events_discarded;
    o.bytes_sent = s.bytes_sent;
    o.bytes_received = s.bytes_received;
    o.reconnects = s.reconnects;
    o.in_flight = s.in_flight;
    o.rtt_p50_ms = s.rtt_p50_ms;
    o.rtt_p95_ms = s.rtt_p95_ms;
    o.rtt_p99_ms = s.rtt_p99_ms;
    o.state = !s.enabled    ? NRB_STATE_DISABLED
              : s.session ? NRB_STATE_CONNECTED
              : s.refused ? NRB_STATE_REFUSED
                          : NRB_STATE_CONNECTING;
    o.shm_active = s.shm_active ? 1u : 0u;
    o.compression_active = static_cast<nrb_compression>(s.compression);
    o.session = s.session;
    o.doorbell_active = s.doorbell_active ? 1u : 0u;
    o.refusal_code = s.refusal_code;
    copy_utf8(o.refusal_message, sizeof o.refusal_message, s.refusal_message);
    o.in_flight_limit = s.in_flight_limit;
    o.service_ms = s.service_ms;
    o.link_ms = s.link_ms;
    // Version 1 of nrb_stats ended at `session`, version 2 at `doorbell_active`. A version-2 caller's struct_size
    // includes the padding where refusal_code now lies, so the caller's version bounds what is written as well.
    return write_struct(client, out_stats, o, "out_stats", stats_size(1),
                        out_stats ? stats_size(out_stats->struct_version) : sizeof o);
  });
}

NRB_API nrb_status nrb_client_retry(nrb_client* client) {
  if (!client) return fail(nullptr, NRB_ERROR_INVALID_ARGUMENT, "nrb_client_retry: client is NULL");
  return guarded(client, "nrb_client_retry", [&]() -> nrb_status {
    client->impl->retry();
    return NRB_OK;
  });
}

NRB_API const char* nrb_last_error(const nrb_client* client) {
  thread_local std::string copy;
  try {
    if (!client) {
      copy = create_error();
    } else {
      copy = client->impl->last_error();
    }
  } catch (...) {
    return "";
  }
  return copy.c_str();
}

}  // extern "C"
