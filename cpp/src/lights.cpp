#include "lights.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace nrb::detail {

namespace {
constexpr double kUnitTolerance = 1e-3;  // bridge.lights.UNIT_TOLERANCE
constexpr double kPi = 3.14159265358979323846;

[[noreturn]] void bad(size_t i, const char* field, const std::string& why) {
  throw std::invalid_argument("lights[" + std::to_string(i) + "]." + field + ": " + why);
}

bool finite3(const std::array<float, 3>& v) {
  return std::isfinite(v[0]) && std::isfinite(v[1]) && std::isfinite(v[2]);
}
}  // namespace

std::vector<float> pack_lights(const std::vector<Light>& lights) {
  if (lights.size() > kMaxLights)
    throw std::out_of_range("at most " + std::to_string(kMaxLights) + " lights per frame, got " +
                            std::to_string(lights.size()));
  std::vector<float> rows(lights.size() * kLightTexels * 4, 0.0f);
  for (size_t i = 0; i < lights.size(); ++i) {
    const Light& l = lights[i];
    if (l.type > 2) bad(i, "type", std::to_string(l.type) + " is not NRB_LIGHT_POINT, _SPOT or _DIRECTIONAL");
    if (!finite3(l.position)) bad(i, "position", "not finite");
    if (!finite3(l.direction)) bad(i, "direction", "not finite");
    if (!std::isfinite(l.range)) bad(i, "range", "not finite");
    if (!finite3(l.color)) bad(i, "color", "not finite");
    if (!std::isfinite(l.inner_cone) || !std::isfinite(l.outer_cone)) bad(i, "cone", "not finite");
    if (l.type != 0) {
      const double len = std::sqrt(double(l.direction[0]) * l.direction[0] + double(l.direction[1]) * l.direction[1] +
                                   double(l.direction[2]) * l.direction[2]);
      if (std::abs(len - 1.0) > kUnitTolerance)
        bad(i, "direction", "length " + std::to_string(len) + " is not 1 (within 0.001)");
    }
    if (l.range < 0.0f) bad(i, "range", std::to_string(l.range) + " is negative (0: no range window)");
    if (l.color[0] < 0.0f || l.color[1] < 0.0f || l.color[2] < 0.0f) bad(i, "color", "has a negative channel");
    if (l.type == 1) {
      if (!(l.outer_cone > 0.0f && l.outer_cone <= kPi)) bad(i, "outer_cone", "is outside (0, pi]");
      if (!(l.inner_cone >= 0.0f && l.inner_cone <= l.outer_cone))
        bad(i, "inner_cone", "is outside [0, outer_cone]: the outer cone must not be narrower than the inner one");
    }
    float* r = rows.data() + i * kLightTexels * 4;
    for (int k = 0; k < 3; ++k) {
      r[0 + k] = l.position[k];
      r[4 + k] = l.direction[k];
      r[8 + k] = l.color[k];
    }
    r[3] = float(l.type);
    r[7] = l.range;
    r[12] = l.inner_cone;
    r[13] = l.outer_cone;
  }
  return rows;
}

}  // namespace nrb::detail
