"""The Unreal 5 plugin cannot be compiled here (no engine), so check what can be: its descriptor and module files
agree with each other, and every Blueprint verb reaches a libnrb C ABI call that really exists in nrb.h."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "engine_plugins" / "unreal" / "NeuralRenderBridge"
SOURCE = PLUGIN / "Source"
NRB_H = ROOT / "cpp" / "include" / "nrb" / "nrb.h"
MODULE = SOURCE / "NeuralRenderBridge"

#: Blueprint verb → the C ABI function its implementation must call.
VERBS = {
    "SetNeuralRenderingEnabled": "nrb_set_enabled",
    "SetNeuralStyle": "nrb_set_style",
    "FireNeuralStyleEvent": "nrb_fire_event",
}


def c_abi_functions() -> set[str]:
    return set(re.findall(r"NRB_API\s+[\w\s\*]+?\b(nrb_\w+)\s*\(", NRB_H.read_text()))


def strip_comments(code: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", code, flags=re.S)


def function_body(code: str, name: str) -> str:
    """The brace-balanced body of ``...::name(...) { ... }`` in ``code``."""
    m = re.search(rf"::{name}\s*\([^)]*\)[^{{;]*\{{", code)
    assert m, f"{name} is not defined"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        i += 1
    return code[m.end() : i]


def test_uplugin_is_valid_json_naming_existing_runtime_modules() -> None:
    desc = json.loads((PLUGIN / "NeuralRenderBridge.uplugin").read_text())
    assert desc["FileVersion"] == 3
    assert desc["Modules"], "a plugin without modules does nothing"
    for mod in desc["Modules"]:
        build = SOURCE / mod["Name"] / f"{mod['Name']}.Build.cs"
        assert build.is_file(), f"module {mod['Name']} has no {build.relative_to(PLUGIN)}"
        assert re.search(rf"class\s+{mod['Name']}\s*:\s*ModuleRules", build.read_text())
        assert mod["Type"] in {"Runtime", "RuntimeNoCommandlet", "ClientOnlyNoCommandlet"}
        impl = "\n".join(p.read_text() for p in (SOURCE / mod["Name"]).rglob("*.cpp"))
        assert re.search(rf"IMPLEMENT_MODULE\(\s*\w+\s*,\s*{mod['Name']}\s*\)", impl)


def test_build_cs_dependencies_name_modules_that_exist_or_ship_with_the_engine() -> None:
    build = (MODULE / "NeuralRenderBridge.Build.cs").read_text()
    deps = set(re.findall(r'"(\w+)"', " ".join(re.findall(r"DependencyModuleNames\.AddRange\((.*?)\);", build, re.S))))
    assert {"Core", "Renderer", "RenderCore", "RHI", "DeveloperSettings", "NrbLibrary"} <= deps
    third_party = SOURCE / "ThirdParty" / "NrbLibrary" / "NrbLibrary.Build.cs"
    text = third_party.read_text()
    assert re.search(r"class\s+NrbLibrary\s*:\s*ModuleRules", text)
    assert "ModuleType.External" in text and "libnrb" in text and "libzmq" in text


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_blueprint_verb_is_declared_callable_and_calls_its_c_abi_function(verb: str) -> None:
    header = (MODULE / "Public" / "NeuralRenderingBlueprintLibrary.h").read_text()
    assert re.search(rf"UFUNCTION\(BlueprintCallable[^\n]*\)\s*static\s+\w+\s+{verb}\s*\(", header)
    impl = strip_comments((MODULE / "Private" / "NeuralRenderingBlueprintLibrary.cpp").read_text())
    assert VERBS[verb] in c_abi_functions()
    assert re.search(rf"\b{VERBS[verb]}\s*\(", function_body(impl, verb)), f"{verb} does not call {VERBS[verb]}"


def test_every_nrb_call_in_the_plugin_exists_in_the_c_abi() -> None:
    known = c_abi_functions()
    assert len(known) > 15
    calls = set()
    for path in MODULE.rglob("*.cpp"):
        calls |= set(re.findall(r"\b(nrb_\w+)\s*\(", strip_comments(path.read_text())))
    assert calls, "the plugin never calls libnrb"
    assert calls <= known, f"not in nrb.h: {sorted(calls - known)}"


def test_console_variables_and_settings_page_are_bound_to_each_other() -> None:
    cvars = (MODULE / "Private" / "NeuralRenderingCVars.cpp").read_text()
    names = set(re.findall(r'TEXT\("(r\.NeuralRendering\.\w+)"\)', cvars))
    assert names >= {"r.NeuralRendering.Enable", "r.NeuralRendering.Endpoint", "r.NeuralRendering.DeadlineMs"}
    settings = (MODULE / "Public" / "NeuralRenderingSettings.h").read_text()
    assert re.search(r"class\s+\w+\s+UNeuralRenderingSettings\s*:\s*public\s+UDeveloperSettings", settings)
    bound = set(re.findall(r'ConsoleVariable\s*=\s*"(r\.NeuralRendering\.\w+)"', settings))
    assert bound and bound <= names, f"settings bound to unknown cvars: {sorted(bound - names)}"


def test_scene_view_extension_subclasses_the_engine_base_and_replaces_the_image() -> None:
    header = (MODULE / "Private" / "NeuralSceneViewExtension.h").read_text()
    assert re.search(r"class\s+FNeuralSceneViewExtension\s*:\s*public\s+FSceneViewExtensionBase", header)
    impl = strip_comments((MODULE / "Private" / "NeuralSceneViewExtension.cpp").read_text())
    for call in ("nrb_frame_begin", "nrb_frame_tag_buffer", "nrb_frame_submit", "nrb_acquire_result",
                 "nrb_release_result"):
        assert call in impl, f"the view extension never calls {call}"
