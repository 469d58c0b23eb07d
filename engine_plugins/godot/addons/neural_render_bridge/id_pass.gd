class_name NeuralIdPass
extends SubViewport
## The extra pass that gives the neural renderer per-pixel material and object ids.
##
## Every tagged mesh gets an invisible twin on render layer ID_LAYER that shares its mesh and draws with
## nrb_ids.gdshader, which writes the ids as bytes (object id low/high byte, material id 0..255). This viewport's
## camera follows the game camera and sees only that layer; the game camera never sees it. The compositor
## effect samples this viewport's texture and turns it into the object_id and material_id buffers.

const ID_LAYER := 20
const IdShader := preload("res://addons/neural_render_bridge/shaders/nrb_ids.gdshader")

var _camera := Camera3D.new()
var _material := ShaderMaterial.new()


func _init() -> void:
	render_target_update_mode = SubViewport.UPDATE_ALWAYS
	transparent_bg = true
	msaa_3d = Viewport.MSAA_DISABLED
	screen_space_aa = Viewport.SCREEN_SPACE_AA_DISABLED
	use_taa = false
	positional_shadow_atlas_size = 0
	_material.shader = IdShader
	_camera.cull_mask = 1 << (ID_LAYER - 1)
	var env := Environment.new()  # no tonemapping, glow or fog may touch the id bytes
	env.background_mode = Environment.BG_CLEAR_COLOR
	env.tonemap_mode = Environment.TONE_MAPPER_LINEAR
	env.tonemap_exposure = 1.0
	_camera.environment = env
	add_child(_camera)


func _ready() -> void:
	world_3d = get_tree().root.world_3d


## Keeps the id camera identical to the game camera (call once per frame, before rendering).
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
	_camera.current = true


## Gives every MeshInstance3D at or below [param node] an id twin.
func tag(node: Node3D, object_id: int, material_id: int) -> void:
	var meshes: Array[Node] = [node] if node is MeshInstance3D else []
	meshes.append_array(node.find_children("*", "MeshInstance3D", true, false))
	for m in meshes:
		var mesh_node := m as MeshInstance3D
		var twin := mesh_node.get_node_or_null("NrbIdTwin") as MeshInstance3D
		if twin == null:
			twin = MeshInstance3D.new()
			twin.name = "NrbIdTwin"
			twin.mesh = mesh_node.mesh
			twin.skeleton = NodePath("..")
			twin.layers = 1 << (ID_LAYER - 1)
			twin.cast_shadow = GeometryInstance3D.SHADOW_CASTING_SETTING_OFF
			twin.material_override = _material
			mesh_node.add_child(twin, false, Node.INTERNAL_MODE_BACK)
		twin.set_instance_shader_parameter("nrb_object_id", object_id)
		twin.set_instance_shader_parameter("nrb_material_id", material_id)


## The id texture's RenderingDevice RID (sampled by the compositor effect on the render thread).
func get_rd_texture() -> RID:
	return RenderingServer.texture_get_rd_texture(get_texture().get_rid())
