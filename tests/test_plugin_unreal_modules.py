"""Unreal plugin, more of what can be checked without the engine (test_plugin_unreal.py has the basics): the module
loads early enough for its shader, Build.cs lists the modules whose headers are included, the ThirdParty module ships
libnrb for every platform, engine-only Blueprint functions say so, and each shader declares every parameter the C++
binds. (tools/check_unreal_api.py checks the engine symbols themselves against an engine source tree.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

from test_plugin_unreal import c_calls_reached, for_this_nrb_h

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "engine_plugins" / "unreal" / "NeuralRenderBridge"
SOURCE = PLUGIN / "Source"
MODULE = SOURCE / "NeuralRenderBridge"
NRB_H = ROOT / "cpp" / "include" / "nrb" / "nrb.h"

#: Blueprint function -> the C ABI call it must make.
REQUIRED_BLUEPRINT = {
    "SetNeuralRenderingEnabled": "nrb_set_enabled",
    "SetNeuralStyle": "nrb_set_style",
    "FireNeuralStyleEvent": "nrb_fire_event_params",
    # issue 17: styles written at run time, intensity, exclusion by id
    "DefineNeuralStyle": "nrb_set_style_params",
    "SetNeuralIntensity": "nrb_set_intensity",
    "ExcludeFromNeuralRendering": "nrb_exclude",
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
    "SceneTexturesConfig.h": "Engine",
    "FXRenderingUtils.h": "Renderer",
    "RHIStaticStates.h": "RenderCore",
    "RenderingThread.h": "RenderCore",
    "ShaderCore.h": "RenderCore",
    "DataDrivenShaderPlatformInfo.h": "RHI",
    "Engine/DeveloperSettingsBackedByCVars.h": "DeveloperSettings",
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
    # An EngineVersion makes every other engine version ask "designed for build X. Attempt to load it anyway?"
    # (FPluginManager::IsPluginCompatible); the source plugin builds against 5.3-5.5 (version guards), which its
    # README states.
    assert "EngineVersion" not in data
    assert re.search(r"5\.3.{0,12}5\.4.{0,12}5\.5", (PLUGIN / "README.md").read_text(), re.S)
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
        calls = c_calls_reached(for_this_nrb_h(bodies[fn]))  # directly, or through the module or the glue
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
    own = set(re.findall(r"#define\s+(NRB_\w+)", code))  # the plugin's own switches (NRB_GLUE_HAS_REFUSAL)
    enums = set(re.findall(r"\b(NRB_[A-Z0-9_]+)\b", for_this_nrb_h(code))) - own
    assert {"NRB_FORMAT_R32F", "NRB_LOG_WARNING"} <= enums
    header = NRB_H.read_text()
    for e in enums:
        assert re.search(rf"\b{e}\b", header), f"{e} is not defined in nrb.h"


def shader_classes(cpp: str) -> dict[str, tuple[str, str, list[str]]]:
    """Global shader class -> (usf path under the plugin's Shaders/, entry point, the names its parameter struct
    declares), from ``class X : public FGlobalShader { ... BEGIN_SHADER_PARAMETER_STRUCT ... }`` and
    ``IMPLEMENT_GLOBAL_SHADER(X, "/Plugin/NeuralRenderBridge/...", "Entry", ...)``."""
    out = {}
    for cls, body in re.findall(r"class (\w+) : public FGlobalShader\s*\{(.*?)\n\};", cpp, re.S):
        impl = re.search(rf'IMPLEMENT_GLOBAL_SHADER\({cls}, "/Plugin/NeuralRenderBridge/([^"]+)", "(\w+)"', cpp)
        assert impl, f"{cls} is not implemented under /Plugin/NeuralRenderBridge"
        params = re.findall(r"SHADER_PARAMETER\w*\((?:[^(),]|\([^()]*\))*,\s*(\w+)", body)
        out[cls] = (impl.group(1), impl.group(2), params)
    return out


def test_scene_view_extension_overrides_and_shader_path():
    h = (MODULE / "Private" / "NeuralSceneViewExtension.h").read_text()
    assert "public FSceneViewExtensionBase" in h
    for fn in ("PostRenderBasePassDeferred_RenderThread", "SubscribeToPostProcessingPass",
               "PreRenderViewFamily_RenderThread"):
        assert re.search(rf"virtual void {fn}\(.*?\) override", h, re.S), fn
    cpp = (MODULE / "Private" / "NeuralSceneViewExtension.cpp").read_text()
    assert "FRHIGPUTextureReadback" in cpp and "AddEnqueueCopyPass" in cpp and "OverrideOutput" in cpp
    shaders = shader_classes(cpp)
    assert set(shaders) == {"FNrbPackCS", "FNrbCompositePS", "FNrbHudlessCS"}  # hudless_color after Tonemap
    for cls, (usf, entry, params) in shaders.items():
        shader = PLUGIN / "Shaders" / usf
        assert shader.is_file(), f"{cls}: {usf}"
        text = shader.read_text()
        assert re.search(rf"void {entry}\(", text), f"{cls}: no {entry} in {usf}"
        # every parameter of the C++ struct is declared in its shader (the View and SceneTexturesStruct uniform
        # buffers are declared by the engine's includes)
        assert params, cls
        for p in params:
            if p in ("View", "SceneTexturesStruct"):
                continue
            assert re.search(rf"\b{p}(\[\d+\])?;", text), f"{cls}: {p} is not declared in {usf}"
    assert len(shaders["FNrbPackCS"][2]) >= 12
