"""tools/check_unreal_api.py: lists the engine symbols an Unreal plugin uses and verifies them against an engine
source tree. Checked here on a small synthetic engine and plugin made in tmp_path (every symbol present: passes;
one removed: fails naming it; version guards, deprecations, shader includes, module dependencies, the fetch list),
on the real plugin against the engine-file list recorded in its Extras/EngineApi (no engine needed), and on the real
plugin against a real engine tree when NRB_UNREAL_SOURCE names one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "check_unreal_api.py"
PLUGIN = ROOT / "engine_plugins" / "unreal" / "NeuralRenderBridge"
MANIFEST = PLUGIN / "Extras" / "EngineApi" / "ue-5.5-files.txt"

ENGINE: dict[str, str] = {
    "Engine/Source/Runtime/Launch/Resources/Version.h": """
#define ENGINE_MAJOR_VERSION 5
#define ENGINE_MINOR_VERSION 5
#define ENGINE_PATCH_VERSION 1
""",
    "Engine/Source/Runtime/Core/Core.Build.cs": "public class Core : ModuleRules {}",
    "Engine/Source/Runtime/Core/Public/Misc/EngineVersionComparison.h": """
#define UE_VERSION_OLDER_THAN(MajorVersion, MinorVersion, PatchVersion) 0
#define TEXT(x) L##x
""",
    "Engine/Source/Runtime/Core/Public/HAL/Platform.h": "typedef signed int int32;\ntypedef unsigned int uint32;\n",
    "Engine/Source/Runtime/Core/Public/Containers/Array.h": """
template <typename T> class TArray
{
public:
    int32 Num() const { return ArrayNum; }
    T& Add(const T& Item);
};
""",
    "Engine/Source/Runtime/Renderer/Renderer.Build.cs": """
public class Renderer : ModuleRules { public Renderer() { PublicDependencyModuleNames.AddRange(new string[] { "Core" }); } }
""",
    "Engine/Source/Runtime/Renderer/Public/ViewExtension.h": """
#include "Containers/Array.h"
enum class EPass : uint32 { Bloom, Tonemap };
class FSceneView
{
public:
    FIntRect ViewRect;
    bool bIsSceneCapture;
};
class RENDERER_API ISceneExtension
{
public:
    virtual ~ISceneExtension() {}
    virtual void Subscribe(EPass Pass, const FSceneView& InView, bool bEnabled) {}
    UE_DEPRECATED(5.5, "Subscribe now takes a view")
    virtual void Subscribe(EPass Pass, bool bEnabled) {}
};
struct FGraphUtils
{
    static void AddPass(int32 Count);
};
RENDERER_API void AddCopyPass(const FSceneView& View);
""",
    "Engine/Source/Runtime/Hidden/Hidden.Build.cs": "public class Hidden : ModuleRules {}",
    "Engine/Source/Runtime/Hidden/Public/HiddenThing.h": "class FHiddenThing {};",
    "Engine/Shaders/Private/Common.ush": """
#include "Helpers.ush"
float3 Brighten(float3 C) { return C * 2; }
""",
    "Engine/Shaders/Private/Helpers.ush": "#define SWIZZLE .x\nfloat Halve(float X) { return X / 2; }\n",
    "Engine/Shaders/Private/Gamma.ush": "float3 ToSrgb(float3 C) { return C; }\n",
}

PLUGIN_FILES: dict[str, str] = {
    "Source/Demo/Demo.Build.cs": """
public class Demo : ModuleRules { public Demo() { PrivateDependencyModuleNames.AddRange(new string[] { "Renderer" }); } }
""",
    "Source/Demo/Private/DemoExtension.h": """
#pragma once
#include "Misc/EngineVersionComparison.h"
#include "ViewExtension.h"

class FDemoExtension : public ISceneExtension
{
public:
#if UE_VERSION_OLDER_THAN(5, 5, 0)
    virtual void Subscribe(EPass Pass, bool bEnabled) override;
#else
    virtual void Subscribe(EPass Pass, const FSceneView& InView, bool bEnabled) override;
#endif
};
""",
    "Source/Demo/Private/DemoExtension.cpp": """
#include "DemoExtension.h"

void Run(const FSceneView& View, TArray<int32>& Items)
{
    if (!View.bIsSceneCapture && Items.Num() > 0 && EPass::Tonemap == EPass::Tonemap)
    {
        FGraphUtils::AddPass(Items.Num());
        AddCopyPass(View);
    }
}
""",
    "Shaders/Private/Demo.usf": """
#include "/Engine/Private/Common.ush"
float4 MainPS(float4 C : TEXCOORD0) : SV_Target0
{
    return float4(Brighten(C.rgb) * Halve(C.a), 1) SWIZZLE;
}
""",
}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text.lstrip("\n"))
    return root


def check(plugin: Path, engine: Path, *extra: str) -> tuple[int, dict[tuple[str, str], dict[str, object]], str]:
    """Runs the checker; returns its exit status, its results by (kind, name) and its printed table."""
    out = plugin.parent / "result.json"
    proc = subprocess.run([sys.executable, str(TOOL), "--plugin", str(plugin), "--engine-source", str(engine),
                           "--json", str(out), *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(out.read_text())
    return proc.returncode, {(r["kind"], r["name"]): r for r in data["results"]}, proc.stdout


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    return write_tree(tmp_path / "plugin", PLUGIN_FILES), write_tree(tmp_path / "engine", ENGINE)


def test_a_tree_with_every_symbol_passes(trees: tuple[Path, Path]) -> None:
    plugin, engine = trees
    rc, results, table = check(plugin, engine)
    assert rc == 0, table
    expected = {
        ("include", "ViewExtension.h"): "Engine/Source/Runtime/Renderer/Public/ViewExtension.h:1",
        ("type", "ISceneExtension"): "Engine/Source/Runtime/Renderer/Public/ViewExtension.h:9",
        ("member", "FGraphUtils::AddPass"): "Engine/Source/Runtime/Renderer/Public/ViewExtension.h:19",
        ("member", "FSceneView::bIsSceneCapture"): "Engine/Source/Runtime/Renderer/Public/ViewExtension.h:7",
        ("member", "TArray::Num"): "Engine/Source/Runtime/Core/Public/Containers/Array.h:4",
        ("member", "EPass::Tonemap"): "Engine/Source/Runtime/Renderer/Public/ViewExtension.h:2",
        ("function", "AddCopyPass"): "Engine/Source/Runtime/Renderer/Public/ViewExtension.h:21",
        ("override", "FDemoExtension::Subscribe(EPass, const FSceneView&, bool)"):
            "Engine/Source/Runtime/Renderer/Public/ViewExtension.h:13",
        ("module", "Renderer"): "Engine/Source/Runtime/Renderer/Renderer.Build.cs:1",
        ("shader-include", "/Engine/Private/Common.ush"): "Engine/Shaders/Private/Common.ush:1",
        ("shader-function", "Brighten"): "Engine/Shaders/Private/Common.ush:2",
        ("shader-function", "Halve"): "Engine/Shaders/Private/Helpers.ush:2",  # reached through Common.ush
        ("shader-macro", "SWIZZLE"): "Engine/Shaders/Private/Helpers.ush:1",
    }
    for key, where in expected.items():
        assert key in results, f"{key} not listed:\n{table}"
        assert results[key]["status"] == "ok" and results[key]["where"] == where, (key, results[key])
    assert re.search(r"\d+ symbols: \d+ found, .* 0 MISSING", table)


def test_a_missing_symbol_fails_and_is_named(trees: tuple[Path, Path]) -> None:
    plugin, engine = trees
    header = engine / "Engine/Source/Runtime/Renderer/Public/ViewExtension.h"
    header.write_text(header.read_text().replace("static void AddPass(int32 Count);", ""))
    rc, results, table = check(plugin, engine)
    assert rc == 1
    assert results[("member", "FGraphUtils::AddPass")]["status"] == "MISSING"
    assert re.search(r"^member\s+FGraphUtils::AddPass\s+-\s+MISSING", table, re.M), table
    assert sum(r["status"] == "MISSING" for r in results.values()) == 1


def test_a_symbol_used_only_for_another_engine_version_is_not_a_failure(trees: tuple[Path, Path]) -> None:
    """The tree is 5.5.1: the override of the deprecated two-argument Subscribe sits under
    UE_VERSION_OLDER_THAN(5, 5, 0) and is reported for other versions; checked as 5.4 it is the active one, and
    overriding a virtual the engine deprecated (and no longer calls) fails."""
    plugin, engine = trees
    rc, results, _ = check(plugin, engine)
    old = results[("override", "FDemoExtension::Subscribe(EPass, bool)")]
    assert rc == 0 and old["status"] == "other-version", old
    assert "UE_VERSION_OLDER_THAN(5, 5, 0)" in str(old["note"]) and "here: DEPRECATED" in str(old["note"])
    rc, results, table = check(plugin, engine, "--engine-version", "5.4.0")
    assert rc == 1
    assert results[("override", "FDemoExtension::Subscribe(EPass, bool)")]["status"] == "DEPRECATED"
    assert "deprecated in 5.5: Subscribe now takes a view" in str(
        results[("override", "FDemoExtension::Subscribe(EPass, bool)")]["note"])
    assert results[("override", "FDemoExtension::Subscribe(EPass, const FSceneView&, bool)")]["status"] == \
        "other-version"


def test_an_override_whose_signature_changed_fails(trees: tuple[Path, Path]) -> None:
    plugin, engine = trees
    header = engine / "Engine/Source/Runtime/Renderer/Public/ViewExtension.h"
    header.write_text(header.read_text().replace("const FSceneView& InView, bool bEnabled) {}",
                                                 "const FSceneView& InView, int32 Flags) {}"))
    rc, results, _ = check(plugin, engine)
    new = results[("override", "FDemoExtension::Subscribe(EPass, const FSceneView&, bool)")]
    assert rc == 1 and new["status"] == "MISSING"
    assert "ISceneExtension::Subscribe(EPass, const FSceneView&, int32)" in str(new["note"])


def test_a_shader_function_must_be_reachable_through_the_includes(trees: tuple[Path, Path]) -> None:
    """The engine defines ToSrgb, but in a file the shader does not include (NrbPack.usf's LinearToSrgb)."""
    plugin, engine = trees
    usf = plugin / "Shaders/Private/Demo.usf"
    usf.write_text(usf.read_text().replace("Brighten(C.rgb)", "ToSrgb(C.rgb)"))
    rc, results, _ = check(plugin, engine)
    assert rc == 1 and results[("shader-function", "ToSrgb")]["status"] == "MISSING"
    usf.write_text('#include "/Engine/Private/Gamma.ush"\n' + usf.read_text())
    rc, results, _ = check(plugin, engine)
    assert rc == 0 and results[("shader-function", "ToSrgb")]["where"] == "Engine/Shaders/Private/Gamma.ush:1"


def test_an_include_from_a_module_build_cs_does_not_list_fails(trees: tuple[Path, Path]) -> None:
    plugin, engine = trees
    cpp = plugin / "Source/Demo/Private/DemoExtension.cpp"
    cpp.write_text('#include "HiddenThing.h"\n' + cpp.read_text())
    rc, results, _ = check(plugin, engine)
    hidden = results[("include", "HiddenThing.h")]
    assert rc == 1 and hidden["status"] == "DEPENDENCY" and "module Hidden" in str(hidden["note"])
    # Core is reached through Renderer's public dependencies: its headers may be included
    assert "via Renderer" in str(results[("include", "Misc/EngineVersionComparison.h")]["note"])


def test_fetch_list_names_the_files_a_subset_needs(trees: tuple[Path, Path], tmp_path: Path) -> None:
    """--fetch-list with a full tree: the files that answered; a tree made of just those gives the same result."""
    plugin, engine = trees
    proc = subprocess.run([sys.executable, str(TOOL), "--plugin", str(plugin), "--engine-source", str(engine),
                           "--fetch-list"], capture_output=True, text=True, check=True)
    files = proc.stdout.split()
    assert "Engine/Source/Runtime/Renderer/Public/ViewExtension.h" in files
    assert "Engine/Shaders/Private/Helpers.ush" in files and "Engine/Shaders/Private/Gamma.ush" not in files
    assert "Engine/Source/Runtime/Hidden/Public/HiddenThing.h" not in files
    subset = tmp_path / "subset"
    for rel in files:
        (subset / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(engine / rel, subset / rel)
    full = check(plugin, engine)
    part = check(plugin, subset)
    assert part[0] == full[0] == 0
    assert {k: (v["status"], v["where"]) for k, v in part[1].items()} == \
        {k: (v["status"], v["where"]) for k, v in full[1].items()}


def test_fetch_list_from_a_path_list_alone(trees: tuple[Path, Path], tmp_path: Path) -> None:
    """Without any engine files, a list of a tree's paths (git ls-tree -r --name-only) resolves the version header,
    the modules' Build.cs, the plugin's includes and shader includes."""
    plugin, engine = trees
    index = tmp_path / "index.txt"
    index.write_text("\n".join(sorted(ENGINE)) + "\nEngine/Source/Runtime/Other/Public/ViewExtension.h\n")
    proc = subprocess.run([sys.executable, str(TOOL), "--plugin", str(plugin), "--fetch-list", "--engine-index",
                           str(index)], capture_output=True, text=True, check=True)
    files = proc.stdout.split()
    assert {"Engine/Source/Runtime/Launch/Resources/Version.h", "Engine/Source/Runtime/Renderer/Renderer.Build.cs",
            "Engine/Source/Runtime/Renderer/Public/ViewExtension.h",
            "Engine/Shaders/Private/Common.ush"} <= set(files)


def test_the_recorded_engine_file_list_covers_the_plugins_includes() -> None:
    """Extras/EngineApi/ue-5.5-files.txt is what a full 5.5 tree answered (--fetch-list): every engine header the
    plugin includes must be in it, or the list is out of date (regenerate it against a full tree)."""
    listed = [line for line in MANIFEST.read_text().splitlines() if line and not line.startswith("#")]
    assert "Engine/Source/Runtime/Launch/Resources/Version.h" in listed
    own = {p.name for p in (PLUGIN / "Source").rglob("*.h")}
    for path in sorted((PLUGIN / "Source" / "NeuralRenderBridge").rglob("*")):
        if path.suffix not in (".h", ".cpp"):
            continue
        for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', path.read_text(), re.M):
            if inc in own or inc.endswith(".generated.h") or inc.startswith("nrb/"):
                continue
            assert any(p.endswith("/" + inc) for p in listed), f"{path.name} includes {inc}: not in {MANIFEST.name}"
    for usf in (PLUGIN / "Shaders").rglob("*.usf"):
        for inc in re.findall(r'#include\s+"/Engine/([^"]+)"', usf.read_text()):
            assert f"Engine/Shaders/{inc}" in listed, f"{usf.name} includes {inc}"


@pytest.mark.skipif(not os.environ.get("NRB_UNREAL_SOURCE"),
                    reason="set NRB_UNREAL_SOURCE to an Unreal Engine source tree (full, or the files "
                           "engine_plugins/unreal/NeuralRenderBridge/Extras/EngineApi/ue-5.5-files.txt lists) "
                           "to check the plugin against it")
def test_the_plugin_against_a_real_engine_tree(tmp_path: Path) -> None:
    """Every engine symbol of the real plugin is declared in the tree given by NRB_UNREAL_SOURCE."""
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(TOOL), "--engine-source", os.environ["NRB_UNREAL_SOURCE"],
                           "--json", str(out)], capture_output=True, text=True, timeout=900)
    failures = [r for r in json.loads(out.read_text())["results"]
                if r["status"] in ("MISSING", "DEPENDENCY", "DEPRECATED")]
    assert proc.returncode == 0 and not failures, proc.stdout[-4000:]
