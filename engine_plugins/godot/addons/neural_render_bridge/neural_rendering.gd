extends Node
## The NeuralRendering autoload singleton: what game scripts talk to.
##
##     NeuralRendering.enabled = false                      # the player's toggle
##     NeuralRendering.set_style("noir", 1.0, 2.0)          # whole world, over two seconds
##     NeuralRendering.set_style("golden", 1.0, 0.3, {"scope": "object", "ids": [42]})
##     NeuralRendering.fire_event("boss_phase", {"phase": 2})
##     NeuralRendering.define_style("poison", {"hue": 35.0, "gain": [0.85, 1.1, 0.75]}, 1.0, 0.5)  # a new look
##     NeuralRendering.set_intensity(0.5, 1.0)              # half Godot's own image, over a second
##     NeuralRendering.exclude("object", [7])               # object 7 keeps Godot's pixels; include() undoes it
##     NeuralRendering.bind_checkbox($Settings/NeuralCheckBox)  # settings menu
##     NeuralRendering.bind_slider($Settings/IntensitySlider)   # the player's intensity, 0..1
##     NeuralRendering.tag(weapon_mesh, 42, 9)               # object id 42, material id 9 (id pass)
##
## It creates the libnrb client (the NRBClient class of the GDExtension), puts a NeuralCompositorEffect on the
## active camera's Compositor and keeps two extra passes in sync with that camera: albedo (albedo_pass.gd) and
## material and object ids (id_pass.gd), which Godot's Compositor does not give. Every shipped renderer needs
## albedo, so without that pass the server refuses the session. Each
## frame it also hands the effect the scene's sun (the strongest visible DirectionalLight3D) and the
## environment's ambient colour as the protocol's lighting constants (docs/protocol.md 6.1): the G-buffers do
## not say where the light comes from.
## The renderer works on Godot's HUD-less colour (hudless_color, gathered before tonemapping and before any
## CanvasLayer UI is drawn); intensity and exclusions mix it back in, and Godot draws the UI over the result.
## Without the GDExtension (not built for this platform) everything is a no-op and the game renders normally.

signal enabled_changed(enabled: bool)
signal intensity_changed(value: float)

const Settings := preload("res://addons/neural_render_bridge/settings.gd")
const EffectScript := preload("res://addons/neural_render_bridge/neural_compositor_effect.gd")
const IdPassScript := preload("res://addons/neural_render_bridge/id_pass.gd")
const AlbedoPassScript := preload("res://addons/neural_render_bridge/albedo_pass.gd")
const TOGGLE_ACTION := "neural_rendering_toggle"
const CLIENT_CLASS := "NRBClient"
## Automatic deadline (deadline_ms = 0): a result is shown while it is younger than twice the 95th-percentile round
## trip plus two frames, so a renderer that keeps up is always shown, whatever the frame rate; before any round trip
## is measured, AUTO_DEADLINE_START_MS. Clamped to [AUTO_DEADLINE_MIN_MS, AUTO_DEADLINE_MAX_MS].
const AUTO_DEADLINE_START_MS := 500.0
const AUTO_DEADLINE_MIN_MS := 50.0
const AUTO_DEADLINE_MAX_MS := 2000.0
## G-buffers the compositor effect sends, by nrb.h constant (NRB_BUFFER_<key>; the wire name is
## buffer_names[key], from the GDExtension) -> format: what the deferred, neural and passthrough renderers need
## (albedo, normals from normal_roughness, depth; passthrough shows hudless_color), the lighting constants and the
## light list.
const BUFFERS := {
	"HUDLESS_COLOR": "rgba8_srgb",
	"ALBEDO": "rgba8_srgb",
	"DEPTH": "r32f",
	"MOTION_VECTORS": "rg16f",
	"NORMAL_ROUGHNESS": "rgba16f",
	"MATERIAL_ID": "r16u",
	"OBJECT_ID": "r16u",
	"X_SUN_DIRECTION": "rgba32f",
	"X_SUN_IRRADIANCE": "rgba32f",
	"X_SKY_RADIANCE": "rgba32f",
	"X_LIGHTS": "rgba32f",
}
## Where a light's Godot attenuation and the protocol's inverse square agree when its decay is not 2 (world units).
const LIGHT_REFERENCE_DISTANCE := 2.0
## The most lights one frame carries (nrb.h NRB_MAX_LIGHTS).
const MAX_LIGHTS := 64

## nrb.h's buffer names (NRBClient.get_buffer_names(): "ALBEDO" -> "albedo", ...), so GDScript names buffers the
## way the C ABI does and never spells a wire name itself.
var buffer_names := {}

## Show the statistics overlay (fps, round trip, fallbacks).
var show_stats := false:
	set(value):
		show_stats = value
		if _overlay:
			_overlay.visible = value

## Neural rendering on or off at run time (the player's toggle). Off: the next frame is the engine's image.
var enabled := true:
	set(value):
		if value == enabled:
			return
		enabled = value
		if _client:
			_client.set_enabled(value)
		if _effect:
			_effect.enabled = value and _client != null
			_effect.showing_neural = false  # a disabled effect is not called: it must not say NEURAL
		enabled_changed.emit(value)

## How much of the re-rendered image is shown, 0 (Godot's own image) .. 1 (fully re-rendered): the player's
## intensity setting next to [member enabled] (project setting rendering/neural_rendering/intensity at start).
## Setting it applies at once; [method set_intensity] tweens.
var intensity := 1.0:
	set(value):
		set_intensity(value)
	get:
		return _intensity_value

var _client: Object = null
var _intensity_value := 1.0
var _effect: CompositorEffect = null
var _id_pass: SubViewport = null
var _albedo_pass: SubViewport = null
var _camera: Camera3D = null
var _overlay: Label = null
var _configured_size := Vector2i.ZERO
var _frame_ms := 16.7


func _ready() -> void:
	_ensure_toggle_action()
	enabled = bool(Settings.get_value(Settings.ENABLED))
	if not ClassDB.class_exists(CLIENT_CLASS):
		push_warning("Neural Render Bridge: the GDExtension is not loaded; rendering stays as it is.")
		return
	_client = ClassDB.instantiate(CLIENT_CLASS)
	buffer_names = _client.get_buffer_names()
	# CurveZMQ keys before configure. Keys that are partial or malformed stop here: the game renders on its own
	# rather than sending its frames unencrypted to a server it was told to authenticate.
	var keys_ok: bool = _client.set_curve_keys(
		Settings.get_curve_key(Settings.CURVE_SERVER_PUBLIC_KEY),
		Settings.get_curve_key(Settings.CURVE_CLIENT_PUBLIC_KEY),
		Settings.get_curve_key(Settings.CURVE_CLIENT_SECRET_KEY)
	)
	if not keys_ok:
		push_error("Neural Render Bridge: %s" % _client.get_last_error())
		_client = null
		return
	if not _configure_client(Vector2i(get_viewport().get_visible_rect().size)):
		_client = null
		return
	var start_intensity := float(Settings.get_value(Settings.INTENSITY))
	if start_intensity != 1.0:  # 1 is every session's default
		set_intensity(start_intensity)
	_id_pass = IdPassScript.new()
	add_child(_id_pass)
	_albedo_pass = AlbedoPassScript.new()
	add_child(_albedo_pass)
	_effect = EffectScript.new()
	_effect.client = _client
	_effect.buffer_names = buffer_names
	_effect.enabled = enabled
	_overlay = Label.new()
	_overlay.position = Vector2(8, 8)
	_overlay.visible = show_stats
	var layer := CanvasLayer.new()
	layer.layer = 128
	layer.add_child(_overlay)
	add_child(layer)


func _process(delta: float) -> void:
	if _client == null:
		return
	_frame_ms = lerpf(_frame_ms, delta * 1000.0, 0.1)
	var cam := get_viewport().get_camera_3d()
	if cam != _camera:
		_attach(cam)
	var view_size := get_viewport().get_visible_rect().size
	if _camera:
		_id_pass.follow(_camera, view_size)
		_albedo_pass.follow(_camera, view_size)
	if _effect:
		# Main thread: the render thread must never ask a viewport for its texture (camera_pass.gd).
		_effect.ids_texture = _id_pass.rd_texture()
		_effect.albedo_texture = _albedo_pass.rd_texture()
		_effect.lighting = _scene_lighting()
		_effect.tonemap_exposure = _tonemap_exposure()
		if _camera:
			_effect.camera_near = _camera.near
			_effect.camera_far = _camera.far
		_effect.deadline_ms = _deadline_ms()
		var rs: Vector2i = _effect.render_size
		if rs != Vector2i.ZERO and rs != _configured_size:  # window resized or 3D scale changed
			_configure_client(rs)
	if show_stats and _overlay:
		_overlay.text = _overlay_text()


## What the overlay shows: which image is on screen, the connection, round trips; a refusal with its reason.
func _overlay_text() -> String:
	var s := get_stats()
	var shown := "OFF (engine image)" if not enabled else ("NEURAL" if is_showing_neural() else "RASTER")
	var text := (
		"%s  %s\nrtt p50 %.1f ms  p95 %.1f ms  deadline %.0f ms\nfallbacks %d  reconnects %d"
		% [
			shown,
			s.get("state", "?"),
			s.get("rtt_p50_ms", 0.0),
			s.get("rtt_p95_ms", 0.0),
			_effect.deadline_ms if _effect else 0.0,
			s.get("fallbacks", 0),
			s.get("reconnects", 0)
		]
	)
	if s.get("state", "") == "refused":
		text += "\nREFUSED by the renderer: %s\n(toggle neural rendering to retry)" % s.get("refusal_message", "")
	return text


func _unhandled_input(event: InputEvent) -> void:
	if event.is_action_pressed(TOGGLE_ACTION):
		enabled = not enabled
		get_viewport().set_input_as_handled()


func _exit_tree() -> void:
	_attach(null)
	if _effect:
		_effect.client = null
	if _client:
		_client.close()
		_client = null


## Moves style [param target] toward [param style] at [param strength] (0..1) over [param over] seconds.
## [param target]: null or "global", {"scope": "object"|"material", "ids": [...]}, or ["object", [ids]].
func set_style(style: String, strength := 1.0, over := 0.0, target: Variant = null) -> void:
	if _client:
		var t := _target(target)
		_client.set_style(style, strength, over, t[0], t[1])


## A look written by game logic (nrb_set_style_params): defines (or redefines) style [param style_name] with
## [param params] (style parameters of docs/server.md: a number each, [r, g, b] / Vector3 / Color for an RGB one,
## a String for "lut" and "base"), then moves [param target] toward it like [method set_style]. Afterwards
## set_style(style_name) names it like any other style. A parameter the renderer does not know, or a value out of
## its range, is refused by the renderer (that frame is not rendered; get_stats()["last_error"] names it).
func define_style(
	style_name: String, params: Dictionary, strength := 1.0, over := 0.0, target: Variant = null
) -> bool:
	if not _client:
		return false
	var t := _target(target)
	var ok: bool = _client.set_style_params(style_name, params, strength, over, t[0], t[1])
	if not ok:
		push_error("Neural Render Bridge: define_style: %s" % _client.get_last_error())
	return ok


## [method define_style] under the C ABI's name.
func set_style_params(
	style_name: String, params: Dictionary, strength := 1.0, over := 0.0, target: Variant = null
) -> bool:
	return define_style(style_name, params, strength, over, target)


## Blends the re-rendered image with Godot's own (nrb_set_intensity): [param value] 0 (Godot's image) .. 1 reached
## over [param over] seconds.
func set_intensity(value: float, over := 0.0) -> void:
	value = clampf(value, 0.0, 1.0)
	intensity_changed.emit(value)
	if _client:
		_client.set_intensity(value, over)
	_intensity_value = value


## Keeps Godot's pixels for these objects or materials (nrb_exclude), with a soft edge: [param target] is "object"
## or "material" with [param ids], or a target as [method set_style] takes it. [param excluded] false re-renders
## them again.
func exclude(target: Variant, ids := [], excluded := true) -> void:
	var t := _target([target, ids] if target is String and target != "global" else target)
	if _client and not _client.exclude(t[0], t[1], excluded):
		push_error("Neural Render Bridge: exclude: %s" % _client.get_last_error())


## Re-renders these ids again (see [method exclude]); no arguments: every id excluded so far.
func include(target: Variant = null, ids := []) -> void:
	exclude(target, ids, false)


## Sends a gameplay event to the server's hooks (@on("name") in the hooks file).
func fire_event(event_name: String, params := {}, target: Variant = null) -> void:
	if _client:
		var t := _target(target)
		_client.fire_event(event_name, params, t[0], t[1])


## Statistics for an overlay: frames sent, results, fallbacks, round-trip percentiles, state ("connected",
## "connecting", "disabled", or "refused" with the renderer's reason in "refusal_message").
func get_stats() -> Dictionary:
	return _client.get_stats() if _client else {"state": "unavailable"}


## Whether the last rendered frame showed the neural image (false: Godot's own image).
func is_showing_neural() -> bool:
	return enabled and _effect != null and _effect.showing_neural


## Gives [param node] (and its mesh children) object and material ids for the id pass.
func tag(node: Node3D, object_id: int, material_id := 0) -> void:
	if _id_pass:
		_id_pass.tag(node, object_id, material_id)


## Binds a settings-menu checkbox (any BaseButton in toggle mode) to [member enabled], both ways.
func bind_checkbox(checkbox: BaseButton) -> void:
	checkbox.toggle_mode = true
	checkbox.set_pressed_no_signal(enabled)
	checkbox.toggled.connect(func(pressed: bool) -> void: enabled = pressed)
	enabled_changed.connect(func(on: bool) -> void: checkbox.set_pressed_no_signal(on))


## Binds a settings-menu slider (any Range, 0..1) to [member intensity], both ways.
func bind_slider(slider: Range) -> void:
	slider.min_value = 0.0
	slider.max_value = 1.0
	slider.step = 0.01
	slider.set_value_no_signal(_intensity_value)
	slider.value_changed.connect(func(value: float) -> void: set_intensity(value))
	intensity_changed.connect(func(value: float) -> void: slider.set_value_no_signal(value))


## (Re)creates the libnrb client for render size [param size]; false (and an error) when it cannot be created.
func _configure_client(size: Vector2i) -> bool:
	_configured_size = size
	var ok: bool = _client.configure(
		str(Settings.get_value(Settings.ENDPOINT)),
		size.x,
		size.y,
		_offered_buffers(),
		int(Settings.get_value(Settings.FRAMES_IN_FLIGHT)),
		_deadline_ms(),
		"godot",
		Engine.get_version_info()["string"],
		enabled
	)
	if not ok:
		push_error("Neural Render Bridge: %s" % _client.get_last_error())
	return ok


## BUFFERS by wire name (what configure offers in HELLO).
func _offered_buffers() -> Dictionary:
	var out := {}
	for key in BUFFERS:
		out[buffer_names[key]] = BUFFERS[key]
	return out


## The deadline setting, or when it is 0 (automatic) one derived from the measured round trip.
func _deadline_ms() -> float:
	var fixed := float(Settings.get_value(Settings.DEADLINE_MS))
	if fixed > 0.0:
		return fixed
	var p95: float = _client.get_stats().get("rtt_p95_ms", 0.0) if _client else 0.0
	if p95 <= 0.0:
		return AUTO_DEADLINE_START_MS
	return clampf(2.0 * p95 + 2.0 * _frame_ms, AUTO_DEADLINE_MIN_MS, AUTO_DEADLINE_MAX_MS)


func _attach(cam: Camera3D) -> void:
	if _camera and is_instance_valid(_camera) and _camera.compositor:
		var effects := _camera.compositor.compositor_effects
		effects.erase(_effect)
		_camera.compositor.compositor_effects = effects
	_camera = cam
	if cam == null or _effect == null:
		return
	if cam.compositor == null:
		cam.compositor = Compositor.new()
	var list := cam.compositor.compositor_effects
	if not list.has(_effect):
		list.append(_effect)
	cam.compositor.compositor_effects = list
	cam.cull_mask &= ~(1 << (IdPassScript.ID_LAYER - 1))


func _target(target: Variant) -> Array:
	if target == null or (target is String and target == "global"):
		return ["global", PackedInt32Array()]
	if target is Dictionary:
		return [str(target.get("scope", "global")), PackedInt32Array(target.get("ids", []))]
	if target is Array and target.size() == 2:
		return [str(target[0]), PackedInt32Array(target[1])]
	push_error("Neural Render Bridge: cannot read a target from %s" % [target])
	return ["global", PackedInt32Array()]


## The lighting constants (name -> 16 bytes of rgba32f): towards the strongest visible DirectionalLight3D (its
## light shines along -Z, so the way to it is +Z), its irradiance (Godot lights a white Lambertian surface
## facing a directional light of energy e to radiance e x colour, so E = pi x e x colour, linear), and the
## environment's ambient colour x energy when the ambient source is a colour. Absent ones are left out.
func _scene_lighting() -> Dictionary:
	var out := {}
	var root := get_tree().current_scene
	if root == null:
		return out
	var sun: DirectionalLight3D = null
	for node in root.find_children("*", "DirectionalLight3D", true, false):
		var light := node as DirectionalLight3D
		if light.is_visible_in_tree() and (sun == null or light.light_energy > sun.light_energy):
			sun = light
	out[buffer_names["X_LIGHTS"]] = _scene_lights(root, sun)
	if sun:
		var towards := sun.global_transform.basis.z.normalized()
		var c := sun.light_color.srgb_to_linear() * (PI * sun.light_energy)
		out[buffer_names["X_SUN_DIRECTION"]] = _constant(towards.x, towards.y, towards.z)
		out[buffer_names["X_SUN_IRRADIANCE"]] = _constant(c.r, c.g, c.b)
	var world := get_viewport().find_world_3d()
	var env := world.environment if world else null
	if env and env.ambient_light_source == Environment.AMBIENT_SOURCE_COLOR:
		var a := env.ambient_light_color.srgb_to_linear() * env.ambient_light_energy
		out[buffer_names["X_SKY_RADIANCE"]] = _constant(a.r, a.g, a.b)
	return out


## The scene's other lights as the protocol's light list (docs/protocol.md 6.1 x_lights; the GDExtension hands the
## dictionaries to libnrb's nrb_frame_set_lights, which checks and packs them): every visible OmniLight3D,
## SpotLight3D and DirectionalLight3D but `sun`. Godot lights a white Lambertian surface facing a light of energy e
## and colour c to radiance e x c (x the distance falloff for omni and spot lights), as the sun above assumes, so
## a directional light's irradiance is pi x e x c, and an omni or spot light with the physical decay 2
## (attenuation 2: window / d^2) has the radiant intensity pi x e x c; another decay is matched at
## LIGHT_REFERENCE_DISTANCE. Range: omni_range / spot_range. A spot light's cone: spot_angle is the outer
## half-angle; its spot_angle_attenuation fade becomes the protocol's smoothstep from 85 % of it. A light shines
## along its node's -Z. Negative lights are left out (the protocol's colours are >= 0). At most MAX_LIGHTS, the
## strongest first.
func _scene_lights(root: Node, sun: DirectionalLight3D) -> Array:
	var found := []
	for node in root.find_children("*", "Light3D", true, false):
		var light := node as Light3D
		if light == sun or not light.is_visible_in_tree() or light.light_negative or light.light_energy <= 0.0:
			continue
		var shine := (-light.global_transform.basis.z).normalized()
		var c := light.light_color.srgb_to_linear() * (PI * light.light_energy)
		var entry := {}
		if light is DirectionalLight3D:
			entry = {"type": "directional", "color": Vector3(c.r, c.g, c.b), "direction": shine}
		elif light is OmniLight3D or light is SpotLight3D:
			var reach: float = light.omni_range if light is OmniLight3D else light.spot_range
			var decay: float = light.omni_attenuation if light is OmniLight3D else light.spot_attenuation
			var k := pow(LIGHT_REFERENCE_DISTANCE, 2.0 - decay)
			entry = {"type": "point", "color": Vector3(c.r, c.g, c.b) * k, "position": light.global_position,
					"range": reach}
			if light is SpotLight3D:
				var outer := deg_to_rad(clampf(light.spot_angle, 0.1, 180.0))
				entry["type"] = "spot"
				entry["direction"] = shine
				entry["inner"] = 0.85 * outer
				entry["outer"] = outer
		else:
			continue
		found.append(entry)
	found.sort_custom(_brighter)
	return found.slice(0, MAX_LIGHTS)


func _brighter(a: Dictionary, b: Dictionary) -> bool:
	var ca: Vector3 = a["color"]
	var cb: Vector3 = b["color"]
	return ca.x + ca.y + ca.z > cb.x + cb.y + cb.z


## The WorldEnvironment's tonemap exposure: the gather multiplies Godot's HDR colour by it for hudless_color and the
## camera sends it as pre_exposure (protocol 8).
func _tonemap_exposure() -> float:
	var world := get_viewport().find_world_3d()
	var env := world.environment if world else null
	if _camera and _camera.environment:
		env = _camera.environment
	return env.tonemap_exposure if env else 1.0


func _constant(x: float, y: float, z: float) -> PackedByteArray:
	return PackedFloat32Array([x, y, z, 0.0]).to_byte_array()


func _ensure_toggle_action() -> void:
	if InputMap.has_action(TOGGLE_ACTION):
		return
	InputMap.add_action(TOGGLE_ACTION)
	var key := InputEventKey.new()
	key.keycode = KEY_F9
	InputMap.action_add_event(TOGGLE_ACTION, key)
