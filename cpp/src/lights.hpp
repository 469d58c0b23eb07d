// The light list (docs/protocol.md section 6.1, `x_lights`): the engine's punctual lights packed as one rgba32f
// buffer, 4 texels per light, one row per light. The layout and the checks mirror bridge/lights.py (the Python
// reference), so libnrb never sends a list a renderer would refuse.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace nrb::detail {

inline constexpr uint32_t kMaxLights = 64;
inline constexpr uint32_t kLightTexels = 4;
inline constexpr const char* kLightsBuffer = "x_lights";

struct Light {
  uint32_t type = 0;  // 0 point, 1 spot, 2 directional
  std::array<float, 3> position{};
  std::array<float, 3> direction{0.0f, -1.0f, 0.0f};
  std::array<float, 3> color{};
  float range = 0.0f;
  float inner_cone = 0.0f;
  float outer_cone = 0.0f;
};

// Checks `lights` (std::invalid_argument naming "lights[i].field"; more than kMaxLights: std::out_of_range) and
// returns their rows: lights.size() x kLightTexels x 4 floats, top row first.
std::vector<float> pack_lights(const std::vector<Light>& lights);

}  // namespace nrb::detail
