// NRBClient: libnrb's C ABI (nrb.h) as a Godot object. Thin: every method is one nrb_* call plus conversion
// between Godot types (PackedByteArray, Dictionary, Projection rows) and the C structs. The protocol logic (queues,
// deadlines, reconnects, shared memory) lives in libnrb and is tested there.
#pragma once

#include <godot_cpp/classes/ref_counted.hpp>
#include <godot_cpp/variant/dictionary.hpp>
#include <godot_cpp/variant/packed_byte_array.hpp>
#include <godot_cpp/variant/packed_int32_array.hpp>
#include <godot_cpp/variant/string.hpp>

#include <cstdint>
#include <map>
#include <vector>

#include "nrb/nrb.h"

namespace godot {

class NRBClient : public RefCounted {
  GDCLASS(NRBClient, RefCounted)

 public:
  NRBClient() = default;
  ~NRBClient() override;

  // CurveZMQ keys (Z85 text, 40 characters each, as `nrb keys show` prints them) for the next configure: all three,
  // or all empty for a plain connection. Anything else is refused with last_error, and so is every configure until
  // valid keys (or none) are set: a mistyped key never turns into an unencrypted connection.
  bool set_curve_keys(const String& server_public_key, const String& client_public_key,
                      const String& client_secret_key);
  bool configure(const String& endpoint, int64_t width, int64_t height, const Dictionary& buffers,
                 int64_t frames_in_flight, double deadline_ms, const String& engine, const String& engine_version,
                 bool enabled);
  void close();

  void set_enabled(bool enabled);
  bool is_enabled() const;

  int64_t begin_frame(double dt, double deadline_ms);
  bool tag_buffer(const String& name, const String& format, const PackedByteArray& data, int64_t width,
                  int64_t height, bool depth_reversed);
  bool set_camera(const Dictionary& camera);
  // The frame's light list (nrb_frame_set_lights, docs/protocol.md 6.1 x_lights): one Dictionary per light with
  // "type" ("point", "spot" or "directional"), "color" (Vector3 or Color: linear RGB x intensity), "position",
  // "direction" (Vector3, unit, the way it shines), "range" (0: none), "inner" and "outer" (spot cone half-angles,
  // radians). libnrb checks and packs them; false (get_last_error says which light and field) when one is bad.
  bool set_lights(const Array& lights);
  bool submit();

  // Reads this frame's gathered textures back from the RenderingDevice `rd` and submits them as one frame with
  // `constants` (name -> 16 bytes of one rgba32f pixel; under "x_lights" an Array of lights for set_lights) and
  // `camera`. `buffers` holds one
  // [name, format, texture RID, depth_reversed] array per buffer, all `width` x `height`. On Godot 4.4+ the reads
  // are asynchronous (texture_get_data_async) and the frame is submitted from the callback once every buffer has
  // arrived; the callbacks are bound to this C++ object, not to a script, so a read still pending at quit never
  // calls into (or keeps alive) a GDScript object after the script languages are gone. On 4.3,
  // texture_get_data waits for the GPU. Render thread. Returns false, reading nothing back, when libnrb would not
  // send the frame (off, not connected, or frames held back: nrb_get_sending), or when a read failed.
  bool read_back_and_submit(Object* rd, const Array& buffers, int64_t width, int64_t height,
                            const Dictionary& constants, const Dictionary& camera, double dt, double deadline_ms);
  // Read-backs started and not yet submitted (at most kMaxPendingReadBacks; older ones are abandoned).
  int64_t get_pending_read_backs() const { return static_cast<int64_t>(pending_.size()); }

  PackedByteArray acquire_result();
  int64_t get_result_width() const { return result_width_; }
  int64_t get_result_height() const { return result_height_; }
  int64_t get_result_frame() const { return static_cast<int64_t>(result_frame_); }
  String get_result_format() const;

  bool set_style(const String& style, double strength, double over, const String& scope,
                 const PackedInt32Array& ids);
  // A style written at run time (nrb_set_style_params): defines `style` with `params` (a Dictionary of style
  // parameters: a number each, 3 numbers as an Array, PackedFloat32/64Array, Vector3 or Color for an RGB one, a
  // String for "lut" and "base"), then moves the target to it as set_style does.
  bool set_style_params(const String& style, const Dictionary& params, double strength, double over,
                        const String& scope, const PackedInt32Array& ids);
  // Post controls: intensity 0 (the engine's image) .. 1 (re-rendered) over `over` seconds (nrb_set_intensity);
  // exclusion of objects or materials by id (nrb_exclude; global with excluded = false includes every id again).
  bool set_intensity(double value, double over);
  bool exclude(const String& scope, const PackedInt32Array& ids, bool excluded);
  bool fire_event(const String& name, const Dictionary& params, const String& scope, const PackedInt32Array& ids);

  // nrb.h's buffer names for GDScript, which cannot include nrb.h: {"ALBEDO": "albedo", ..., "X_SUN_DIRECTION":
  // "x_sun_direction"}, one entry per NRB_BUFFER_* constant (key: the constant without NRB_BUFFER_).
  Dictionary get_buffer_names() const;

  Dictionary get_stats() const;
  // nrb_client_get_link: {"link": "local" | "remote", "render_size": Vector2i}: libnrb's choice for the endpoint
  // (on a remote link half the configured size, compact formats); {} before configure.
  Dictionary get_link() const;
  String get_last_error() const;
  // After the renderer refused the session (state "refused"): try again (nrb_client_retry).
  bool retry();

 protected:
  static void _bind_methods();

 private:
  bool check(nrb_status status, const char* what);

  struct PendingFrame {
    Array buffers;  // [name, format, rid, depth_reversed] per buffer
    int64_t width = 0, height = 0;
    Dictionary constants, camera;
    double dt = 0.0, deadline_ms = 0.0;
    std::vector<PackedByteArray> data;
    size_t arrived = 0;
  };
  static constexpr size_t kMaxPendingReadBacks = 4;
  void on_read_back(const PackedByteArray& data, int64_t ticket, int64_t index);
  bool submit_read_back(const PendingFrame& frame);

  std::map<int64_t, PendingFrame> pending_;
  int64_t next_ticket_ = 0;

  nrb_client* client_ = nullptr;
  String error_;
  // set_curve_keys' keys, named after the nrb_client_config fields they fill; all empty: no CurveZMQ.
  String curve_server_public_key_;
  String curve_client_public_key_;
  String curve_client_secret_key_;
  uint32_t result_width_ = 0;
  uint32_t result_height_ = 0;
  uint64_t result_frame_ = 0;
  nrb_format result_format_ = NRB_FORMAT_UNKNOWN;
};

}  // namespace godot
