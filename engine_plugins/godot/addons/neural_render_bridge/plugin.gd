@tool
extends EditorPlugin
## Editor side of the Neural Render Bridge: registers the project settings
## rendering/neural_rendering/{enabled,endpoint,frames_in_flight,deadline_ms} and the autoload singleton
## NeuralRendering that games talk to.

const AUTOLOAD_NAME := "NeuralRendering"
const AUTOLOAD_PATH := "res://addons/neural_render_bridge/neural_rendering.gd"
const Settings := preload("res://addons/neural_render_bridge/settings.gd")


func _enter_tree() -> void:
	Settings.register_all()
	ProjectSettings.save()


func _enable_plugin() -> void:
	Settings.register_all()
	add_autoload_singleton(AUTOLOAD_NAME, AUTOLOAD_PATH)
	ProjectSettings.save()


func _disable_plugin() -> void:
	remove_autoload_singleton(AUTOLOAD_NAME)
	Settings.unregister_all()
	ProjectSettings.save()
