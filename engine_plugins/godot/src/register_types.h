// Neural Render Bridge GDExtension: module registration.
#pragma once

#include <godot_cpp/core/class_db.hpp>

void initialize_nrb_module(godot::ModuleInitializationLevel p_level);
void uninitialize_nrb_module(godot::ModuleInitializationLevel p_level);
