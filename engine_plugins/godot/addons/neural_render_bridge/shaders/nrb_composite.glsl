#[compute]
#version 450
// Neural Render Bridge, Godot: writes the neural frame (RGBA8, top row first; sRGB-encoded when the result's format
// is rgba8_srgb, linear when it is rgba8) into the scene's colour layer. The colour layer is linear and is
// tonemapped afterwards, so the frame is linearised and divided by the exposure: with the Linear tonemapper (no glow
// or adjustments) the image on screen is exactly the neural frame.

layout(local_size_x = 8, local_size_y = 8, local_size_z = 1) in;

layout(rgba16f, set = 0, binding = 0) uniform restrict writeonly image2D color_image;
layout(set = 0, binding = 1) uniform sampler2D neural_tex;

layout(push_constant, std430) uniform Params {
	vec2 size;
	float inv_exposure;
	float srgb; // 1: the pixels are sRGB-encoded (rgba8_srgb), 0: linear (rgba8)
} params;

void main() {
	ivec2 p = ivec2(gl_GlobalInvocationID.xy);
	if (p.x >= int(params.size.x) || p.y >= int(params.size.y)) {
		return;
	}
	vec2 uv = (vec2(p) + 0.5) / params.size;
	vec3 c = texture(neural_tex, uv).rgb;
	vec3 decoded = mix(c / 12.92, pow((c + 0.055) / 1.055, vec3(2.4)), step(vec3(0.04045), c));
	vec3 lin = params.srgb > 0.5 ? decoded : c;
	imageStore(color_image, p, vec4(lin * params.inv_exposure, 1.0));
}
