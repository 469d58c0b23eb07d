// nrb pack pass, fragment stage: turns the G-buffer targets into the exact bytes of the wire buffers
// (docs/protocol.md section 6.2), so that the readback is the buffer and Python only copies it into the frame's
// shared-memory slot. Every output is an rgba8 target, i.e. 4 bytes per texel; a wire buffer of B bytes per pixel
// gets a target B/4 times as wide as the render (nrb_panda3d/pack.py lists the groups). The plugin prepends
// "#define GROUP_..." for the group this buffer renders.
//
// Two Panda3D conventions are undone here, in the shader, instead of per pixel in numpy:
// * RAM images are bottom row first: output row r reads source row H-1-r, so memory row r is wire row r (top first);
// * rgba8 RAM images are stored B, G, R, A: a texel written as (r, g, b, a) lands in memory as b, g, r, a.
// Float buffers are written as their IEEE bit patterns (floatBitsToUint; halves rounded to nearest even, as numpy's
// astype(float16) does), four bytes at a time.

uniform sampler2D nrb_albedo;        // rgba8: base colour (sRGB-encoded)
uniform sampler2D nrb_surface;       // rgba8: roughness, metallic
uniform sampler2D nrb_normal;        // rgba16f: world normal
uniform sampler2D nrb_emissive;      // rgba16f: emitted radiance
uniform sampler2D nrb_depth_motion;  // rgba32f: depth, linear depth, motion x, motion y
uniform sampler2D nrb_ids;           // rgba32f: material id, object id
uniform sampler2D nrb_color;         // the game's raster image (window size), for hudless_color
uniform vec2 nrb_render_size;        // W, H of the G-buffers
uniform vec4 nrb_color_ratio;        // window / render size (x, y): the box that hudless_color averages
// rows of the camera's clip_to_prev_clip (column-vector convention), for the motion of sky pixels
uniform vec4 nrb_c2p0;
uniform vec4 nrb_c2p1;
uniform vec4 nrb_c2p2;
uniform vec4 nrb_c2p3;

vec4 bytes_out(uint b0, uint b1, uint b2, uint b3) {
  // memory order b0 b1 b2 b3 after Panda3D's BGRA readback
  return vec4(float(b2), float(b1), float(b0), float(b3)) / 255.0;
}

vec4 word_out(uint w) {  // one little-endian 32-bit word
  return bytes_out(w & 255u, (w >> 8) & 255u, (w >> 16) & 255u, w >> 24);
}

uint unorm8(float v) { return uint(clamp(v, 0.0, 1.0) * 255.0 + 0.5); }

vec4 rgba8_out(vec4 c) { return bytes_out(unorm8(c.r), unorm8(c.g), unorm8(c.b), unorm8(c.a)); }

// float32 -> float16 bits, round to nearest even (numpy's astype(float16)), with subnormals, inf and nan
uint half_bits(float f) {
  uint x = floatBitsToUint(f);
  uint sign = (x >> 16) & 0x8000u;
  uint e = (x >> 23) & 0xffu;
  uint m = x & 0x7fffffu;
  if (e == 255u) return sign | 0x7c00u | (m != 0u ? 0x200u : 0u);
  int ee = int(e) - 112;  // - 127 + 15
  if (ee >= 31) return sign | 0x7c00u;
  if (ee <= 0) {
    if (ee < -10) return sign;
    m |= 0x800000u;
    uint shift = uint(14 - ee);
    uint hm = m >> shift;
    uint rem = m & ((1u << shift) - 1u);
    uint halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (hm & 1u) != 0u)) hm += 1u;
    return sign | hm;
  }
  uint h = sign | (uint(ee) << 10) | (m >> 13);
  uint rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) h += 1u;  // a carry rounds into the exponent: right
  return h;
}

vec4 halves_out(float a, float b) { return word_out(half_bits(a) | (half_bits(b) << 16)); }

ivec2 src(int x, int row) { return ivec2(x, int(nrb_render_size.y) - 1 - row); }

// motion vectors as the Python path had them: sky pixels (depth 1) move with the camera alone, no nan or inf,
// clamped to the range of a half
vec2 motion(int x, int row) {
  vec4 dm = texelFetch(nrb_depth_motion, src(x, row), 0);
  vec2 mv = dm.zw;
  if (dm.x >= 1.0) {
    vec2 size = nrb_render_size;
    vec4 clip = vec4((float(x) + 0.5) / size.x * 2.0 - 1.0, 1.0 - (float(row) + 0.5) / size.y * 2.0, 0.999999, 1.0);
    vec4 prev = vec4(dot(nrb_c2p0, clip), dot(nrb_c2p1, clip), dot(nrb_c2p2, clip), dot(nrb_c2p3, clip));
    float w = abs(prev.w) < 1e-12 ? 1e-12 : prev.w;
    mv = vec2((prev.x / w - clip.x) * 0.5 * size.x, -(prev.y / w - clip.y) * 0.5 * size.y);
  }
  mv = mix(mv, vec2(0.0), bvec2(isnan(mv.x) || isinf(mv.x), isnan(mv.y) || isinf(mv.y)));
  return clamp(mv, -60000.0, 60000.0);
}

uint id16(float v) { return uint(clamp(roundEven(v), 0.0, 65535.0)); }

#ifdef GROUP_FULL
layout(location = 0) out vec4 o_albedo;          // rgba8_srgb
layout(location = 1) out vec4 o_depth;           // r32f
layout(location = 2) out vec4 o_linear_depth;    // r32f
layout(location = 3) out vec4 o_motion_vectors;  // rg16f
layout(location = 4) out vec4 o_hudless_color;   // rgba8_srgb (window image averaged down to the render size)
#endif
#ifdef GROUP_DOUBLE
layout(location = 0) out vec4 o_normals;         // rgba16f: texel 2x = (x, y), 2x + 1 = (z, w)
layout(location = 1) out vec4 o_emissive;        // rgba16f
#endif
#ifdef GROUP_HALF
layout(location = 0) out vec4 o_material_id;     // r16u: texel x = pixels 2x, 2x + 1
layout(location = 1) out vec4 o_object_id;       // r16u
#endif
#ifdef GROUP_QUARTER
layout(location = 0) out vec4 o_roughness;       // r8: texel x = pixels 4x .. 4x + 3
layout(location = 1) out vec4 o_metallic;        // r8
#endif

void main() {
  int ox = int(gl_FragCoord.x);
  int row = int(gl_FragCoord.y);
#ifdef GROUP_FULL
  o_albedo = rgba8_out(texelFetch(nrb_albedo, src(ox, row), 0));
  vec4 dm = texelFetch(nrb_depth_motion, src(ox, row), 0);
  o_depth = word_out(floatBitsToUint(dm.x));
  o_linear_depth = word_out(floatBitsToUint(dm.y));
  vec2 mv = motion(ox, row);
  o_motion_vectors = halves_out(mv.x, mv.y);
  ivec2 r = ivec2(nrb_color_ratio.xy);
  ivec2 csize = textureSize(nrb_color, 0);
  vec4 acc = vec4(0.0);
  for (int j = 0; j < r.y; ++j)
    for (int i = 0; i < r.x; ++i)
      acc += texelFetch(nrb_color, ivec2(ox * r.x + i, csize.y - 1 - (row * r.y + j)), 0);
  o_hudless_color = rgba8_out(acc / float(r.x * r.y));
#endif
#ifdef GROUP_DOUBLE
  vec4 n = texelFetch(nrb_normal, src(ox / 2, row), 0);
  vec4 e = texelFetch(nrb_emissive, src(ox / 2, row), 0);
  bool hi = (ox & 1) != 0;
  o_normals = hi ? halves_out(n.z, n.w) : halves_out(n.x, n.y);
  o_emissive = hi ? halves_out(e.z, e.w) : halves_out(e.x, e.y);
#endif
#ifdef GROUP_HALF
  vec4 a = texelFetch(nrb_ids, src(2 * ox, row), 0);
  vec4 b = texelFetch(nrb_ids, src(2 * ox + 1, row), 0);
  o_material_id = word_out(id16(a.x) | (id16(b.x) << 16));
  o_object_id = word_out(id16(a.y) | (id16(b.y) << 16));
#endif
#ifdef GROUP_QUARTER
  vec4 s0 = texelFetch(nrb_surface, src(4 * ox, row), 0);
  vec4 s1 = texelFetch(nrb_surface, src(4 * ox + 1, row), 0);
  vec4 s2 = texelFetch(nrb_surface, src(4 * ox + 2, row), 0);
  vec4 s3 = texelFetch(nrb_surface, src(4 * ox + 3, row), 0);
  o_roughness = bytes_out(unorm8(s0.x), unorm8(s1.x), unorm8(s2.x), unorm8(s3.x));
  o_metallic = bytes_out(unorm8(s0.y), unorm8(s1.y), unorm8(s2.y), unorm8(s3.y));
#endif
}
