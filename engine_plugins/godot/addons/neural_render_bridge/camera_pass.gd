extends SubViewport
## A SubViewport whose camera follows the game camera: the base of the extra passes that give the neural renderer
## what Godot's Compositor does not (albedo_pass.gd, id_pass.gd).
##
## Its RenderingDevice texture is looked up on the main thread ([method rd_texture], called by the autoload each
## frame) and handed to the compositor effect as a plain RID. The render callback must never call
## [method Viewport.get_texture]: with the default thread model Godot then waits on itself and the game hangs on its
## first frame; with a separate render thread it refuses the call and nothing is ever submitted.

## Render layer of the id twins (id_pass.gd). The game camera and the albedo pass never see it.
const ID_LAYER := 20

var _camera := Camera3D.new()


func _init() -> void:
	render_target_update_mode = SubViewport.UPDATE_ALWAYS
	msaa_3d = Viewport.MSAA_DISABLED
	screen_space_aa = Viewport.SCREEN_SPACE_AA_DISABLED
	use_taa = false
	positional_shadow_atlas_size = 0
	var env := Environment.new()  # black background; no tonemapping, glow or fog may touch the bytes
	env.background_mode = Environment.BG_COLOR
	env.background_color = Color.BLACK
	env.tonemap_mode = Environment.TONE_MAPPER_LINEAR
	env.tonemap_exposure = 1.0
	_camera.environment = env
	add_child(_camera)
	_configure()


## What a pass changes on top of the shared setup (called at the end of [method _init]).
func _configure() -> void:
	pass


func _ready() -> void:
	world_3d = get_tree().root.world_3d


## Keeps this pass's camera identical to the game camera (main thread, once per frame, before rendering).
func follow(cam: Camera3D, viewport_size: Vector2) -> void:
	var s := Vector2i(viewport_size)
	if size != s:
		size = s
	_camera.global_transform = cam.global_transform
	_camera.projection = cam.projection
	_camera.fov = cam.fov
	_camera.size = cam.size
	_camera.near = cam.near
	_camera.far = cam.far
	_camera.keep_aspect = cam.keep_aspect
	_camera.h_offset = cam.h_offset
	_camera.v_offset = cam.v_offset
	_camera.cull_mask = _cull_mask(cam)
	_camera.current = true


## The layers this pass draws, given the game camera.
func _cull_mask(_cam: Camera3D) -> int:
	return 1 << (ID_LAYER - 1)


## This pass's RenderingDevice texture (main thread only; invalid until it has rendered once).
func rd_texture() -> RID:
	var tex := get_texture()
	return RenderingServer.texture_get_rd_texture(tex.get_rid()) if tex else RID()
