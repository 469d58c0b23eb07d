"""The Unreal 5 plugin cannot be compiled here (no engine), so check what can be: its descriptor and module files
agree with each other, and every Blueprint verb reaches a libnrb C ABI call that really exists in nrb.h (directly, or
through the module or the engine-independent glue, NrbGlue.cpp, which test_plugin_unreal_glue.py compiles)."""

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
    "FireNeuralStyleEvent": "nrb_fire_event_params",
    # issue 17: styles written at run time, intensity, exclusion by id
    "DefineNeuralStyle": "nrb_set_style_params",
    "SetNeuralIntensity": "nrb_set_intensity",
    "ExcludeFromNeuralRendering": "nrb_exclude",
}


CURVE_CVARS = ("r.NeuralRendering.CurveServerPublicKey", "r.NeuralRendering.CurveClientPublicKey",
               "r.NeuralRendering.CurveClientSecretKey")


def c_abi_functions() -> set[str]:
    return set(re.findall(r"NRB_API\s+[\w\s\*]+?\b(nrb_\w+)\s*\(", NRB_H.read_text()))


def strip_comments(code: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", code, flags=re.S)


def stats_version() -> int:
    return int(re.search(r"#define NRB_STATS_VERSION (\d+)", NRB_H.read_text()).group(1))


def for_this_nrb_h(code: str) -> str:
    """``code`` as compiled against this nrb.h: the refusal code (``#if NRB_GLUE_HAS_REFUSAL``) only exists from
    nrb_stats version 3 on (NrbGlue.h), so against an older header it is left out."""
    if stats_version() >= 3:
        return code
    return re.sub(r"#if NRB_GLUE_HAS_REFUSAL\b.*?#(?:else|endif)", "", code, flags=re.S)


SETTINGS_BASE = r"UDeveloperSettings(?:BackedByCVars)?"


def settings_headers() -> list[Path]:
    """The settings pages of the plugin (UDeveloperSettings or its console-variable-backed subclass)."""
    return [h for h in sorted((MODULE / "Public").glob("*.h"))
            if re.search(rf":\s*public\s+{SETTINGS_BASE}\b", h.read_text())]


def config_curve_fields() -> list[str]:
    """The curve_* fields of nrb_client_config, in declaration order."""
    struct = re.search(r"typedef struct nrb_client_config \{(.*?)\} nrb_client_config;", NRB_H.read_text(), re.S)
    return re.findall(r"\b(curve_\w+);", struct.group(1))


def camel(field: str) -> str:
    return "".join(part.title() for part in field.split("_"))


def function_body(code: str, name: str) -> str:
    """The brace-balanced body of ``...::name(...) { ... }`` in ``code``."""
    m = re.search(rf"::{name}\s*\([^)]*\)[^{{;]*\{{", code)
    assert m, f"{name} is not defined"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        i += 1
    return code[m.end() : i]


def glue_body(name: str) -> str:
    """The body of ``nrbglue::name`` in NrbGlue.cpp (defined inside ``namespace nrbglue``, without a qualifier)."""
    code = strip_comments((MODULE / "Private" / "NrbGlue.cpp").read_text())
    m = re.search(rf"\n[\w:<>&* ]+\b{name}\s*\([^;{{]*\)\s*(?::[^{{]*)?\{{", code)
    assert m, f"nrbglue::{name} is not defined"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        i += 1
    return code[m.end() : i]


def c_calls_reached(body: str) -> set[str]:
    """The nrb_* functions ``body`` calls, directly or through one call of the module
    (``FNeuralRenderBridgeModule::Get().X(``) or of the glue (``nrbglue::X(``), followed transitively."""
    module = strip_comments((MODULE / "Private" / "NeuralRenderBridgeModule.cpp").read_text())
    seen: set[str] = set()
    calls: set[str] = set()
    todo = [body]
    while todo:
        text = todo.pop()
        calls |= set(re.findall(r"\b(nrb_\w+)\s*\(", text))
        for fn in re.findall(r"FNeuralRenderBridgeModule::Get\(\)\.(\w+)\s*\(", text):
            if f"module.{fn}" not in seen:
                seen.add(f"module.{fn}")
                todo.append(function_body(module, fn))
        for fn in re.findall(r"\bnrbglue::(\w+)\s*\(", text):
            if f"glue.{fn}" not in seen:
                seen.add(f"glue.{fn}")
                todo.append(glue_body(fn))
    return calls


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
    assert VERBS[verb] in c_calls_reached(function_body(impl, verb)), f"{verb} does not call {VERBS[verb]}"


def test_every_nrb_call_in_the_plugin_exists_in_the_c_abi() -> None:
    known = c_abi_functions()
    assert len(known) > 15
    calls = set()
    for path in MODULE.rglob("*.cpp"):
        calls |= set(re.findall(r"\b(nrb_\w+)\s*\(", for_this_nrb_h(strip_comments(path.read_text()))))
    assert calls, "the plugin never calls libnrb"
    assert calls <= known, f"not in nrb.h: {sorted(calls - known)}"


def test_console_variables_and_settings_page_are_bound_to_each_other() -> None:
    cvars = (MODULE / "Private" / "NeuralRenderingCVars.cpp").read_text()
    names = set(re.findall(r'TEXT\("(r\.NeuralRendering\.\w+)"\)', cvars))
    assert names >= {"r.NeuralRendering.Enable", "r.NeuralRendering.Endpoint", "r.NeuralRendering.DeadlineMs",
                     *CURVE_CVARS}
    settings = (MODULE / "Public" / "NeuralRenderingSettings.h").read_text()
    assert re.search(rf"class\s+\w+\s+UNeuralRenderingSettings\s*:\s*public\s+{SETTINGS_BASE}\b", settings)
    bound = set()
    for header in settings_headers():
        bound |= set(re.findall(r'ConsoleVariable\s*=\s*"(r\.NeuralRendering\.\w+)"', header.read_text()))
    assert bound and bound <= names, f"settings bound to unknown cvars: {sorted(bound - names)}"
    assert set(CURVE_CVARS) <= bound, f"CurveZMQ keys missing from the settings pages: {set(CURVE_CVARS) - bound}"


#: UCLASS Config name -> the global holding that ini file's name.
INI_GLOBALS = {"Engine": "GEngineIni", "GameUserSettings": "GGameUserSettingsIni"}


def test_saved_settings_reach_their_console_variables_in_every_build() -> None:
    """The editor saves a property bound to a console variable under the console variable's name, and only the
    editor knows that binding: a packaged game that loaded the properties by name found nothing and pushed the C++
    defaults. So each page is a UDeveloperSettingsBackedByCVars whose class default object applies its ini section
    (keys = console variable names) to the console variables before the base class imports them, in every build
    (not only WITH_EDITOR), as Epic's NNEDenoiser and PCG settings do; nothing pushes property values into them."""
    module = strip_comments((MODULE / "Private" / "NeuralRenderBridgeModule.cpp").read_text())
    startup = function_body(module, "OnPostEngineInit")
    for header in settings_headers():
        text = header.read_text()
        cls = re.search(rf"class\s+\w+\s+(U\w+)\s*:\s*public\s+({SETTINGS_BASE})\b", text)
        assert cls and cls.group(2) == "UDeveloperSettingsBackedByCVars", header.name
        name = cls.group(1)
        config = re.search(r"UCLASS\(\s*Config\s*=\s*(\w+)", text).group(1)
        # the class default objects exist before the client reads the console variables
        assert re.search(rf"GetDefault<{name}>\(\);", startup), name
        impl = strip_comments((MODULE / "Private" / header.name.replace(".h", ".cpp")).read_text())
        init = function_body(impl, "PostInitProperties")
        apply = re.search(r"if \(IsTemplate\(\)\)\s*\{\s*UE::ConfigUtilities::ApplyCVarSettingsFromIni\(\s*"
                          r'TEXT\("([^"]+)"\),\s*\*(\w+),\s*ECVF_SetByProjectSetting\);\s*\}', init)
        assert apply, f"{name}::PostInitProperties does not apply its ini section to the console variables"
        assert apply.group(1) == f"/Script/NeuralRenderBridge.{name[1:]}", apply.group(1)
        assert apply.group(2) == INI_GLOBALS[config], f"{name} (Config = {config}) reads {apply.group(2)}"
        assert init.index("ApplyCVarSettingsFromIni") < init.index("Super::PostInitProperties();")
        assert "WITH_EDITOR" not in init  # a packaged game needs it most
        assert not re.search(r"CVarNeuralRendering\w+->Set\(", impl), f"{name} pushes property values"
    assert "ApplyToConsoleVariables" not in module


def test_every_curve_key_of_the_client_config_is_passed_to_libnrb() -> None:
    """nrb.h field -> console variable (or environment variable) -> the same nrb_client_config field, in order: the
    module reads the keys into nrbglue::FClientSettings::CurveKeys in the order of its sources, and the glue puts
    CurveKeys[i] into the i-th curve_* field (test_plugin_unreal_glue.py checks the built config at run time)."""
    fields = config_curve_fields()
    assert fields == [f"curve_{k}" for k in ("server_public_key", "client_public_key", "client_secret_key")], \
        "nrb_client_config's CurveZMQ fields changed: update both plugins"
    module = strip_comments((MODULE / "Private" / "NeuralRenderBridgeModule.cpp").read_text())
    sources = re.findall(r'\{&(CVarNeuralRendering\w+), TEXT\("(r\.NeuralRendering\.\w+)"\),\s*TEXT\("(NRB_\w+)"\)\}',
                         module)
    assert sources == [(f"CVarNeuralRendering{camel(f)}", f"r.NeuralRendering.{camel(f)}", f"NRB_{f.upper()}")
                       for f in fields]
    glue_sources = re.findall(r'\{"(r\.NeuralRendering\.\w+)", "(NRB_\w+)"\}', module)
    assert glue_sources == [(cvar, env) for _, cvar, env in sources]
    create = function_body(module, "RecreateClient")
    assert "ReadCurveKeys(CurveKeys);" in create
    assert re.search(r"Settings\.CurveKeys\[Index\] = ToUtf8\(CurveKeys\[Index\]\);", create)
    glue = strip_comments((MODULE / "Private" / "NrbGlue.cpp").read_text())
    passed = dict(re.findall(r"\bConfig\.(curve_\w+) = Held\.CurveKeys\[(\d)\]\.c_str\(\);", glue))
    assert set(passed) == set(fields), f"not passed to nrb_client_config: {set(fields) - set(passed)}"
    for i, field in enumerate(fields):
        assert passed[field] == str(i), f"{field} gets another key"
    # keys that cannot be used leave no client rather than a plain connection
    problem = create.index("nrbglue::CurveKeysProblem(")
    assert problem < create.index("nrb_client_create(")
    assert "return;" in create[problem:create.index("nrbglue::FClientConfig Config")]
    # changing a key (settings page, console, ini) reconnects
    assert "ReadCurveKeys(" in function_body(module, "OnCVarsChanged")


def test_client_secret_key_is_saved_per_user_never_in_the_project_config() -> None:
    owner = [h for h in settings_headers() if "r.NeuralRendering.CurveClientSecretKey" in h.read_text()]
    assert len(owner) == 1
    text = owner[0].read_text()
    uclass = re.search(r"UCLASS\(([^)]*)\)", text).group(1)
    # GameUserSettings: Saved/Config/<Platform>/GameUserSettings.ini of this user, read by packaged games too; a
    # DefaultConfig (or ProjectUserConfig) class would save it under the project's Config/ folder
    assert re.search(r"\bConfig\s*=\s*GameUserSettings\b", uclass, re.I), uclass
    assert not re.search(r"\b(DefaultConfig|ProjectUserConfig)\b", uclass, re.I), uclass
    secret = re.search(r'UPROPERTY\(([^;]*?ConsoleVariable\s*=\s*"r\.NeuralRendering\.CurveClientSecretKey"[^;]*?)\)\s*'
                       r"FString\s+\w+;", text, re.S)
    assert secret and "PasswordField = true" in secret.group(1)
    # the key pair stays together: the shared page does not take the client's keys
    shared = (MODULE / "Public" / "NeuralRenderingSettings.h").read_text()
    assert "DefaultConfig" in re.search(r"UCLASS\(([^)]*)\)", shared).group(1)
    assert "CurveClient" not in shared
    readme = (PLUGIN / "README.md").read_text()
    assert "GameUserSettings.ini" in readme
    for cvar in CURVE_CVARS:
        assert cvar in readme
    for field in config_curve_fields():
        assert f"NRB_{field.upper()}" in readme


def test_scene_view_extension_subclasses_the_engine_base_and_replaces_the_image() -> None:
    header = (MODULE / "Private" / "NeuralSceneViewExtension.h").read_text()
    assert re.search(r"class\s+FNeuralSceneViewExtension\s*:\s*public\s+FSceneViewExtensionBase", header)
    impl = strip_comments((MODULE / "Private" / "NeuralSceneViewExtension.cpp").read_text())
    reached = c_calls_reached(impl)
    for call in ("nrb_frame_begin", "nrb_frame_tag_buffer", "nrb_frame_set_camera", "nrb_frame_submit",
                 "nrb_acquire_result", "nrb_release_result"):
        assert call in reached, f"the view extension never calls {call}"
