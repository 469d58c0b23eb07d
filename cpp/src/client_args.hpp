// Validation of what the engine hands the client, so that nothing the client sends can be rejected by a renderer
// for a reason the engine could have been told about synchronously (a poisoned event would otherwise be re-sent
// forever). Each function throws std::invalid_argument with a message naming the field, or returns the value in
// wire form.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol.hpp"

namespace nrb::detail {

// The G-buffer arguments of tag_buffer / acquire_slot.
struct BufferArgs {
  std::string name;
  wire::Format format = wire::Format::rgba8;
  uint32_t width = 0, height = 0;
  uint64_t stride = 0;  // 0: tight
  bool depth_reversed = false, depth_infinite = false;
};

bool valid_utf8(std::string_view s) noexcept;

// Checks name/format/size/stride (resolving stride 0 to width * bytes per pixel); throws std::invalid_argument or,
// for sizes beyond the protocol's limits, std::out_of_range.
void check_buffer(BufferArgs& b);

// A `str` of 1..max_len bytes (or 0..max_len when allow_empty), valid UTF-8.
std::string check_string(std::string_view s, const char* what, size_t max_len, bool allow_empty = false);

wire::Target make_target(wire::Scope scope, const uint32_t* ids, size_t count);

// Validates a msgpack params map and returns its canonical encoding (empty input: the empty map).
std::vector<uint8_t> make_params(const void* msgpack, size_t size);

wire::Event make_event(std::string_view name, const void* params, size_t params_size, wire::Target target);
wire::StyleCommand make_style(std::string_view style, double strength, double over, wire::Target target);
// A run-time style (stylecmd params): make_style plus the parameter set, a msgpack map (as nrb_params builds it;
// NULL/0: the empty set) whose shapes are checked here (std::invalid_argument naming the key; std::out_of_range for
// more than 32 entries). Names and ranges are the renderer's.
wire::StyleCommand make_style_params(std::string_view style, const void* params, size_t params_size, double strength,
                                     double over, wire::Target target);
// FRAME controls: intensity in [0, 1] over [0, 3600] s (global); exclude / include again by material or object ids
// (a global target only with excluded == false: include every id).
wire::Control make_intensity(double value, double over);
wire::Control make_exclude(wire::Target target, bool excluded);

// Camera values per docs/protocol.md section 8 (finite, near > 0, far > near or +inf, 0 < fov_y < pi, aspect > 0,
// pre_exposure > 0).
void check_camera(const wire::Camera& c);

}  // namespace nrb::detail
