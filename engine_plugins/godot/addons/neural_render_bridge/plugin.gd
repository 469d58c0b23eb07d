@tool
extends EditorPlugin
## Editor side of the Neural Render Bridge: registers the project settings
## rendering/neural_rendering/{enabled,endpoint,frames_in_flight,deadline_ms} and the CurveZMQ keys
## rendering/neural_rendering/curve_{server_public,client_public,client_secret}_key, and the autoload singleton
## NeuralRendering that games talk to. Warns when a client secret key is stored in project.godot.

const AUTOLOAD_NAME := "NeuralRendering"
const AUTOLOAD_PATH := "res://addons/neural_render_bridge/neural_rendering.gd"
const Settings := preload("res://addons/neural_render_bridge/settings.gd")

var _secret_warned := false


func _enter_tree() -> void:
	# Registered for this editor session only: saving here would rewrite the user's project.godot on every editor
	# start. The settings are saved when the plugin is enabled or disabled, and whenever the user edits one.
	Settings.register_all()
	ProjectSettings.settings_changed.connect(_warn_if_secret_in_project)
	_warn_if_secret_in_project()


func _exit_tree() -> void:
	if ProjectSettings.settings_changed.is_connected(_warn_if_secret_in_project):
		ProjectSettings.settings_changed.disconnect(_warn_if_secret_in_project)


func _enable_plugin() -> void:
	Settings.register_all()
	add_autoload_singleton(AUTOLOAD_NAME, AUTOLOAD_PATH)
	ProjectSettings.save()


func _disable_plugin() -> void:
	remove_autoload_singleton(AUTOLOAD_NAME)
	Settings.unregister_all()
	ProjectSettings.save()


## The editor never loads override.cfg (Godot 4), so a client secret key it sees was typed into Project Settings and
## is saved in project.godot: committed with the project and exported inside every copy of the game.
func _warn_if_secret_in_project() -> void:
	var stored := not str(ProjectSettings.get_setting(Settings.CURVE_CLIENT_SECRET_KEY, "")).is_empty()
	if stored and not _secret_warned:
		push_warning(
			(
				"Neural Render Bridge: %s is saved in project.godot. A client's secret key belongs to one install: "
				+ "clear it here and put it in override.cfg beside the game or in %s."
			)
			% [Settings.CURVE_CLIENT_SECRET_KEY, Settings.CURVE_ENVIRONMENT[Settings.CURVE_CLIENT_SECRET_KEY]]
		)
	_secret_warned = stored
