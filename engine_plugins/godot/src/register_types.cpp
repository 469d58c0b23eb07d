// Neural Render Bridge GDExtension: entry point (see neural_render_bridge.gdextension, entry_symbol).
#include "register_types.h"

#include <gdextension_interface.h>

#include <godot_cpp/core/defs.hpp>
#include <godot_cpp/godot.hpp>

#include "nrb_client.h"

using namespace godot;

void initialize_nrb_module(ModuleInitializationLevel p_level) {
  if (p_level != MODULE_INITIALIZATION_LEVEL_SCENE) return;
  GDREGISTER_CLASS(NRBClient);
}

void uninitialize_nrb_module(ModuleInitializationLevel p_level) {
  (void)p_level;
}

extern "C" {
GDExtensionBool GDE_EXPORT nrb_godot_library_init(GDExtensionInterfaceGetProcAddress p_get_proc_address,
                                                  const GDExtensionClassLibraryPtr p_library,
                                                  GDExtensionInitialization* r_initialization) {
  GDExtensionBinding::InitObject init_obj(p_get_proc_address, p_library, r_initialization);
  init_obj.register_initializer(initialize_nrb_module);
  init_obj.register_terminator(uninitialize_nrb_module);
  init_obj.set_minimum_library_initialization_level(MODULE_INITIALIZATION_LEVEL_SCENE);
  return init_obj.init();
}
}
