extends Node
## The example's test of the issue-17 controls, for tests/test_godot_engine.py: started by main.gd when Godot is run
## with `-- --nrb-controls-test=DIR`. The world stands still (main.gd's frozen), and game script calls the
## NeuralRendering autoload as a game would: intensity 0, a style defined at run time, the weapon excluded, then the
## player's toggle off. A screenshot after each lets the test compare what the player saw; DIR/report.json says
## what each call returned.

## The steps in order: each one's call runs, then after SETTLE seconds of game time the first frame that shows a
## neural image (Godot's own image for "raster") is saved, then the next step starts.
const STEPS := ["render", "intensity0", "defined", "excluded", "raster"]
const START_AT := 1.0
const SETTLE := 1.0
const GIVE_UP := 6.0  # per step, in game time: a step that never shows a neural frame is saved as it is
const WEAPON_ID := 42

var out_dir := ""
var _time := 0.0
var _step := -1
var _step_at := 0.0
var _shots := {}
var _returns := {}


func _ready() -> void:
	DirAccess.make_dir_recursive_absolute(out_dir)


func _process(delta: float) -> void:
	_time += delta
	if _step < 0:
		if _time >= START_AT:
			_next()
		return
	if _step >= STEPS.size():
		return
	var key: String = STEPS[_step]
	var waited := _time - _step_at
	var shown: bool = NeuralRendering.is_showing_neural() == (key != "raster")
	if waited >= SETTLE and (shown or waited >= GIVE_UP):
		_shot(key)
		_next()


func _next() -> void:
	_step += 1
	_step_at = _time
	if _step < STEPS.size():
		_run(STEPS[_step])
	else:
		_finish()


func _run(key: String) -> void:
	match key:
		"render":
			pass  # the deferred render of the frozen world
		"intensity0":
			NeuralRendering.intensity = 0.0  # the player's intensity slider at 0: Godot's own image
		"defined":
			NeuralRendering.intensity = 1.0
			_returns["define_style"] = NeuralRendering.define_style(
				"godot_green", {"hue": 120.0, "gain": [0.9, 1.1, 0.9], "saturation": 1.4}, 1.0, 0.0
			)
		"excluded":
			NeuralRendering.set_style("photoreal")
			NeuralRendering.exclude("object", [WEAPON_ID])
		"raster":
			NeuralRendering.include()
			NeuralRendering.enabled = false  # the toggle: Godot's own image, for comparison


func _shot(key: String) -> void:
	var path := out_dir.path_join(key + ".png")
	get_viewport().get_texture().get_image().save_png(path)
	_shots[key] = {"path": path, "neural": NeuralRendering.is_showing_neural(), "t": _time}


func _finish() -> void:
	set_process(false)
	var report := {
		"engine": Engine.get_version_info()["string"],
		"screenshots": _shots,
		"returns": _returns,
		"intensity": NeuralRendering.intensity,
		"stats": NeuralRendering.get_stats(),
	}
	var f := FileAccess.open(out_dir.path_join("report.json"), FileAccess.WRITE)
	f.store_string(JSON.stringify(report, "  "))
	f.close()
	get_tree().quit()
