extends Node3D
## The example's game logic: the same scripted beats as the Panda3D sample game, written against the
## NeuralRendering autoload (set_style / fire_event), plus a settings checkbox bound to NeuralRendering.enabled.

const SelfTest := preload("res://selftest.gd")
const ControlsTest := preload("res://controls_test.gd")
const WEAPON_ID := 42
const BOSS_ID := 30
const MAT_WEAPON := 9

## Stops the camera, the boss and the scripted beats (the controls test compares pictures of one moment).
var frozen := false
var _time := 0.0
var _done := {}

@onready var _camera: Camera3D = $Camera3D
@onready var _weapon: Node3D = $Camera3D/Weapon
@onready var _boss: Node3D = $Boss
@onready var _checkbox: CheckBox = $UI/NeuralCheckBox


func _ready() -> void:
	NeuralRendering.tag($Floor, 1, 1)
	NeuralRendering.tag(_boss, BOSS_ID, 7)
	NeuralRendering.tag(_weapon, WEAPON_ID, MAT_WEAPON)
	NeuralRendering.bind_checkbox(_checkbox)  # the settings menu's toggle
	NeuralRendering.show_stats = true
	NeuralRendering.set_style("photoreal")
	for arg in OS.get_cmdline_user_args():  # `godot --path . -- --nrb-selftest=DIR` (tests/test_godot_engine.py)
		if arg.begins_with("--nrb-selftest="):
			var test := SelfTest.new()
			test.out_dir = arg.trim_prefix("--nrb-selftest=")
			add_child(test)
		elif arg.begins_with("--nrb-controls-test="):
			frozen = true
			var controls := ControlsTest.new()
			controls.out_dir = arg.trim_prefix("--nrb-controls-test=")
			add_child(controls)


func _process(delta: float) -> void:
	if frozen:
		return
	_time += delta
	_camera.position.z = 6.0 - minf(_time, 8.0) * 0.5
	_boss.rotation.y = _time
	_beat(2.0, "powerup", _on_powerup)
	_beat(3.5, "damage", func() -> void: NeuralRendering.fire_event("player_damaged", {"amount": 0.6}))
	_beat(5.0, "boss", _on_boss_phase)
	_beat(8.0, "defeat", _on_boss_defeated)


func _beat(at: float, key: String, action: Callable) -> void:
	if _time >= at and not _done.has(key):
		_done[key] = true
		action.call()


func _on_powerup() -> void:
	var weapon := {"scope": "object", "ids": [WEAPON_ID]}
	NeuralRendering.set_style("golden", 1.0, 0.3, weapon)
	NeuralRendering.fire_event("weapon_powerup", {"over": 0.3}, weapon)


func _on_boss_phase() -> void:
	NeuralRendering.set_style("noir", 1.0, 2.0)
	NeuralRendering.fire_event("boss_phase", {"phase": 2})


func _on_boss_defeated() -> void:
	_boss.visible = false
	NeuralRendering.set_style("photoreal", 1.0, 1.0)
	NeuralRendering.fire_event("boss_defeated")
