"""Godot addon: what can be checked without Godot. GDScript parses and lints (gdtoolkit); plugin.cfg, the
.gdextension and project.godot are well formed and agree with each other, with the C++ registration of the
GDExtension and with libnrb's C ABI."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GODOT = ROOT / "engine_plugins" / "godot"
ADDON = GODOT / "addons" / "neural_render_bridge"
SRC = GODOT / "src"
EXAMPLE = GODOT / "example"
NRB_H = ROOT / "cpp" / "include" / "nrb" / "nrb.h"
RES = "res://addons/neural_render_bridge/"

GD_FILES = sorted(ADDON.glob("*.gd")) + sorted(EXAMPLE.glob("*.gd"))

SETTING = "rendering/neural_rendering/"
BASIC_SETTINGS = ("enabled", "intensity", "endpoint", "frames_in_flight", "deadline_ms")
#: nrb_client_config's CurveZMQ fields; the project setting of each has the same name.
CURVE_FIELDS = ("curve_server_public_key", "curve_client_public_key", "curve_client_secret_key")


def godot_ini(path: Path) -> configparser.ConfigParser:
    """Godot's .cfg / .godot / .gdextension files: INI sections, `key=value` with Godot-syntax values."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith(";")]
    text = "[__top__]\n" + "\n".join(lines)  # project.godot has keys before its first section
    cp = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    cp.optionxform = str  # keys are case-sensitive
    cp.read_string(text, source=str(path))
    return cp


def unquote(v: str) -> str:
    v = v.strip()
    assert v.startswith('"') and v.endswith('"'), f"{v!r} is not a quoted string"
    return v[1:-1]


def res_path(p: str, project: Path) -> Path:
    assert p.startswith("res://"), p
    return project / p[len("res://"):]


def c_functions(header: Path) -> set[str]:
    return set(re.findall(r"NRB_API\s+[\w\s\*]+?\b(nrb_\w+)\s*\(", header.read_text()))


def registered_classes() -> set[str]:
    return set(re.findall(r"GDREGISTER_CLASS\((\w+)\)", (SRC / "register_types.cpp").read_text()))


def bound_methods() -> set[str]:
    text = "".join(p.read_text() for p in SRC.glob("*.cpp"))
    return set(re.findall(r'D_METHOD\("(\w+)"', text))


def config_curve_fields() -> list[str]:
    """The curve_* fields of nrb_client_config, in declaration order."""
    struct = re.search(r"typedef struct nrb_client_config \{(.*?)\} nrb_client_config;", NRB_H.read_text(), re.S)
    return re.findall(r"\b(curve_\w+);", struct.group(1))


def cpp_body(code: str, name: str) -> str:
    """The brace-balanced body of ``NRBClient::name(...) { ... }``."""
    m = re.search(rf"NRBClient::{name}\([^)]*\)[^{{;]*\{{", code)
    assert m, f"NRBClient::{name} is not defined"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        i += 1
    return code[m.end():i]


# -------------------------------------------------------------------------------------------------- GDScript


@pytest.mark.parametrize("path", GD_FILES, ids=lambda p: p.name)
def test_gdscript_parses(path):
    from gdtoolkit.parser import parser

    parser.parse(path.read_text())  # raises on a syntax error


def test_gdscript_lints_clean():
    proc = subprocess.run([str(Path(sys.executable).with_name("gdlint")), *map(str, GD_FILES)], cwd=GODOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gdscript_parser_rejects_broken_code():
    from gdtoolkit.parser import parser

    with pytest.raises(Exception):  # noqa: B017 - lark raises several exception types
        parser.parse("func broken(:\n\tpass\n")


# ------------------------------------------------------------------------------------------------- plugin.cfg


def test_plugin_cfg_is_complete_and_points_at_an_editor_plugin():
    cfg = godot_ini(ADDON / "plugin.cfg")
    p = cfg["plugin"]
    for key in ("name", "description", "author", "version", "script"):
        assert unquote(p[key]), key
    script = ADDON / unquote(p["script"])
    assert script.is_file()
    text = script.read_text()
    assert re.search(r"^extends EditorPlugin", text, re.M)
    assert "@tool" in text
    # it registers the autoload the README and the example use
    autoload = re.search(r'AUTOLOAD_NAME := "(\w+)"', text).group(1)
    path = re.search(r'AUTOLOAD_PATH := "([^"]+)"', text).group(1)
    assert autoload == "NeuralRendering"
    assert res_path(path, GODOT).is_file() or (ADDON / path.split(RES)[-1]).is_file()
    assert "add_autoload_singleton(AUTOLOAD_NAME, AUTOLOAD_PATH)" in text


def test_project_settings_names_agree():
    settings = (ADDON / "settings.gd").read_text()
    names = dict(re.findall(r'const (\w+) := "(rendering/neural_rendering/\w+)"', settings))
    assert set(names.values()) == {SETTING + k for k in BASIC_SETTINGS + CURVE_FIELDS}
    # every setting is registered with a default, and the autoload reads them all
    for const in names:
        assert re.search(rf"\[{const}, TYPE_\w+,", settings), const
    autoload = (ADDON / "neural_rendering.gd").read_text()
    for const in names:
        assert f"Settings.{const}" in autoload, const
    # the example sets the basic ones; the keys are empty by default and Godot does not save empty defaults
    project = godot_ini(EXAMPLE / "project.godot")
    for key in BASIC_SETTINGS:
        assert f"neural_rendering/{key}" in project["rendering"], key


def test_every_curve_key_of_the_client_config_comes_from_a_project_setting():
    """nrb.h field -> project setting (or environment variable) -> set_curve_keys argument -> NRBClient member ->
    the same nrb_client_config field, in configure: a key setting that is missing or not passed on fails here."""
    fields = config_curve_fields()
    assert tuple(fields) == CURVE_FIELDS, "nrb_client_config's CurveZMQ fields changed: update both plugins"
    settings = (ADDON / "settings.gd").read_text()
    consts = {name: const for const, name in re.findall(r'const (\w+) := "rendering/neural_rendering/(\w+)"',
                                                         settings)}
    env = dict(re.findall(r'(\w+): "(NRB_\w+)"', re.search(r"const CURVE_ENVIRONMENT := \{(.*?)\}", settings,
                                                         re.S).group(1)))
    for field in fields:
        const = consts[field]
        assert re.search(rf'\[{const}, TYPE_STRING, "",', settings), f"{const}: a string, empty by default"
        assert env[const] == f"NRB_{field.upper()}", const
    # the secret is typed into a password field
    assert re.search(r"\[CURVE_CLIENT_SECRET_KEY, TYPE_STRING, \"\", PROPERTY_HINT_PASSWORD,", settings)
    # the autoload passes the keys in nrb.h's order, before it configures the client, and gives up when refused
    autoload = (ADDON / "neural_rendering.gd").read_text()
    call = re.search(r"_client\.set_curve_keys\((.*?)\n\t\)", autoload, re.S)
    assert call, "the autoload never calls set_curve_keys"
    args = re.findall(r"Settings\.get_curve_key\(Settings\.(\w+)\)", call.group(1))
    assert args == [consts[f] for f in fields]
    assert call.start() < autoload.index("_client.configure(")
    # the C++ binds the method with the keys in the same order, keeps them, and hands them to libnrb
    cpp = (SRC / "nrb_client.cpp").read_text()
    bound = re.search(r'D_METHOD\("set_curve_keys", ([^)]*)\)', cpp).group(1)
    assert re.findall(r'"(\w+)"', bound) == [f.removeprefix("curve_") for f in fields]
    keep, configure = cpp_body(cpp, "set_curve_keys"), cpp_body(cpp, "configure")
    for field in fields:
        assert re.search(rf"\b{field}_ = {field.removeprefix('curve_')};", keep), field
        assert re.search(rf"\bcfg\.{field} = \w+\.get_data\(\);", configure), f"configure never sets {field}"
    # a refused set of keys also stops configure: never a plain connection when keys were meant
    assert "curve_keys_problem(" in keep and "curve_keys_problem(" in configure


def test_client_secret_key_stays_out_of_the_project():
    project_text = (EXAMPLE / "project.godot").read_text()
    project = godot_ini(EXAMPLE / "project.godot")
    assert "neural_rendering/curve_client_secret_key" not in project["rendering"]
    # nor any other value that looks like a CurveZMQ key (40 characters of Z85 text)
    assert not re.search(r'"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}"', project_text)
    # override.cfg, where the README puts it while developing, is not committed
    ignored = (EXAMPLE / ".gitignore").read_text().split()
    assert "override.cfg" in ignored
    # the editor warns when someone types it into Project Settings (which saves project.godot)
    plugin = (ADDON / "plugin.gd").read_text()
    assert "ProjectSettings.settings_changed.connect(_warn_if_secret_in_project)" in plugin
    assert re.search(r"func _warn_if_secret_in_project\(\).*?Settings\.CURVE_CLIENT_SECRET_KEY.*?push_warning\(",
                     plugin, re.S)
    # and the README says where it goes instead, with the environment variables the autoload reads
    readme = (ADDON / "README.md").read_text()
    for field in CURVE_FIELDS:
        assert SETTING + field in readme and f"NRB_{field.upper()}" in readme, field
    assert "override.cfg" in readme


# ------------------------------------------------------------------------------------------------ .gdextension


def test_gdextension_entry_symbol_and_libraries():
    ext = godot_ini(ADDON / "neural_render_bridge.gdextension")
    conf = ext["configuration"]
    symbol = unquote(conf["entry_symbol"])
    reg = (SRC / "register_types.cpp").read_text()
    assert re.search(rf"GDExtensionBool GDE_EXPORT {symbol}\(", reg), f"{symbol} not defined in register_types.cpp"
    major, minor = (int(x) for x in unquote(conf["compatibility_minimum"]).split(".")[:2])
    assert (major, minor) >= (4, 3)
    cmake = (GODOT / "CMakeLists.txt").read_text()
    m = re.search(r'OUTPUT_NAME "(\w+)\.\$\{NRB_GODOT_PLATFORM\}\.\$\{NRB_GODOT_TARGET\}\.\$\{NRB_GODOT_ARCH\}"', cmake)
    assert m, "CMake OUTPUT_NAME pattern not found"
    base = m.group(1)
    assert re.search(r'LIBRARY_OUTPUT_DIRECTORY "\$\{NRB_GODOT_ADDON_DIR\}/bin"', cmake)
    libs = ext["libraries"]
    assert {k.split(".")[0] for k in libs} >= {"linux", "windows", "macos"}
    for key, value in libs.items():
        platform, build = key.split(".")[:2]
        path = unquote(value)
        assert path.startswith(RES + "bin/"), path
        target = {"debug": "template_debug", "release": "template_release"}[build]
        prefix = "" if platform == "windows" else "lib"
        suffix = {"linux": "so", "windows": "dll", "macos": "dylib"}[platform]
        pattern = rf"{prefix}{base}\.{platform}\.{target}\.(x86_64|arm64|universal)\.{suffix}"
        assert re.fullmatch(pattern, path.rsplit("/", 1)[1]), (key, path)
    deps = ext["dependencies"]
    assert any("libnrb.so" in v for v in deps.values())
    # the library file CMake copies next to the extension is the one listed (SONAME libnrb.so.<major>)
    assert "TARGET_SONAME_FILE:nrb" in cmake


def test_classes_and_methods_used_by_scripts_are_registered_in_cpp():
    classes = registered_classes()
    assert "NRBClient" in classes
    used_classes = set()
    for path in ADDON.glob("*.gd"):
        text = path.read_text()
        used_classes |= set(re.findall(r'CLIENT_CLASS := "(\w+)"', text))
        used_classes |= set(re.findall(r"\b(NRB\w+)\.new\(\)", text))
    assert used_classes and used_classes <= classes, used_classes - classes
    methods = bound_methods()
    calls = set()
    for path in ADDON.glob("*.gd"):
        calls |= set(re.findall(r"\b_?client\.(\w+)\(", path.read_text()))
    assert {"configure", "read_back_and_submit", "acquire_result", "set_style", "fire_event"} <= calls
    missing = calls - methods
    assert not missing, f"scripts call NRBClient methods the C++ does not bind: {missing}"
    # every bound method is implemented in the class
    header = (SRC / "nrb_client.h").read_text()
    for name in methods:
        assert re.search(rf"\b{name}\(", header), name


def test_gdextension_calls_only_functions_that_exist_in_nrb_h():
    known = c_functions(NRB_H)
    assert {"nrb_client_create", "nrb_frame_submit", "nrb_acquire_result", "nrb_set_style"} <= known
    used = set()
    for path in SRC.glob("*.cpp"):
        text = re.sub(r"GDE_EXPORT \w+\(", "", path.read_text())  # the entry symbol is ours, not libnrb's
        used |= set(re.findall(r"\b(nrb_[a-z_]+)\s*\(", text))
    assert used, "the GDExtension calls no libnrb function"
    assert not (used - known), f"calls missing from nrb.h: {used - known}"
    # the formats the autoload announces are wire formats libnrb knows
    block = re.search(r"const BUFFERS := \{(.*?)\}", (ADDON / "neural_rendering.gd").read_text(), re.S).group(1)
    formats = re.findall(r'"\w+": "(\w+)"', block)
    assert len(formats) >= 5
    header = NRB_H.read_text()
    for f in formats:
        assert f"NRB_FORMAT_{f.upper()}" in header, f


# --------------------------------------------------------------------------------------------- example project


def test_example_project_is_consistent():
    project = godot_ini(EXAMPLE / "project.godot")
    assert project["__top__"]["config_version"] == "5"
    main_scene = unquote(project["application"]["run/main_scene"])
    assert res_path(main_scene, EXAMPLE).is_file()
    autoload = project["autoload"]["NeuralRendering"]
    assert res_path(unquote(autoload).lstrip("*"), EXAMPLE).is_file()
    plugins = re.findall(r'"(res://[^"]+)"', project["editor_plugins"]["enabled"])
    assert plugins and all(res_path(p, EXAMPLE).is_file() for p in plugins)
    scene = (EXAMPLE / "main.tscn").read_text()
    for ext in re.findall(r'path="(res://[^"]+)"', scene):
        assert res_path(ext, EXAMPLE).is_file(), ext
    # load_steps = resources + 1
    steps = int(re.search(r"load_steps=(\d+)", scene).group(1))
    assert steps == scene.count("[ext_resource") + scene.count("[sub_resource") + 1
    # node paths the script uses exist in the scene
    script = (EXAMPLE / "main.gd").read_text()
    nodes = {m for m in re.findall(r'\[node name="(\w+)"', scene)}
    for path in re.findall(r"\$([\w/]+)", script):
        assert path.split("/")[-1] in nodes, path


def test_shaders_declare_the_bindings_the_effect_uses():
    effect = (ADDON / "neural_compositor_effect.gd").read_text()
    gather = (ADDON / "shaders" / "nrb_gather.glsl").read_text()
    assert gather.startswith("#[compute]")
    bindings = {int(b) for b in re.findall(r"binding = (\d+)", gather)}
    used = {int(b) for b in re.findall(r"_(?:sampled|image)\((\d+),", effect)}
    used |= {int(b) for b in re.findall(r'RenderingDevice\.DATA_FORMAT_\w+, (\d+)\]', effect)}
    assert used <= bindings and set(range(11)) <= bindings
    composite = (ADDON / "shaders" / "nrb_composite.glsl").read_text()
    assert {int(b) for b in re.findall(r"binding = (\d+)", composite)} == {0, 1}


# ----------------------------------------------------------------------------- defects found in a real engine


def nrb_h_buffer_names() -> dict[str, str]:
    """NRB_BUFFER_<KEY> -> wire name, from nrb.h: what NRBClient.get_buffer_names() gives GDScript."""
    return dict(re.findall(r'^#define NRB_BUFFER_([A-Z0-9_]+) "([a-z0-9_]+)"', NRB_H.read_text(), re.M))


def autoload_buffers() -> dict[str, str]:
    """The buffers the autoload offers (wire name -> format): its BUFFERS are keyed by nrb.h constant."""
    block = re.search(r"const BUFFERS := \{(.*?)\}", (ADDON / "neural_rendering.gd").read_text(), re.S).group(1)
    names = nrb_h_buffer_names()
    return {names[key]: fmt for key, fmt in re.findall(r'"(\w+)": "(\w+)"', block)}


@pytest.mark.parametrize("renderer", ["neural", "deferred", "passthrough"])
def test_every_shipped_renderer_accepts_the_buffers_the_addon_offers(renderer):
    """The server refused the addon's session when it offered no albedo: every shipped renderer needs it."""
    from bridge.renderer import load_renderer

    offered = autoload_buffers()
    assert load_renderer(renderer).check_offer(offered) is None
    # and the compositor effect really sends each offered G-buffer (the constants come from the autoload)
    effect = (ADDON / "neural_compositor_effect.gd").read_text()
    names = nrb_h_buffer_names()
    outputs = {names[key]: fmt for key, fmt in
               re.findall(r'\["(\w+)", "(\w+)", RenderingDevice\.DATA_FORMAT_\w+, \d+\]', effect)}
    assert outputs == {k: v for k, v in offered.items() if not k.startswith("x_")}


def test_render_callback_never_asks_a_viewport_for_its_texture():
    """get_texture() from the render thread hung the game on its first frame (single-threaded renderer) or was
    refused (separate render thread); the autoload looks the passes' textures up on the main thread."""
    effect = (ADDON / "neural_compositor_effect.gd").read_text()
    assert not re.search(r"\.get_texture\(\)", effect) and "rd_texture(" not in effect and "id_pass" not in effect
    autoload = (ADDON / "neural_rendering.gd").read_text()
    process = re.search(r"func _process\(.*?\n(?=func )", autoload, re.S).group(0)
    assert "_effect.ids_texture = _id_pass.rd_texture()" in process
    assert "_effect.albedo_texture = _albedo_pass.rd_texture()" in process


def test_read_back_callbacks_are_bound_to_the_cpp_client_not_to_a_script():
    """Script lambdas given to texture_get_data_async kept the effect alive past GDScript's shutdown: SIGSEGV on
    quit. The read-back is the GDExtension's, its callbacks callable_mp on the C++ object."""
    effect = (ADDON / "neural_compositor_effect.gd").read_text()
    code = "\n".join(line for line in effect.splitlines() if not line.lstrip().startswith("#"))
    assert "texture_get_data" not in code, "the script reads textures back itself"
    assert not re.search(r"func\s*\(", code), "the effect still creates lambdas"
    cpp = (SRC / "nrb_client.cpp").read_text()
    assert "callable_mp(this, &NRBClient::on_read_back)" in cpp
    assert "pending_.clear();" in cpp_body(cpp, "close")


def test_editor_plugin_does_not_rewrite_project_godot_on_every_start():
    plugin = (ADDON / "plugin.gd").read_text()
    enter = re.search(r"func _enter_tree\(\).*?\n(?=func )", plugin, re.S).group(0)
    assert "ProjectSettings.save()" not in enter


def test_overlay_says_off_when_disabled_and_shows_a_refusal():
    autoload = (ADDON / "neural_rendering.gd").read_text()
    assert re.search(r'"OFF \(engine image\)" if not enabled', autoload)
    assert '"refused"' in autoload and "refusal_message" in autoload
    cpp = (SRC / "nrb_client.cpp").read_text()
    assert 'case NRB_STATE_REFUSED: d["state"] = "refused"' in cpp


def test_id_pass_builds_a_typed_array_godot_accepts():
    """`var meshes: Array[Node] = [node] if ... else []` is an untyped Array: Godot refused it at run time."""
    text = (ADDON / "id_pass.gd").read_text()
    assert not re.search(r"Array\[Node\] = \[.*\] if ", text)


def test_gdscript_names_buffers_through_nrb_h_constants():
    """The addon keys its buffers by nrb.h constant (NRB_BUFFER_<KEY>) and takes the wire names from the GDExtension
    (NRBClient.get_buffer_names(), which lists libnrb's nrb_buffer_name table): no GDScript spells a wire name. (Godot's
    own "normal_roughness" texture, asked of RenderSceneBuffersRD.get_texture, is Godot's name, not the protocol's;
    "position" is also a camera key of protocol section 8, which is how the effect uses it.)"""
    names = nrb_h_buffer_names()
    wire = set(names.values()) - {"position"}
    for path in GD_FILES:
        code = re.sub(r"#[^\n]*", "", path.read_text())
        code = re.sub(r"get_texture\([^)]*\)", "", code)
        assert not (set(re.findall(r'"([a-z0-9_]+)"', code)) & wire), path.name
    block = re.search(r"const BUFFERS := \{(.*?)\}", (ADDON / "neural_rendering.gd").read_text(), re.S).group(1)
    assert set(re.findall(r'"(\w+)": "\w+"', block)) <= set(names)
    cpp = (SRC / "nrb_client.cpp").read_text()
    assert 'D_METHOD("get_buffer_names")' in cpp and "nrb_buffer_name(" in cpp


def test_the_camera_says_how_hudless_color_was_made():
    """hudless_color is Godot's HDR colour times the environment's exposure, clamped (nrb_gather.glsl), taken before
    Godot's tonemapper: the camera sends that exposure as pre_exposure and the curve as tone_mapping "clamp", and
    the GDExtension turns the name into nrb.h's NRB_TONE_MAPPING_* value."""
    effect = (ADDON / "neural_compositor_effect.gd").read_text()
    assert re.search(r'const HUDLESS_TONE_MAPPING := "clamp"', effect)
    assert '"pre_exposure": maxf(tonemap_exposure' in effect and '"tone_mapping": HUDLESS_TONE_MAPPING' in effect
    assert "params.exposure" in (ADDON / "shaders" / "nrb_gather.glsl").read_text()  # the gather multiplies by it
    assert "_effect.tonemap_exposure = _tonemap_exposure()" in (ADDON / "neural_rendering.gd").read_text()
    cpp = (GODOT / "src" / "nrb_client.cpp").read_text()
    assert 'd.has("tone_mapping")' in cpp and "nrb_tone_mapping_name" in cpp
    assert "NRB_TONE_MAPPING_CLAMP" in (ROOT / "cpp" / "include" / "nrb" / "nrb.h").read_text()
