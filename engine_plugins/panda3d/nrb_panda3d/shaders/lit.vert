#version 330
// The sample game's per-pixel lighting (the crypt, nrb_panda3d/game.py): Panda3D's shader generator emits Cg,
// which this Panda3D build cannot run, so the crypt gets this small GLSL pair instead. View space throughout.
uniform mat4 p3d_ModelViewProjectionMatrix;
uniform mat4 p3d_ModelViewMatrix;
uniform mat3 p3d_NormalMatrix;

in vec4 p3d_Vertex;
in vec3 p3d_Normal;
in vec4 p3d_Color;
in vec2 p3d_MultiTexCoord0;

out vec3 v_pos;
out vec3 v_normal;
out vec4 v_color;
out vec2 v_uv;

void main() {
	gl_Position = p3d_ModelViewProjectionMatrix * p3d_Vertex;
	v_pos = (p3d_ModelViewMatrix * p3d_Vertex).xyz;
	v_normal = normalize(p3d_NormalMatrix * p3d_Normal);
	v_color = p3d_Color;
	v_uv = p3d_MultiTexCoord0;
}
