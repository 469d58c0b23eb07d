@tool
class_name NeuralRenderingSettings
extends RefCounted
## Project settings of the Neural Render Bridge addon (Project Settings > Rendering > Neural Rendering).
## The EditorPlugin registers them; the NeuralRendering autoload reads them at start.

const ENABLED := "rendering/neural_rendering/enabled"
## How much of the re-rendered image is shown over Godot's own (0: Godot's image, 1: fully re-rendered), next to the
## toggle: the player's intensity setting (NeuralRendering.intensity, bind_slider()).
const INTENSITY := "rendering/neural_rendering/intensity"
const ENDPOINT := "rendering/neural_rendering/endpoint"
const FRAMES_IN_FLIGHT := "rendering/neural_rendering/frames_in_flight"
const DEADLINE_MS := "rendering/neural_rendering/deadline_ms"
## CurveZMQ (Z85 text, 40 characters each, `nrb keys show`): all three or none. The server's public key is the same
## for every install and may live in project.godot; the client's pair belongs to one install, so its secret key goes
## in override.cfg beside the game or in the environment, never in project.godot (README, "CurveZMQ").
const CURVE_SERVER_PUBLIC_KEY := "rendering/neural_rendering/curve_server_public_key"
const CURVE_CLIENT_PUBLIC_KEY := "rendering/neural_rendering/curve_client_public_key"
const CURVE_CLIENT_SECRET_KEY := "rendering/neural_rendering/curve_client_secret_key"

## [name, type, default, hint, hint_string] of every setting, in the order they are shown.
const ALL := [
	[ENABLED, TYPE_BOOL, true, PROPERTY_HINT_NONE, ""],
	[INTENSITY, TYPE_FLOAT, 1.0, PROPERTY_HINT_RANGE, "0,1,0.01"],
	[ENDPOINT, TYPE_STRING, "tcp://127.0.0.1:5555", PROPERTY_HINT_PLACEHOLDER_TEXT, "tcp://127.0.0.1:5555"],
	# 0: adaptive, libnrb picks 1 against a renderer-bound server and more over a slow link (protocol 5.9).
	[FRAMES_IN_FLIGHT, TYPE_INT, 0, PROPERTY_HINT_RANGE, "0,64"],
	# 0: automatic, twice the measured round trip plus two frames (neural_rendering.gd); > 0: fixed.
	[DEADLINE_MS, TYPE_FLOAT, 0.0, PROPERTY_HINT_RANGE, "0,60000,1,suffix:ms"],
	[CURVE_SERVER_PUBLIC_KEY, TYPE_STRING, "", PROPERTY_HINT_PLACEHOLDER_TEXT, "Z85; empty: no CurveZMQ"],
	[CURVE_CLIENT_PUBLIC_KEY, TYPE_STRING, "", PROPERTY_HINT_PLACEHOLDER_TEXT, "Z85; per install: override.cfg"],
	[CURVE_CLIENT_SECRET_KEY, TYPE_STRING, "", PROPERTY_HINT_PASSWORD, ""],
]
## The environment variable each CurveZMQ key is read from when its setting is empty.
const CURVE_ENVIRONMENT := {
	CURVE_SERVER_PUBLIC_KEY: "NRB_CURVE_SERVER_PUBLIC_KEY",
	CURVE_CLIENT_PUBLIC_KEY: "NRB_CURVE_CLIENT_PUBLIC_KEY",
	CURVE_CLIENT_SECRET_KEY: "NRB_CURVE_CLIENT_SECRET_KEY",
}


static func register_all() -> void:
	for s in ALL:
		var key: String = s[0]
		if not ProjectSettings.has_setting(key):
			ProjectSettings.set_setting(key, s[2])
		ProjectSettings.set_initial_value(key, s[2])
		ProjectSettings.set_as_basic(key, true)
		var info := {"name": key, "type": s[1], "hint": s[3], "hint_string": s[4]}
		ProjectSettings.add_property_info(info)


static func unregister_all() -> void:
	for s in ALL:
		if ProjectSettings.has_setting(s[0]) and ProjectSettings.get_setting(s[0]) == s[2]:
			ProjectSettings.set_setting(s[0], null)


static func get_value(key: String) -> Variant:
	for s in ALL:
		if s[0] == key:
			return ProjectSettings.get_setting(key, s[2])
	push_error("unknown neural rendering setting %s" % key)
	return null


## A CurveZMQ key from its setting (project.godot, or override.cfg at run time) or, when that is empty, from its
## environment variable ([constant CURVE_ENVIRONMENT]).
static func get_curve_key(key: String) -> String:
	var value := str(get_value(key)).strip_edges()
	if value.is_empty():
		value = OS.get_environment(CURVE_ENVIRONMENT[key]).strip_edges()
	return value
