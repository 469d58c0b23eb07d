extends Node
## The example's self-test, for tests/test_godot_engine.py: started by main.gd when Godot is run with
## `-- --nrb-selftest=DIR`. It plays the scripted beats like a player would, turns neural rendering off from
## OFF_AT to ON_AT seconds (the damage event fires while it is off), saves screenshots, writes DIR/report.json and
## quits after QUIT_AT seconds of game time (or MAX_FRAMES frames).

const OFF_AT := 3.0
const ON_AT := 4.2
const QUIT_AT := 10.0
const MAX_FRAMES := 3000

var out_dir := ""
var _time := 0.0
var _frames := []
var _shots := {}
var _start_usec := 0


func _ready() -> void:
	_start_usec = Time.get_ticks_usec()
	DirAccess.make_dir_recursive_absolute(out_dir)


func _process(delta: float) -> void:
	_time += delta
	var on := NeuralRendering.enabled
	var neural: bool = NeuralRendering.is_showing_neural()
	var stats: Dictionary = NeuralRendering.get_stats()
	_frames.append({"t": _time, "enabled": on, "neural": neural, "state": stats.get("state", "")})
	if _time >= OFF_AT and _time < ON_AT and on:
		NeuralRendering.enabled = false  # the player's toggle, as the settings checkbox does it
	elif _time >= ON_AT and not on:
		NeuralRendering.enabled = true
	# The viewport texture holds the frame drawn last, which is what `neural` describes.
	if neural and _time > 1.0 and not _shots.has("neural"):
		_shot("neural")
	if not on and _time > OFF_AT + 0.3 and not _shots.has("raster"):
		_shot("raster")
	if neural and _time > 6.8 and not _shots.has("neural_noir"):
		_shot("neural_noir")
	if stats.get("state", "") == "refused" and _time > 1.0 and not _shots.has("refused"):
		_shot("refused")  # the overlay shows the renderer's reason
	if _time >= QUIT_AT or _frames.size() >= MAX_FRAMES:
		_finish(stats)


func _shot(key: String) -> void:
	var path := out_dir.path_join(key + ".png")
	get_viewport().get_texture().get_image().save_png(path)
	_shots[key] = path


func _finish(stats: Dictionary) -> void:
	set_process(false)
	var report := {
		"engine": Engine.get_version_info()["string"],
		"rendering_method": RenderingServer.get_current_rendering_method(),
		"adapter": RenderingServer.get_video_adapter_name(),
		"api_version": RenderingServer.get_video_adapter_api_version(),
		"size": [get_viewport().get_visible_rect().size.x, get_viewport().get_visible_rect().size.y],
		"wall_s": (Time.get_ticks_usec() - _start_usec) / 1e6,
		"off_at": OFF_AT,
		"on_at": ON_AT,
		"frames": _frames,
		"stats": stats,
		"screenshots": _shots,
	}
	var f := FileAccess.open(out_dir.path_join("report.json"), FileAccess.WRITE)
	f.store_string(JSON.stringify(report, "  "))
	f.close()
	get_tree().quit()
