extends "res://addons/neural_render_bridge/camera_pass.gd"
## The extra pass that gives the neural renderer per-pixel material and object ids.
##
## Every tagged mesh gets an invisible twin on render layer ID_LAYER that shares its mesh and draws with
## nrb_ids.gdshader, which writes the ids as bytes (object id low/high byte, material id 0..255). This viewport's
## camera follows the game camera and sees only that layer; the game camera never sees it. The compositor
## effect samples this viewport's texture and turns it into the object_id and material_id buffers.

const IdShader := preload("res://addons/neural_render_bridge/shaders/nrb_ids.gdshader")

var _material := ShaderMaterial.new()


func _configure() -> void:
	transparent_bg = true
	_material.shader = IdShader


## Gives every MeshInstance3D at or below [param node] an id twin.
func tag(node: Node3D, object_id: int, material_id: int) -> void:
	var meshes: Array[Node] = []
	if node is MeshInstance3D:
		meshes.append(node)
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
