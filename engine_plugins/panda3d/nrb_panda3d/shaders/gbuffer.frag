#version 330
// nrb G-buffer pass, fragment stage: six render targets (see nrb_panda3d/gbuffer.py for the layout).
uniform vec4 p3d_ColorScale;
uniform sampler2D p3d_Texture0;
uniform vec4 nrb_surface;   // roughness, metallic, material id, object id
uniform vec4 nrb_emission;  // linear emitted radiance rgb, unused
uniform vec2 nrb_render_size;

in vec4 v_clip_cur;
in vec4 v_clip_prev;
in vec3 v_normal;
in vec4 v_color;
in vec2 v_uv;
in float v_view_z;

layout(location = 0) out vec4 o_albedo;        // color target, rgba8: base colour (sRGB-encoded), alpha
layout(location = 1) out vec4 o_surface;       // aux rgba 0, rgba8: roughness, metallic
layout(location = 2) out vec4 o_normal;        // aux hrgba 0, rgba16f: world normal (protocol world, +Y up)
layout(location = 3) out vec4 o_emissive;      // aux hrgba 1, rgba16f: emitted radiance
layout(location = 4) out vec4 o_depth_motion;  // aux float 0, rgba32f: depth, linear depth, motion x, motion y
layout(location = 5) out vec4 o_ids;           // aux float 1, rgba32f: material id, object id

void main() {
  vec4 base = v_color * p3d_ColorScale * texture(p3d_Texture0, v_uv);
  o_albedo = vec4(clamp(base.rgb, 0.0, 1.0), 1.0);
  o_surface = vec4(clamp(nrb_surface.xy, 0.0, 1.0), 0.0, 1.0);
  vec3 n = normalize(v_normal);
  if (!gl_FrontFacing) n = -n;
  o_normal = vec4(n, 1.0);
  o_emissive = vec4(nrb_emission.rgb, 1.0);
  vec2 ndc_cur = v_clip_cur.xy / v_clip_cur.w;
  vec2 ndc_prev = v_clip_prev.xy / v_clip_prev.w;
  // current -> previous, in pixels, x right, y down (rows are top-down on the wire)
  vec2 mv = (ndc_prev - ndc_cur) * 0.5 * nrb_render_size * vec2(1.0, -1.0);
  o_depth_motion = vec4(gl_FragCoord.z, v_view_z, mv);
  o_ids = vec4(nrb_surface.z, nrb_surface.w, 0.0, 1.0);
}
