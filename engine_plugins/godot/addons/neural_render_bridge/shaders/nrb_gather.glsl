#[compute]
#version 450
// Neural Render Bridge, Godot: gathers this frame's buffers into tightly packed, copyable textures that the
// compositor effect reads back and sends (protocol names in brackets):
//   color (linear HDR, before tonemapping)      -> out_hudless    [hudless_color, rgba8_srgb: x exposure, clamped]
//   albedo pass (sRGB bytes, albedo_pass.gd)    -> out_albedo     [albedo, rgba8_srgb]
//   depth (reversed Z in Godot 4.3+)            -> out_depth      [depth, r32f, depth_reversed]
//   velocity (UV units, current - previous)     -> out_motion     [motion_vectors, rg16f, pixels current->previous]
//   normal_roughness (view normal, roughness)   -> out_normal     [normal_roughness, rgba16f, world normal]
//   id pass bytes (id_pass.gd)                  -> out_object_id, out_material_id [r16u]

layout(local_size_x = 8, local_size_y = 8, local_size_z = 1) in;

layout(set = 0, binding = 0) uniform sampler2D color_tex;
layout(set = 0, binding = 1) uniform sampler2D depth_tex;
layout(set = 0, binding = 2) uniform sampler2D velocity_tex;
layout(set = 0, binding = 3) uniform sampler2D normal_roughness_tex;
layout(set = 0, binding = 4) uniform sampler2D id_tex;
layout(set = 0, binding = 5) uniform sampler2D albedo_tex;
layout(rgba8, set = 0, binding = 6) uniform restrict writeonly image2D out_hudless;
layout(rgba8, set = 0, binding = 7) uniform restrict writeonly image2D out_albedo;
layout(r32f, set = 0, binding = 8) uniform restrict writeonly image2D out_depth;
layout(rg16f, set = 0, binding = 9) uniform restrict writeonly image2D out_motion;
layout(rgba16f, set = 0, binding = 10) uniform restrict writeonly image2D out_normal;
layout(r16ui, set = 0, binding = 11) uniform restrict writeonly uimage2D out_object_id;
layout(r16ui, set = 0, binding = 12) uniform restrict writeonly uimage2D out_material_id;

layout(push_constant, std430) uniform Params {
	vec4 view_to_world_x; // rows of the camera's basis (view space -> world space), w unused
	vec4 view_to_world_y;
	vec4 view_to_world_z;
	vec2 size;
	float exposure; // the WorldEnvironment's tonemap exposure: hudless_color is what the Linear tonemapper shows
	float pad;
} params;

vec3 linear_to_srgb(vec3 c) {
	c = clamp(c, vec3(0.0), vec3(1.0));
	return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(vec3(0.0031308), c));
}

void main() {
	ivec2 p = ivec2(gl_GlobalInvocationID.xy);
	if (p.x >= int(params.size.x) || p.y >= int(params.size.y)) {
		return;
	}
	vec2 uv = (vec2(p) + 0.5) / params.size;
	vec3 shown = linear_to_srgb(texture(color_tex, uv).rgb * params.exposure);
	float depth = texture(depth_tex, uv).r;
	// Where nothing was drawn (reversed Z: depth 0 is the far plane) protocol 6.5 wants the colour the player sees
	// there as albedo (the sky; the albedo pass leaves it black) and zero normals.
	bool sky = depth <= 0.0;
	imageStore(out_hudless, p, vec4(shown, 1.0));
	imageStore(out_albedo, p, vec4(sky ? shown : texture(albedo_tex, uv).rgb, 1.0));
	imageStore(out_depth, p, vec4(depth, 0.0, 0.0, 0.0));
	vec2 velocity = texture(velocity_tex, uv).xy;
	imageStore(out_motion, p, vec4(-velocity * params.size, 0.0, 0.0));
	vec4 nr = texture(normal_roughness_tex, uv);
	vec3 n_view = normalize(nr.xyz * 2.0 - 1.0);
	vec3 n_world = normalize(vec3(dot(params.view_to_world_x.xyz, n_view),
			dot(params.view_to_world_y.xyz, n_view), dot(params.view_to_world_z.xyz, n_view)));
	// Godot 4.3 packs a "dynamic object" bit into the top of the roughness byte.
	float a8 = floor(nr.a * 255.0 + 0.5);
	float roughness = mod(a8, 128.0) / 127.0;
	imageStore(out_normal, p, vec4(sky ? vec3(0.0) : n_world, roughness));
	vec4 ids = floor(texture(id_tex, uv) * 255.0 + 0.5);
	imageStore(out_object_id, p, uvec4(uint(ids.r) + 256u * uint(ids.g), 0u, 0u, 0u));
	imageStore(out_material_id, p, uvec4(uint(ids.b), 0u, 0u, 0u));
}
