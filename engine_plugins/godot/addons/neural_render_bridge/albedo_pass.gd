extends "res://addons/neural_render_bridge/camera_pass.gd"
## The extra pass that gives the neural renderer the albedo buffer, which every shipped renderer needs and Godot's
## Compositor does not expose (Forward+ keeps no albedo G-buffer).
##
## The game's own layers drawn with Viewport.DEBUG_DRAW_UNSHADED: Godot then skips every light, reflection probe,
## GI and post effect and lights each surface with an ambient of exactly 1, so a dielectric, non-emissive surface
## comes out as its albedo (textures and vertex colours included), sRGB-encoded in 8 bits: the protocol's
## rgba8_srgb albedo. Metallic surfaces come out darker (x (1 - metallic)) and emissive ones brighter (+ emission):
## the renderers read those as albedo. The sky is black here; nrb_gather.glsl puts the colour the player sees there
## (protocol 6.5).


func _configure() -> void:
	transparent_bg = true
	debug_draw = Viewport.DEBUG_DRAW_UNSHADED


func _cull_mask(cam: Camera3D) -> int:
	return cam.cull_mask & ~(1 << (ID_LAYER - 1))
