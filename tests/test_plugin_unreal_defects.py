"""The defects issue #13 found in the Unreal plugin stay fixed. Each test reads the plugin's sources for the shape of
its fix (no engine here); tools/check_unreal_api.py verifies the engine symbols themselves against an engine tree
(test_unreal_api_checker.py), and test_plugin_unreal_glue.py runs the engine-independent half."""

from __future__ import annotations

import re
from pathlib import Path

from test_plugin_unreal import function_body, strip_comments

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "engine_plugins" / "unreal" / "NeuralRenderBridge"
MODULE = PLUGIN / "Source" / "NeuralRenderBridge"
PRIVATE = MODULE / "Private"
THIRD_PARTY = PLUGIN / "Source" / "ThirdParty" / "NrbLibrary" / "NrbLibrary.Build.cs"
README = PLUGIN / "README.md"


def code(name: str) -> str:
    path = PRIVATE / name if (PRIVATE / name).exists() else MODULE / "Public" / name
    return strip_comments(path.read_text())


def branches(text: str, condition: str) -> tuple[str, str]:
    """The ``#if condition`` and ``#else`` branches of the first block guarded by ``condition``."""
    m = re.search(rf"#if {re.escape(condition)}\n(.*?)#else\n(.*?)#endif", text, re.S)
    assert m, f"no #if {condition} ... #else ... #endif"
    return m.group(1), m.group(2)


def test_1_the_composite_subscribes_with_the_5_5_signature() -> None:
    """5.5 calls only SubscribeToPostProcessingPass(Pass, const FSceneView&, Callbacks, bEnabled); the old
    three-argument one is deprecated there and never called."""
    older, newer = branches(code("NeuralSceneViewExtension.h"), "UE_VERSION_OLDER_THAN(5, 5, 0)")
    assert re.search(r"SubscribeToPostProcessingPass\(EPostProcessingPass Pass, FAfterPassCallbackDelegateArray& "
                     r"InOutPassCallbacks,\s*bool bIsPassEnabled\) override;", older)
    assert re.search(r"SubscribeToPostProcessingPass\(EPostProcessingPass Pass, const FSceneView& InView,\s*"
                     r"FAfterPassCallbackDelegateArray& InOutPassCallbacks, bool bIsPassEnabled\) override;", newer)
    older_cpp, newer_cpp = branches(code("NeuralSceneViewExtension.cpp"), "UE_VERSION_OLDER_THAN(5, 5, 0)")
    for body in (older_cpp, newer_cpp):
        assert "EPostProcessingPass::Tonemap" in body and "PostTonemap_RenderThread" in body


def test_2_every_shader_function_has_its_include() -> None:
    """LinearToSrgb lives in GammaCorrectionCommon.ush, which Common.ush does not include."""
    for usf in (PLUGIN / "Shaders" / "Private").glob("*.usf"):
        text = strip_comments(usf.read_text())
        if "LinearToSrgb(" in text:
            assert '#include "/Engine/Private/GammaCorrectionCommon.ush"' in text, usf.name


def test_3_settings_travel_through_the_console_variables() -> None:
    """test_plugin_unreal.py::test_saved_settings_reach_their_console_variables_in_every_build checks the classes;
    here: the README says that the ini keys are the console variables' names."""
    readme = README.read_text()
    assert "UDeveloperSettingsBackedByCVars" in readme and "ApplyCVarSettingsFromIni" in readme
    assert re.search(r"r\.NeuralRendering\.CurveClientPublicKey=", readme)


def test_4_nrb_dll_is_loaded_from_the_plugin_before_the_first_call() -> None:
    """nrb.dll is delay-loaded; the module loads it from where Build.cs stages it, as Epic's ThirdPartyLibrary
    template does, and does nothing with libnrb when that fails."""
    build = THIRD_PARTY.read_text()
    assert 'PublicDelayLoadDLLs.Add("nrb.dll")' in build
    staged = re.search(r'string Binaries = "\$\(PluginDir\)/(Binaries/ThirdParty/NrbLibrary/Win64)"', build)
    assert staged
    module = code("NeuralRenderBridgeModule.cpp")
    load = function_body(module, "LoadLibnrb")
    assert f'TEXT("{staged.group(1)}")' in load
    assert re.search(r"PushDllDirectory\(\*Dir\);\s*LibnrbHandle = FPlatformProcess::GetDllHandle\(\*Path\);\s*"
                     r"FPlatformProcess::PopDllDirectory\(\*Dir\);", load)
    startup = function_body(module, "StartupModule")
    assert "bLibnrbLoaded = LoadLibnrb();" in startup
    create = function_body(module, "RecreateClient")
    assert create.index("if (!bLibnrbLoaded)") < create.index("nrb_client_create(")
    assert "FreeDllHandle(LibnrbHandle)" in function_body(module, "ShutdownModule")


def test_5_the_pack_pass_uses_the_render_rect_and_its_offset() -> None:
    ext = code("NeuralSceneViewExtension.cpp")
    pack = function_body(ext, "PostRenderBasePassDeferred_RenderThread")
    assert "UE::FXRenderingUtils::GetRawViewRectUnsafe(InView)" in pack
    assert "UnscaledViewRect" not in pack  # the output size, after upscaling: only the camera's output size
    assert "Params->ViewMin = Rect.Min;" in pack
    usf = strip_comments((PLUGIN / "Shaders" / "Private" / "NrbPack.usf").read_text())
    assert "int2 ScenePixel = int2(Pixel) + ViewMin;" in usf
    for texture in ("SceneDepthTexture", "SceneColorTexture", "GBufferVelocityTexture", "CustomStencilTexture"):
        assert re.search(rf"{texture}\.Load\(int3\(ScenePixel, 0\)\)", usf), texture
    camera = function_body(ext, "FillCamera")
    assert "View.UnscaledViewRect.Width()" in camera and "RenderSize.X" in camera


def test_6_scene_captures_and_other_view_families_are_filtered() -> None:
    ext = code("NeuralSceneViewExtension.cpp")
    active = function_body(ext, "IsActiveThisFrame_Internal")
    assert "Context.Viewport == GEngine->GameViewport->Viewport" in active
    view = function_body(ext, "IsNeuralView")
    for flag in ("!View.bIsSceneCapture", "!View.bIsReflectionCapture", "!View.bIsPlanarReflection",
                 "EngineShowFlags.PostProcessing", "Family->Views[0] == &View"):
        assert flag in view, flag
    for fn in ("PostRenderBasePassDeferred_RenderThread", "PostTonemap_RenderThread"):
        assert "IsNeuralView(" in function_body(ext, fn), fn


def test_7_the_descriptor_names_no_engine_version() -> None:
    assert '"EngineVersion"' not in (PLUGIN / "NeuralRenderBridge.uplugin").read_text()
    assert re.search(r"Unreal Engine 5\.3, 5\.4 and 5\.5", README.read_text())


def test_8_the_result_format_decides_the_texture_and_the_encoding() -> None:
    """No sRGB view on the neural frame (after Tonemap the image is display-encoded: an sRGB view decodes and
    darkens it); a linear result is encoded by the composite shader."""
    ext = code("NeuralSceneViewExtension.cpp")
    post = function_body(ext, "PostTonemap_RenderThread")
    assert "nrbglue::PlanResult(" in post and "ETextureCreateFlags::SRGB" not in ext
    assert "Params->EncodeSrgb = Plan.bEncodeSrgb ? 1u : 0u;" in post
    composite = strip_comments((PLUGIN / "Shaders" / "Private" / "NrbComposite.usf").read_text())
    assert re.search(r"if \(EncodeSrgb != 0\)\s*\{\s*Color\.rgb = LinearToSrgb", composite)


def test_9_every_shared_library_libnrb_loads_is_staged() -> None:
    build = THIRD_PARTY.read_text()
    for platform, names in {"Win64": ("nrb.dll", "libzmq-mt-4_3_5.dll", "lz4.dll", "zstd.dll"),
                            "Linux": ("libnrb.so.0", "libzmq.so.5", "liblz4.so.1", "libzstd.so.1"),
                            "Mac": ("libnrb.0.dylib", "libzmq.5.dylib", "liblz4.1.dylib", "libzstd.1.dylib")}.items():
        block = build[build.index(f"UnrealTargetPlatform.{platform}"):]
        block = block[:block.index("RuntimeDependencies.Add") + 200]
        for name in names:
            assert f'"{name}"' in block, f"{platform}: {name} is not staged"
    readme = README.read_text()
    for name in ("lz4.dll", "zstd.dll", "liblz4.so.1", "libzstd.so.1"):
        assert name in readme


def test_10_object_ids_need_custom_depth_before_the_base_pass() -> None:
    readme = README.read_text()
    assert "r.CustomDepth.Order=0" in readme
    module = code("NeuralRenderBridgeModule.cpp")
    assert "WarnIfCustomStencilIsLate();" in function_body(module, "OnPostEngineInit")
    assert 'TEXT("r.CustomDepth.Order")' in module


def test_11_the_copy_into_libnrb_runs_off_the_render_thread() -> None:
    """The render thread maps the read-backs and hands them to a worker (a UE::Tasks::FPipe, one frame at a time,
    in order) that copies them into libnrb; it unlocks them later, never waiting."""
    ext = code("NeuralSceneViewExtension.cpp")
    assert "nrb_frame_tag_buffer" not in ext  # only nrbglue::SubmitFrame copies
    process = function_body(ext, "ProcessReadbacks_RenderThread")
    launch = re.search(r"SubmitPipe\.Launch\(TEXT\(\"[^\"]+\"\), \[Client, SetPtr\]\(\)\s*\{(.*?)\}\);", process, re.S)
    assert launch and "nrbglue::SubmitFrame(Client, SetPtr->Frame)" in launch.group(1)
    assert "ESlot::Submitted" in launch.group(1)
    assert "->Unlock();" in process and "->Lock(RowPitchPixels)" in process
    assert "Wait" not in process  # the render thread never waits for the GPU or the worker
    module = code("NeuralRenderBridgeModule.cpp")
    create = function_body(module, "RecreateClient")
    assert create.index("ViewExtension->WaitForSubmissions();") < create.index("nrb_client_destroy(Client);")


def test_12_get_input_is_a_texture_on_5_3_and_a_slice_from_5_4() -> None:
    ext = code("NeuralSceneViewExtension.cpp")
    older, newer = branches(ext, "UE_VERSION_OLDER_THAN(5, 4, 0)")
    assert "Inputs.GetInput(EPostProcessMaterialInput::SceneColor)" in older and "CopyFromSlice" not in older
    assert "FScreenPassTexture::CopyFromSlice(GraphBuilder, Inputs.GetInput(" in newer


def test_the_refusal_is_shown_and_the_toggle_retries() -> None:
    header = (MODULE / "Public" / "NeuralRenderingBlueprintLibrary.h").read_text()
    for field in ("FString State", "bool bRefused", "int32 RefusalCode", "FString RefusalMessage"):
        assert field in header, field
    module = code("NeuralRenderBridgeModule.cpp")
    tick = function_body(module, "TickStats")
    assert "nrbglue::StatsLine(Stats)" in tick and "AddOnScreenDebugMessage" in tick and "Stats.bRefused" in tick
    assert "nrbglue::RetryIfRefused(Client)" in function_body(module, "SetEnabled")
    glue = strip_comments((PRIVATE / "NrbGlue.cpp").read_text())
    assert "nrb_client_retry(Client)" in glue and "refusal_message" in glue


def test_the_pack_pass_fills_the_sky_as_protocol_6_5_says() -> None:
    """Issue #16: where no geometry was drawn (device Z 0, reversed infinite far) the pack pass sends zero normals, no
    emission, no ids, and the colour shown there as albedo, instead of the G-buffer's stale base colour and normal."""
    usf = strip_comments((PLUGIN / "Shaders" / "Private" / "NrbPack.usf").read_text())
    sky = re.search(r"if \(DeviceZ <= 0\.0\)\s*\{(.*?)\}", usf, re.S)
    assert sky is not None, "no sky branch in the pack pass"
    body = sky.group(1)
    for write in ("OutNormal[Pixel] = float4(0.0, 0.0, 0.0", "OutEmissive[Pixel] = float4(0.0, 0.0, 0.0",
                  "OutObjectId[Pixel] = 0", "OutMaterialId[Pixel] = 0", "OutAlbedo[Pixel] = float4(LinearToSrgb("):
        assert write in body
    assert body.index("Shown") < body.index("OutAlbedo")  # albedo is the scene colour, not the base colour
