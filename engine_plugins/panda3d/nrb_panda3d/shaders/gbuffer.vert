#version 330
// nrb G-buffer pass, vertex stage. Matrices from Panda3D (row-vector matrices, used as `M * v` in GLSL).
uniform mat4 p3d_ModelViewProjectionMatrix;
uniform mat4 p3d_ModelViewMatrix;
// Set per object by the plugin each frame: current and previous model-view-projection (Panda convention) and the
// model -> protocol-world normal matrix (rows in xyz of three vec4s).
uniform mat4 nrb_mvp;
uniform mat4 nrb_prev_mvp;
uniform mat4 nrb_normal_matrix;

in vec4 p3d_Vertex;
in vec3 p3d_Normal;
in vec4 p3d_Color;
in vec2 p3d_MultiTexCoord0;

out vec4 v_clip_cur;
out vec4 v_clip_prev;
out vec3 v_normal;
out vec4 v_color;
out vec2 v_uv;
out float v_view_z;

void main() {
  gl_Position = p3d_ModelViewProjectionMatrix * p3d_Vertex;
  v_clip_cur = nrb_mvp * p3d_Vertex;
  v_clip_prev = nrb_prev_mvp * p3d_Vertex;
  v_normal = (nrb_normal_matrix * vec4(p3d_Normal, 0.0)).xyz;
  v_color = p3d_Color;
  v_uv = p3d_MultiTexCoord0;
  v_view_z = -(p3d_ModelViewMatrix * p3d_Vertex).z;
}
