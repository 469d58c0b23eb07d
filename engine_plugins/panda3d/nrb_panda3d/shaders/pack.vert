// nrb pack pass, vertex stage: a full-screen quad (the fragment stage does the work, from gl_FragCoord).
uniform mat4 p3d_ModelViewProjectionMatrix;
in vec4 p3d_Vertex;

void main() {
  gl_Position = p3d_ModelViewProjectionMatrix * p3d_Vertex;
}
