@tool
class_name NeuralCompositorEffect
extends CompositorEffect
## Reads this frame's colour, depth, velocity and normal_roughness buffers (plus the albedo and id passes), hands
## them to the libnrb client with the camera matrices, and writes the newest neural frame back into the colour layer.
##
## Runs on the render thread after transparent geometry, before tonemapping. The read-back itself is the
## GDExtension's (NRBClient.read_back_and_submit): asynchronous where the engine has
## RenderingDevice.texture_get_data_async (Godot 4.4+), with callbacks bound to the C++ client so that a read still
## pending at quit never calls into this script after GDScript has shut down; on 4.3 texture_get_data waits for the
## GPU (one stall per frame). Put the effect on a Camera3D's or WorldEnvironment's Compositor; the NeuralRendering
## autoload does that for the current camera and hands it the passes' textures from the main thread.

const GATHER_SHADER := "res://addons/neural_render_bridge/shaders/nrb_gather.glsl"
const COMPOSITE_SHADER := "res://addons/neural_render_bridge/shaders/nrb_composite.glsl"
## RESULT formats the composite can show (protocol 4.4): name -> [RenderingDevice format, sRGB-encoded].
const RESULT_FORMATS := {
	"rgba8_srgb": [RenderingDevice.DATA_FORMAT_R8G8B8A8_UNORM, true],
	"rgba8": [RenderingDevice.DATA_FORMAT_R8G8B8A8_UNORM, false],
	"rgba16f": [RenderingDevice.DATA_FORMAT_R16G16B16A16_SFLOAT, false],
}
## Gather outputs: nrb.h buffer constant (NRB_BUFFER_<key>, wire name buffer_names[key]), protocol format,
## RenderingDevice format, gather binding.
const OUTPUTS := [
	["HUDLESS_COLOR", "rgba8_srgb", RenderingDevice.DATA_FORMAT_R8G8B8A8_UNORM, 6],
	["ALBEDO", "rgba8_srgb", RenderingDevice.DATA_FORMAT_R8G8B8A8_UNORM, 7],
	["DEPTH", "r32f", RenderingDevice.DATA_FORMAT_R32_SFLOAT, 8],
	["MOTION_VECTORS", "rg16f", RenderingDevice.DATA_FORMAT_R16G16_SFLOAT, 9],
	["NORMAL_ROUGHNESS", "rgba16f", RenderingDevice.DATA_FORMAT_R16G16B16A16_SFLOAT, 10],
	["OBJECT_ID", "r16u", RenderingDevice.DATA_FORMAT_R16_UINT, 11],
	["MATERIAL_ID", "r16u", RenderingDevice.DATA_FORMAT_R16_UINT, 12],
]
## The camera's tone_mapping (protocol 8): the gather clamps exposure x colour to [0, 1] before Godot's tonemapper
## runs (which then tonemaps the composited frame), so hudless_color is "clamp" whatever Environment.tonemap_mode is.
const HUDLESS_TONE_MAPPING := "clamp"


## The NRBClient (GDExtension) the autoload created.
var client: Object = null
## nrb.h's buffer names from the GDExtension ("ALBEDO" -> "albedo", ...), set by the autoload.
var buffer_names := {}
## RenderingDevice textures of the albedo and id passes, looked up by the autoload on the main thread each frame
## (the render thread must not ask a viewport for its texture).
var albedo_texture := RID()
var ids_texture := RID()
## Deadline of each frame in ms (0: the client's configured one); the autoload derives it from the round trip.
var deadline_ms := 0.0
## Whether the last frame showed the neural image (false: the engine's own image).
var showing_neural := false
## The internal (render) size of the last frame, for the autoload to reconfigure the client when it changes.
var render_size := Vector2i.ZERO
## The game camera's near and far planes, set by the autoload each frame: RenderSceneDataRD's projection is the
## renderer's (reversed-Z), from which Projection.get_z_near() does not recover them.
var camera_near := 0.05
var camera_far := 4000.0
## Exposure of the WorldEnvironment's tonemapper, set by the autoload each frame: the gather multiplies the HDR colour
## by it for hudless_color (camera pre_exposure) and the composite divides by it.
var tonemap_exposure := 1.0
## The scene's lighting constants (name -> rgba32f bytes of one pixel; "x_lights" -> an Array of light
## dictionaries, NRBClient.set_lights), set by the autoload each frame.
var lighting := {}

var _rd: RenderingDevice = null
var _gather_shader := RID()
var _gather_pipeline := RID()
var _composite_shader := RID()
var _composite_pipeline := RID()
var _sampler := RID()
var _targets := {}
var _size := Vector2i.ZERO
var _neural_tex := RID()
var _neural_size := Vector2i.ZERO
var _neural_format := ""
var _prev_view_projection := Projection.IDENTITY
var _has_prev := false
var _last_usec := 0


func _init() -> void:
	effect_callback_type = CompositorEffect.EFFECT_CALLBACK_TYPE_POST_TRANSPARENT
	needs_motion_vectors = true
	needs_normal_roughness = true
	access_resolved_color = true
	access_resolved_depth = true
	_rd = RenderingServer.get_rendering_device()
	if _rd:
		RenderingServer.call_on_render_thread(_create_pipelines)


func _notification(what: int) -> void:
	# No method calls here: during PREDELETE Godot refuses calls on this script's instance ("null instance"), so
	# the RIDs are freed inline. Freeing a shader frees the pipelines made from it.
	if what != NOTIFICATION_PREDELETE or _rd == null:
		return
	for rid in _targets.values() + [_neural_tex, _sampler, _gather_shader, _composite_shader]:
		if rid.is_valid():
			_rd.free_rid(rid)
	_targets.clear()


func _render_callback(_callback_type: int, render_data: RenderData) -> void:
	if client == null or _rd == null or not _gather_pipeline.is_valid():
		return
	var buffers := render_data.get_render_scene_buffers() as RenderSceneBuffersRD
	var scene := render_data.get_render_scene_data() as RenderSceneDataRD
	if buffers == null or scene == null:
		return
	var size := buffers.get_internal_size()
	if size.x <= 0 or size.y <= 0:
		return
	render_size = size
	if size != _size:
		_create_targets(size)
	var camera := _camera_constants(scene, size)
	if _gather(buffers, scene, size):
		_read_back(camera, size)
	_composite(buffers, size)


func _create_pipelines() -> void:
	var gather := load(GATHER_SHADER) as RDShaderFile
	var composite := load(COMPOSITE_SHADER) as RDShaderFile
	_gather_shader = _rd.shader_create_from_spirv(gather.get_spirv())
	_gather_pipeline = _rd.compute_pipeline_create(_gather_shader)
	_composite_shader = _rd.shader_create_from_spirv(composite.get_spirv())
	_composite_pipeline = _rd.compute_pipeline_create(_composite_shader)
	var ss := RDSamplerState.new()
	ss.min_filter = RenderingDevice.SAMPLER_FILTER_NEAREST
	ss.mag_filter = RenderingDevice.SAMPLER_FILTER_NEAREST
	_sampler = _rd.sampler_create(ss)


func _create_targets(size: Vector2i) -> void:
	_free_targets()
	for out in OUTPUTS:
		var fmt := RDTextureFormat.new()
		fmt.width = size.x
		fmt.height = size.y
		fmt.format = out[2]
		fmt.usage_bits = (
			RenderingDevice.TEXTURE_USAGE_STORAGE_BIT
			| RenderingDevice.TEXTURE_USAGE_CAN_COPY_FROM_BIT
			| RenderingDevice.TEXTURE_USAGE_SAMPLING_BIT
		)
		_targets[out[0]] = _rd.texture_create(fmt, RDTextureView.new())
	_size = size
	_has_prev = false


func _free_targets() -> void:
	for rid in _targets.values():
		if rid.is_valid():
			_rd.free_rid(rid)
	_targets.clear()


func _sampled(binding: int, texture: RID) -> RDUniform:
	var u := RDUniform.new()
	u.uniform_type = RenderingDevice.UNIFORM_TYPE_SAMPLER_WITH_TEXTURE
	u.binding = binding
	u.add_id(_sampler)
	u.add_id(texture)
	return u


func _image(binding: int, texture: RID) -> RDUniform:
	var u := RDUniform.new()
	u.uniform_type = RenderingDevice.UNIFORM_TYPE_IMAGE
	u.binding = binding
	u.add_id(texture)
	return u


func _gather(buffers: RenderSceneBuffersRD, scene: RenderSceneDataRD, size: Vector2i) -> bool:
	var ids := ids_texture
	var albedo := albedo_texture
	if not ids.is_valid() or not albedo.is_valid() or not _rd.texture_is_valid(ids):
		return false  # the passes have not rendered yet (first frame), or were just resized
	if not _rd.texture_is_valid(albedo):
		return false
	var uniforms: Array[RDUniform] = [
		_sampled(0, buffers.get_color_layer(0)),
		_sampled(1, buffers.get_depth_layer(0)),
		_sampled(2, buffers.get_velocity_layer(0)),
		_sampled(3, buffers.get_texture("forward_clustered", "normal_roughness")),
		_sampled(4, ids),
		_sampled(5, albedo),
	]
	for out in OUTPUTS:
		uniforms.append(_image(out[3], _targets[out[0]]))
	var uniform_set := UniformSetCacheRD.get_cache(_gather_shader, 0, uniforms)
	var basis := scene.get_cam_transform().basis
	var push := PackedFloat32Array(
		[
			basis.x.x,
			basis.y.x,
			basis.z.x,
			0.0,
			basis.x.y,
			basis.y.y,
			basis.z.y,
			0.0,
			basis.x.z,
			basis.y.z,
			basis.z.z,
			0.0,
			size.x,
			size.y,
			tonemap_exposure,
			0.0,
		]
	)
	var list := _rd.compute_list_begin()
	_rd.compute_list_bind_compute_pipeline(list, _gather_pipeline)
	_rd.compute_list_bind_uniform_set(list, uniform_set, 0)
	var bytes := push.to_byte_array()
	_rd.compute_list_set_push_constant(list, bytes, bytes.size())
	_rd.compute_list_dispatch(list, ceili(size.x / 8.0), ceili(size.y / 8.0), 1)
	_rd.compute_list_end()
	return true


func _read_back(camera: Dictionary, size: Vector2i) -> void:
	var now := Time.get_ticks_usec()
	var dt := 0.0 if _last_usec == 0 else (now - _last_usec) / 1e6
	_last_usec = now
	if not client.is_enabled():
		return
	var specs := []
	for out in OUTPUTS:
		specs.append([buffer_names[out[0]], out[1], _targets[out[0]], out[0] == "DEPTH"])
	# `lighting` is one frame's dictionary: the autoload replaces it, never edits it.
	client.read_back_and_submit(_rd, specs, size.x, size.y, lighting, camera, dt, deadline_ms)


func _composite(buffers: RenderSceneBuffersRD, size: Vector2i) -> void:
	var pixels: PackedByteArray = client.acquire_result()
	var result_format: String = client.get_result_format()
	showing_neural = not pixels.is_empty() and RESULT_FORMATS.has(result_format)
	if not showing_neural:
		return
	var srgb: bool = RESULT_FORMATS[result_format][1]
	var w: int = client.get_result_width()
	var h: int = client.get_result_height()
	if Vector2i(w, h) != _neural_size or result_format != _neural_format:
		if _neural_tex.is_valid():
			_rd.free_rid(_neural_tex)
		var fmt := RDTextureFormat.new()
		fmt.width = w
		fmt.height = h
		fmt.format = RESULT_FORMATS[result_format][0]
		fmt.usage_bits = (RenderingDevice.TEXTURE_USAGE_SAMPLING_BIT | RenderingDevice.TEXTURE_USAGE_CAN_UPDATE_BIT)
		_neural_tex = _rd.texture_create(fmt, RDTextureView.new())
		_neural_size = Vector2i(w, h)
		_neural_format = result_format
	_rd.texture_update(_neural_tex, 0, pixels)
	var uniforms: Array[RDUniform] = [_image(0, buffers.get_color_layer(0)), _sampled(1, _neural_tex)]
	var uniform_set := UniformSetCacheRD.get_cache(_composite_shader, 0, uniforms)
	var push := PackedFloat32Array([size.x, size.y, 1.0 / maxf(tonemap_exposure, 1e-6), 1.0 if srgb else 0.0])
	var list := _rd.compute_list_begin()
	_rd.compute_list_bind_compute_pipeline(list, _composite_pipeline)
	_rd.compute_list_bind_uniform_set(list, uniform_set, 0)
	var bytes := push.to_byte_array()
	_rd.compute_list_set_push_constant(list, bytes, bytes.size())
	_rd.compute_list_dispatch(list, ceili(size.x / 8.0), ceili(size.y / 8.0), 1)
	_rd.compute_list_end()


## docs/protocol.md section 8, from RenderSceneDataRD. Godot's world is +Y up and its cameras look down -Z, the
## protocol's conventions; the projection is Godot's OpenGL-style one and the depth buffer is reversed-Z (4.3+).
func _camera_constants(scene: RenderSceneDataRD, size: Vector2i) -> Dictionary:
	var cam := scene.get_cam_transform()
	var proj := scene.get_cam_projection()
	var view := Projection(cam.affine_inverse())
	var view_projection := proj * view
	var prev := _prev_view_projection if _has_prev else view_projection
	var to_prev := prev * view_projection.inverse()
	_prev_view_projection = view_projection
	var reset := not _has_prev
	_has_prev = true
	return {
		"view_to_clip": _rows(proj),
		"clip_to_view": _rows(proj.inverse()),
		"clip_to_prev_clip": _rows(to_prev),
		"prev_clip_to_clip": _rows(to_prev.inverse()),
		"world_to_view": _rows(view),
		"position": [cam.origin.x, cam.origin.y, cam.origin.z],
		"up": [cam.basis.y.x, cam.basis.y.y, cam.basis.y.z],
		"right": [cam.basis.x.x, cam.basis.x.y, cam.basis.x.z],
		"forward": [-cam.basis.z.x, -cam.basis.z.y, -cam.basis.z.z],
		"near": camera_near,
		"far": camera_far,
		"fov_y": 2.0 * atan(1.0 / absf(proj.y.y)),  # the renderer's projection flips y for Vulkan
		"aspect": float(size.x) / float(size.y),
		"mv_scale": [1.0, 1.0],
		"depth_inverted": true,
		"camera_motion_included": true,
		"reset": reset,
		"render_size": [size.x, size.y],
		"output_size": [size.x, size.y],
		"pre_exposure": maxf(tonemap_exposure, 1e-6),
		"tone_mapping": HUDLESS_TONE_MAPPING,
	}


## A Projection (column-major) as 16 numbers, row-major for column vectors.
func _rows(m: Projection) -> PackedFloat64Array:
	var out := PackedFloat64Array()
	for r in 4:
		for c in 4:
			out.append(m[c][r])
	return out
