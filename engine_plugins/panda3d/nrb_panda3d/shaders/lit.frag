#version 330
// Per-pixel Lambert lighting with Panda3D's own light inputs: ambient, point lights and spotlights with their
// attenuation, cone and exponent (what fixed-function lighting computes per vertex), on the vertex or flat colour,
// texture 0 and the colour scale. The light count is fixed at 4 (the crypt has two torches and a spotlight).
uniform vec4 p3d_ColorScale;
uniform sampler2D p3d_Texture0;
uniform struct p3d_LightModelParameters {
	vec4 ambient;
} p3d_LightModel;
uniform struct p3d_LightSourceParameters {
	vec4 color;
	vec4 position;        // view space; w = 0 for a directional light
	vec3 spotDirection;   // view space
	float spotExponent;
	float spotCosCutoff;  // -1 for a point light
	vec3 attenuation;     // constant, linear, quadratic
} p3d_LightSource[4];

in vec3 v_pos;
in vec3 v_normal;
in vec4 v_color;
in vec2 v_uv;

out vec4 o_color;

void main() {
	vec3 n = normalize(v_normal);
	if (!gl_FrontFacing) n = -n;
	vec3 light = p3d_LightModel.ambient.rgb;
	for (int i = 0; i < 4; ++i) {
		vec4 lp = p3d_LightSource[i].position;
		vec3 l = lp.xyz - v_pos * lp.w;
		float d = length(l);
		l = d > 0.0 ? l / d : vec3(0.0, 0.0, 1.0);
		vec3 att = p3d_LightSource[i].attenuation;
		float k = lp.w == 0.0 ? 1.0 : 1.0 / max(att.x + att.y * d + att.z * d * d, 1e-4);
		float cos_cut = p3d_LightSource[i].spotCosCutoff;
		if (cos_cut > -1.0) {
			float c = dot(-l, normalize(p3d_LightSource[i].spotDirection));
			k *= c < cos_cut ? 0.0 : pow(max(c, 0.0), p3d_LightSource[i].spotExponent);
		}
		light += p3d_LightSource[i].color.rgb * (k * max(dot(n, l), 0.0));
	}
	vec4 base = v_color * texture(p3d_Texture0, v_uv) * p3d_ColorScale;
	o_color = vec4(base.rgb * light, base.a);
}
