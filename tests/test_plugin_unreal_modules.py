"""Unreal plugin, more of what can be checked without the engine (test_plugin_unreal.py has the basics): the module
loads early enough for its shader, Build.cs lists the modules whose headers are included, the ThirdParty module ships
libnrb for every platform, engine-only Blueprint functions say so, and the pack shader declares every texture the
C++ binds."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "engine_plugins" / "unreal" / "NeuralRenderBridge"
SOURCE = PLUGIN / "Source"
MODULE = SOURCE / "NeuralRenderBridge"
NRB_H = ROOT / "cpp" / "include" / "nrb" / "nrb.h"

#: Blueprint function -> the C ABI call it must make.
REQUIRED_BLUEPRINT = {
    "SetNeuralRenderingEnabled": "nrb_set_enabled",
    "SetNeuralStyle": "nrb_set_style",
    "FireNeuralStyleEvent": "nrb_fire_event",
}

#: Include prefix -> the module that provides it (what Build.cs must list).
INCLUDE_MODULES = {
    "Engine/DeveloperSettings.h": "DeveloperSettings",
    "Interfaces/IPluginManager.h": "Projects",
    "SceneViewExtension.h": "Engine",
    "RHIGPUReadback.h": "RHI",
    "RenderGraphBuilder.h": "RenderCore",
    "RenderGraphUtils.h": "RenderCore",
    "GlobalShader.h": "RenderCore",
    "ShaderParameterStruct.h": "RenderCore",
    "PostProcess/PostProcessMaterialInputs.h": "Renderer",
    "ScreenPass.h": "Renderer",
    "SceneTexturesConfig.h": "Renderer",
    "Kismet/BlueprintFunctionLibrary.h": "Engine",
    "Components/PrimitiveComponent.h": "Engine",
    "nrb/nrb.h": "NrbLibrary",
}


def strip_cs_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def build_cs_modules(path: Path) -> set[str]:
    text = strip_cs_comments(path.read_text())
    out: set[str] = set()
    for block in re.findall(r"DependencyModuleNames\.AddRange\(new string\[\]\s*\{(.*?)\}\s*\)", text, re.S):
        out |= set(re.findall(r'"(\w+)"', block))
    out |= set(re.findall(r'DependencyModuleNames\.Add\("(\w+)"\)', text))
    return out


def c_functions() -> set[str]:
    return set(re.findall(r"NRB_API\s+[\w\s\*]+?\b(nrb_\w+)\s*\(", NRB_H.read_text()))


def sources() -> list[Path]:
    return sorted(MODULE.rglob("*.h")) + sorted(MODULE.rglob("*.cpp"))


def function_bodies(cpp: str, cls: str) -> dict[str, str]:
    """``Class::Method(...) { body }`` of a .cpp file, with braces balanced."""
    out = {}
    for m in re.finditer(rf"\b{cls}::(\w+)\s*\(", cpp):
        start = cpp.index("{", m.end())
        depth, i = 0, start
        while True:
            if cpp[i] == "{":
                depth += 1
            elif cpp[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        out[m.group(1)] = cpp[start:i + 1]
    return out


def test_uplugin_is_valid_json_and_lists_the_module():
    data = json.loads((PLUGIN / "NeuralRenderBridge.uplugin").read_text())
    assert data["FileVersion"] == 3
    major, minor = (int(x) for x in data["EngineVersion"].split(".")[:2])
    assert (major, minor) >= (5, 3)
    names = [m["Name"] for m in data["Modules"]]
    assert names == ["NeuralRenderBridge"]
    for m in data["Modules"]:
        assert m["Type"] in ("Runtime", "RuntimeNoCommandlet", "ClientOnly")
        # the module maps a shader directory, which must happen before the engine compiles shaders
        assert m["LoadingPhase"] == "PostConfigInit"
        assert (SOURCE / m["Name"] / f"{m['Name']}.Build.cs").is_file()


def test_build_cs_class_names_match_their_modules():
    for cs in SOURCE.rglob("*.Build.cs"):
        name = cs.name[: -len(".Build.cs")]
        text = cs.read_text()
        assert re.search(rf"public class {name} : ModuleRules", text), cs
        assert re.search(rf"public {name}\(ReadOnlyTargetRules Target\) : base\(Target\)", text), cs
    third = SOURCE / "ThirdParty" / "NrbLibrary" / "NrbLibrary.Build.cs"
    text = third.read_text()
    assert "Type = ModuleType.External" in text
    for lib in ("libnrb.so", "nrb.lib", "libnrb.dylib", "libzmq"):
        assert lib in text, lib


def test_build_cs_lists_the_modules_whose_headers_are_included():
    deps = build_cs_modules(MODULE / "NeuralRenderBridge.Build.cs")
    assert "NrbLibrary" in deps
    modules = {cs.name[: -len(".Build.cs")] for cs in SOURCE.rglob("*.Build.cs")}
    assert "NrbLibrary" in modules  # the dependency resolves to a module of the plugin
    for path in sources():
        for inc in re.findall(r'#include\s+"([^"]+)"', path.read_text()):
            need = INCLUDE_MODULES.get(inc)
            if need is not None and need != "Engine":
                assert need in deps, f"{path.name} includes {inc} but Build.cs does not list {need}"
    # and the module implementation registers itself under the module's name
    cpp = (MODULE / "Private" / "NeuralRenderBridgeModule.cpp").read_text()
    assert re.search(r"IMPLEMENT_MODULE\(FNeuralRenderBridgeModule, NeuralRenderBridge\)", cpp)
    api = re.findall(r"\b(\w+)_API\b", "".join(p.read_text() for p in (MODULE / "Public").glob("*.h")))
    assert set(api) == {"NEURALRENDERBRIDGE"}


def test_every_blueprint_function_maps_to_a_c_abi_call_in_nrb_h():
    known = c_functions()
    header = (MODULE / "Public" / "NeuralRenderingBlueprintLibrary.h").read_text()
    ufuncs = re.findall(r"UFUNCTION\((?:[^()]|\([^()]*\))*\)\s*static\s+[\w<>:]+\s+(\w+)\s*\(", header)
    assert set(REQUIRED_BLUEPRINT) <= set(ufuncs), ufuncs
    bodies = function_bodies((MODULE / "Private" / "NeuralRenderingBlueprintLibrary.cpp").read_text(),
                             "UNeuralRenderingBlueprintLibrary")
    for fn in ufuncs:
        assert fn in bodies, f"{fn} has no implementation"
        calls = set(re.findall(r"\b(nrb_[a-z_]+)\s*\(", bodies[fn]))
        assert not (calls - known), f"{fn} calls {calls - known}, which nrb.h does not declare"
        if fn in REQUIRED_BLUEPRINT:
            assert REQUIRED_BLUEPRINT[fn] in calls, f"{fn} does not call {REQUIRED_BLUEPRINT[fn]}"
        elif not calls:
            # engine-side-only functions must say so in their declaration's comment
            decl = header[: header.index(f" {fn}(")].rsplit("UFUNCTION", 1)[0].rsplit("/**", 1)[-1]
            assert "no C ABI call" in decl, f"{fn} maps to no C ABI call and is not documented as engine-only"
    # the comments in the header name the same calls
    for fn, call in REQUIRED_BLUEPRINT.items():
        decl = header[: header.index(f" {fn}(")].rsplit("/**", 1)[-1]
        assert call in decl, fn


def test_all_libnrb_constants_in_the_plugin_exist():
    # identifiers in code: comments and string literals also name other things (the NRB_CURVE_* environment variables)
    code = re.sub(r'"(?:\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/', " ", "".join(p.read_text() for p in sources()),
                  flags=re.S)
    enums = set(re.findall(r"\b(NRB_[A-Z0-9_]+)\b", code))
    assert {"NRB_FORMAT_R32F", "NRB_LOG_WARNING"} <= enums
    header = NRB_H.read_text()
    for e in enums:
        assert re.search(rf"\b{e}\b", header), f"{e} is not defined in nrb.h"


def test_scene_view_extension_overrides_and_shader_path():
    h = (MODULE / "Private" / "NeuralSceneViewExtension.h").read_text()
    assert "public FSceneViewExtensionBase" in h
    for fn in ("PostRenderBasePassDeferred_RenderThread", "SubscribeToPostProcessingPass",
               "PreRenderViewFamily_RenderThread"):
        assert re.search(rf"virtual void {fn}\(.*?\) override", h, re.S), fn
    cpp = (MODULE / "Private" / "NeuralSceneViewExtension.cpp").read_text()
    assert "FRHIGPUTextureReadback" in cpp and "AddEnqueueCopyPass" in cpp and "OverrideOutput" in cpp
    usf = re.search(r'IMPLEMENT_GLOBAL_SHADER\(\w+, "/Plugin/NeuralRenderBridge/([^"]+)", "(\w+)"', cpp)
    assert usf
    shader = PLUGIN / "Shaders" / usf.group(1)
    assert shader.is_file()
    text = shader.read_text()
    assert re.search(rf"void {usf.group(2)}\(", text)
    # every UAV/SRV parameter of the C++ struct is declared in the shader
    params = re.findall(r"SHADER_PARAMETER_RDG_TEXTURE_(?:UAV|SRV)\([^,]+,\s*(\w+)\)", cpp)
    assert len(params) >= 10
    for p in params:
        assert re.search(rf"\b{p};", text), p
