#include "NeuralSceneViewExtension.h"

#include "Components/DirectionalLightComponent.h"
#include "Components/PointLightComponent.h"
#include "Components/SpotLightComponent.h"
#include "DataDrivenShaderPlatformInfo.h"
#include "Engine/Engine.h"
#include "Engine/GameViewportClient.h"
#include "FXRenderingUtils.h"
#include "GlobalShader.h"
#include "PostProcess/PostProcessMaterialInputs.h"
#include "RHIStaticStates.h"
#include "RenderGraphBuilder.h"
#include "RenderGraphUtils.h"
#include "RenderTargetPool.h"
#include "RenderingThread.h"
#include "SceneTexturesConfig.h"
#include "SceneView.h"
#include "ScreenPass.h"
#include "ShaderParameterStruct.h"
#include "UObject/UObjectIterator.h"

#include "NeuralRenderBridgeModule.h"
#include "NeuralRenderingCVars.h"
#include "NeuralRenderingLog.h"
#include "nrb/nrb.h"

// ------------------------------------------------------------------------------------------- the shaders
/** Packs the G-buffers of the view's render rect into tight textures (Shaders/Private/NrbPack.usf). */
class FNrbPackCS : public FGlobalShader
{
public:
	DECLARE_GLOBAL_SHADER(FNrbPackCS);
	SHADER_USE_PARAMETER_STRUCT(FNrbPackCS, FGlobalShader);

	BEGIN_SHADER_PARAMETER_STRUCT(FParameters, )
		SHADER_PARAMETER_STRUCT_REF(FViewUniformShaderParameters, View)
		SHADER_PARAMETER_RDG_UNIFORM_BUFFER(FSceneTextureUniformParameters, SceneTexturesStruct)
		SHADER_PARAMETER_RDG_TEXTURE_SRV(Texture2D<uint2>, CustomStencilTexture)
		SHADER_PARAMETER_ARRAY(FUintVector4, MaterialOfObject, [64])
		SHADER_PARAMETER(FIntPoint, ViewMin)
		SHADER_PARAMETER(FVector2f, OutputSize)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<float4>, OutAlbedo)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<float4>, OutNormal)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<float>, OutDepth)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<float>, OutLinearDepth)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<float2>, OutMotion)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<float>, OutRoughness)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<float>, OutMetallic)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<float4>, OutEmissive)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<uint>, OutObjectId)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<uint>, OutMaterialId)
	END_SHADER_PARAMETER_STRUCT()

	static bool ShouldCompilePermutation(const FGlobalShaderPermutationParameters& Parameters)
	{
		return IsFeatureLevelSupported(Parameters.Platform, ERHIFeatureLevel::SM5);
	}
};
IMPLEMENT_GLOBAL_SHADER(FNrbPackCS, "/Plugin/NeuralRenderBridge/Private/NrbPack.usf", "MainCS", SF_Compute);

/** Resamples the tonemapped SceneColor (no HUD yet) to the render rect's size for hudless_color
 * (Shaders/Private/NrbHudless.usf). */
class FNrbHudlessCS : public FGlobalShader
{
public:
	DECLARE_GLOBAL_SHADER(FNrbHudlessCS);
	SHADER_USE_PARAMETER_STRUCT(FNrbHudlessCS, FGlobalShader);

	BEGIN_SHADER_PARAMETER_STRUCT(FParameters, )
		SHADER_PARAMETER_RDG_TEXTURE(Texture2D, InputTexture)
		SHADER_PARAMETER_SAMPLER(SamplerState, InputSampler)
		SHADER_PARAMETER(FVector2f, InputUVMin)
		SHADER_PARAMETER(FVector2f, InputUVSize)
		SHADER_PARAMETER(FVector2f, OutputSize)
		SHADER_PARAMETER_RDG_TEXTURE_UAV(RWTexture2D<float4>, OutHudless)
	END_SHADER_PARAMETER_STRUCT()

	static bool ShouldCompilePermutation(const FGlobalShaderPermutationParameters& Parameters)
	{
		return IsFeatureLevelSupported(Parameters.Platform, ERHIFeatureLevel::SM5);
	}
};
IMPLEMENT_GLOBAL_SHADER(FNrbHudlessCS, "/Plugin/NeuralRenderBridge/Private/NrbHudless.usf", "MainCS", SF_Compute);

/** Draws the neural frame over the view (Shaders/Private/NrbComposite.usf), sRGB-encoding a linear result. */
class FNrbCompositePS : public FGlobalShader
{
public:
	DECLARE_GLOBAL_SHADER(FNrbCompositePS);
	SHADER_USE_PARAMETER_STRUCT(FNrbCompositePS, FGlobalShader);

	BEGIN_SHADER_PARAMETER_STRUCT(FParameters, )
		SHADER_PARAMETER_RDG_TEXTURE(Texture2D, InputTexture)
		SHADER_PARAMETER_SAMPLER(SamplerState, InputSampler)
		SHADER_PARAMETER(uint32, EncodeSrgb)
		RENDER_TARGET_BINDING_SLOTS()
	END_SHADER_PARAMETER_STRUCT()

	static bool ShouldCompilePermutation(const FGlobalShaderPermutationParameters& Parameters)
	{
		return IsFeatureLevelSupported(Parameters.Platform, ERHIFeatureLevel::SM5);
	}
};
IMPLEMENT_GLOBAL_SHADER(FNrbCompositePS, "/Plugin/NeuralRenderBridge/Private/NrbComposite.usf", "MainPS", SF_Pixel);

namespace
{
/** The engine pixel format that holds a packed target's wire format with the same layout, derived from
 * nrbglue::PackedTargets (the plugin's one list of G-buffers) rather than listed again. rgba8_srgb is sRGB-encoded
 * by the shader into a plain PF_R8G8B8A8. */
EPixelFormat TargetPixelFormat(nrb_format Format)
{
	switch (Format)
	{
	case NRB_FORMAT_RGBA8:
	case NRB_FORMAT_RGBA8_SRGB: return PF_R8G8B8A8;
	case NRB_FORMAT_RGBA16F: return PF_FloatRGBA;
	case NRB_FORMAT_R32F: return PF_R32_FLOAT;
	case NRB_FORMAT_RG16F: return PF_G16R16F;
	case NRB_FORMAT_R8: return PF_G8;
	case NRB_FORMAT_R16U: return PF_R16_UINT;
	default: return PF_Unknown;
	}
}

EPixelFormat ToPixelFormat(nrbglue::EResultTexture Texture)
{
	switch (Texture)
	{
	case nrbglue::EResultTexture::Rgba8: return PF_R8G8B8A8;
	case nrbglue::EResultTexture::Rgba16f: return PF_FloatRGBA;
	case nrbglue::EResultTexture::Rgba32f: return PF_A32B32G32R32F;
	default: return PF_Unknown;
	}
}

/** Unreal (left-handed, X forward, Y right, Z up) -> protocol (right-handed, +Y up): (y, z, -x). */
void ToProtocol(const FVector& V, double Out[3])
{
	Out[0] = V.Y;
	Out[1] = V.Z;
	Out[2] = -V.X;
}
}  // namespace

// ---------------------------------------------------------------------------------------------- extension
FNeuralSceneViewExtension::FNeuralSceneViewExtension(const FAutoRegister& AutoRegister,
	FNeuralRenderBridgeModule* InModule)
	: FSceneViewExtensionBase(AutoRegister), Module(InModule)
{
}

FNeuralSceneViewExtension::~FNeuralSceneViewExtension()
{
	SubmitPipe.WaitUntilEmpty();  // the pipe must be empty when it is destroyed
}

bool FNeuralSceneViewExtension::IsActiveThisFrame_Internal(const FSceneViewExtensionContext& Context) const
{
	if (Module == nullptr || Module->GetClient() == nullptr || CVarNeuralRenderingEnable.GetValueOnAnyThread() == 0)
	{
		return false;
	}
	// The game's viewport only (in the editor: Play In Editor). Scene captures gather the extensions for their scene
	// (no viewport), and every other view family (editor viewports, thumbnails, other windows) has another viewport.
	return Context.Viewport != nullptr && GEngine != nullptr && GEngine->GameViewport != nullptr &&
		Context.Viewport == GEngine->GameViewport->Viewport;
}

bool FNeuralSceneViewExtension::IsNeuralView(const FSceneView& View)
{
	const FSceneViewFamily* Family = View.Family;
	return View.bIsViewInfo && Family != nullptr && Family->Views.Num() > 0 && Family->Views[0] == &View &&
		!View.bIsSceneCapture && !View.bIsReflectionCapture && !View.bIsPlanarReflection &&
		Family->EngineShowFlags.PostProcessing;
}

void FNeuralSceneViewExtension::WaitForSubmissions()
{
	SubmitPipe.WaitUntilEmpty();
}

void FNeuralSceneViewExtension::ReleaseReadbacks()
{
	WaitForSubmissions();
	ENQUEUE_RENDER_COMMAND(NeuralRenderBridgeRelease)([this](FRHICommandListImmediate&)
	{
		for (FReadbackSet& Set : Sets)
		{
			const ESlot State = Set.State.load();
			if (State == ESlot::Submitting || State == ESlot::Submitted)
			{
				for (int32 I = 0; I < ReadbacksOf(Set); ++I)
				{
					Set.Readbacks[I]->Unlock();
				}
			}
			Set.Readbacks.Reset();
			Set.State.store(ESlot::Free);
		}
	});
	FlushRenderingCommands();
}

void FNeuralSceneViewExtension::BeginRenderViewFamily(FSceneViewFamily& InViewFamily)
{
	// Game thread: the strongest visible directional light of the view's world is the sun.
	FSun Found;
	const UWorld* World = InViewFamily.Scene != nullptr ? InViewFamily.Scene->GetWorld() : nullptr;
	float Best = 0.0f;
	const UDirectionalLightComponent* SunLight = nullptr;
	for (TObjectIterator<UDirectionalLightComponent> It; It && World != nullptr; ++It)
	{
		const UDirectionalLightComponent* Light = *It;
		if (Light->GetWorld() != World || !Light->IsRegistered() || !Light->IsVisible() || !Light->bAffectsWorld)
		{
			continue;
		}
		const float Brightness = Light->GetColoredLightBrightness().GetLuminance();
		if (Brightness > Best)
		{
			Best = Brightness;
			Found.bValid = true;
			SunLight = Light;
			ToProtocol(-Light->GetDirection(), Found.Towards);  // GetDirection: the way the light travels
		}
	}
	// The light list (docs/protocol.md 6.1 x_lights): the other directional lights, every point and spot light.
	const auto Brightness = [](const ULightComponent* Light, nrbglue::FLightInputs& In)
	{
		const FLinearColor B = Light->GetColoredLightBrightness();
		for (int32 C = 0; C < 3; ++C)
		{
			In.Brightness[C] = B.Component(C);
		}
	};
	for (TObjectIterator<UDirectionalLightComponent> It; It && World != nullptr; ++It)
	{
		const UDirectionalLightComponent* Light = *It;
		if (Light == SunLight || Light->GetWorld() != World || !Light->IsRegistered() || !Light->IsVisible() ||
			!Light->bAffectsWorld)
		{
			continue;
		}
		nrbglue::FLightInputs In;
		In.Type = nrbglue::FLightInputs::EType::Directional;
		ToProtocol(Light->GetDirection(), In.Direction);
		Brightness(Light, In);
		Found.Lights.Add(In);
	}
	for (TObjectIterator<UPointLightComponent> It; It && World != nullptr; ++It)  // spot lights too (a subclass)
	{
		const UPointLightComponent* Light = *It;
		if (Light->GetWorld() != World || !Light->IsRegistered() || !Light->IsVisible() || !Light->bAffectsWorld)
		{
			continue;
		}
		nrbglue::FLightInputs In;
		ToProtocol(Light->GetComponentLocation(), In.Position);
		ToProtocol(Light->GetDirection(), In.Direction);
		Brightness(Light, In);
		In.AttenuationRadius = Light->AttenuationRadius;
		In.bInverseSquared = Light->bUseInverseSquaredFalloff != 0;
		if (const USpotLightComponent* Spot = Cast<USpotLightComponent>(Light))
		{
			In.Type = nrbglue::FLightInputs::EType::Spot;
			In.InnerConeDeg = Spot->InnerConeAngle;
			In.OuterConeDeg = Spot->OuterConeAngle;
		}
		Found.Lights.Add(In);
	}
	Found.Lights.Sort([](const nrbglue::FLightInputs& A, const nrbglue::FLightInputs& B)
		{ return A.Brightness[0] + A.Brightness[1] + A.Brightness[2] > B.Brightness[0] + B.Brightness[1] + B.Brightness[2]; });
	if (Found.Lights.Num() > NRB_MAX_LIGHTS)
	{
		Found.Lights.SetNum(NRB_MAX_LIGHTS);
	}
	ENQUEUE_RENDER_COMMAND(NeuralRenderBridgeSun)([this, Found](FRHICommandListImmediate&) { Sun_RenderThread = Found; });
}

void FNeuralSceneViewExtension::PreRenderViewFamily_RenderThread(FRDGBuilder& GraphBuilder, FSceneViewFamily& InViewFamily)
{
	HudlessSet = NoSet;  // a frame's hudless_color only ever joins that frame's G-buffers
	ProcessReadbacks_RenderThread();
}

void FNeuralSceneViewExtension::FillCamera(const FSceneView& View, FIntPoint RenderSize, nrbglue::FPackedFrame& Frame)
{
	const FViewMatrices& VM = View.ViewMatrices;
	const FMatrix Proj = VM.GetProjectionNoAAMatrix();  // no jitter
	nrbglue::FCameraInputs In;
	In.FocalY = Proj.M[1][1];
	In.Aspect = Proj.M[1][1] / Proj.M[0][0];
	In.Near = View.NearClippingDistance;
	const FRotationMatrix Rot(View.ViewRotation);
	ToProtocol(VM.GetViewOrigin(), In.Position);
	ToProtocol(Rot.GetScaledAxis(EAxis::X), In.Forward);
	ToProtocol(Rot.GetScaledAxis(EAxis::Y), In.Right);
	ToProtocol(Rot.GetScaledAxis(EAxis::Z), In.Up);
	In.RenderWidth = static_cast<uint32_t>(RenderSize.X);
	In.RenderHeight = static_cast<uint32_t>(RenderSize.Y);
	// the image comes back at the view's output size (after TSR / screen percentage upscaling)
	In.OutputWidth = static_cast<uint32_t>(View.UnscaledViewRect.Width());
	In.OutputHeight = static_cast<uint32_t>(View.UnscaledViewRect.Height());
	In.bCameraCut = View.bCameraCut;
	// How hudless_color (the tonemapped SceneColor) was made: the exposure the tonemapper applied (eye adaptation)
	// and the filmic curve, stated as ACES at Epic's default film settings (nrbglue::ToneMappingOf).
	In.PreExposure = View.GetLastEyeAdaptationExposure();
	const FFinalPostProcessSettings& Post = View.FinalPostProcessSettings;
	In.ToneMapping = nrbglue::ToneMappingOf(nrbglue::FFilmCurve{Post.FilmSlope, Post.FilmToe, Post.FilmShoulder,
		Post.FilmBlackClip, Post.FilmWhiteClip});
	nrb_camera_init(&Frame.Camera);
	CameraTracker.Build(In, Frame.Camera);

	Frame.bHasSun = Sun_RenderThread.bValid;
	for (int32 I = 0; I < 3; ++I)
	{
		Frame.SunTowards[I] = static_cast<float>(Sun_RenderThread.Towards[I]);
	}
	Frame.SunTowards[3] = 0.0f;
	Frame.Lights.clear();
	for (const nrbglue::FLightInputs& Light : Sun_RenderThread.Lights)
	{
		Frame.Lights.push_back(nrbglue::MakeLight(Light, In.PreExposure));
	}
	const double Now = FPlatformTime::Seconds();
	Frame.Dt = LastTime > 0.0 ? FMath::Min(Now - LastTime, 10.0) : 0.0;
	LastTime = Now;
}

void FNeuralSceneViewExtension::PostRenderBasePassDeferred_RenderThread(FRDGBuilder& GraphBuilder, FSceneView& InView,
	const FRenderTargetBindingSlots& RenderTargets, TRDGUniformBufferRef<FSceneTextureUniformParameters> SceneTextures)
{
	if (!IsNeuralView(InView))
	{
		return;  // primary view of the game viewport only (no split screen, stereo or captures)
	}
	FReadbackSet& Set = Sets[NextSet];
	if (Set.State.load(std::memory_order_acquire) != ESlot::Free)
	{
		return;  // both slots still in flight: skip this frame rather than stall
	}
	// No pack pass and no readback (80 MB per 1080p frame) for a frame libnrb would not send: not connected, or holding
	// frames back from a renderer too slow for the deadline (docs/protocol.md 5.9, engine rule 5). nrb_get_sending,
	// not nrb_frame_get_live: the worker builds the frames, and this may be asked from any thread.
	nrb_client* Client = Module->GetClient();
	int bSending = 0;
	if (Client == nullptr || nrb_get_sending(Client, &bSending) != NRB_OK || bSending == 0)
	{
		return;
	}
	// The view's render rect: at render resolution (screen percentage, TSR, dynamic resolution) and offset inside the
	// scene textures, which may be larger than the view (UnscaledViewRect is the output size, after upscaling).
	const FIntRect Rect = UE::FXRenderingUtils::GetRawViewRectUnsafe(InView);
	const FIntPoint Size = Rect.Size();
	if (Size.X <= 0 || Size.Y <= 0)
	{
		return;
	}
	RDG_EVENT_SCOPE(GraphBuilder, "NeuralRenderBridge.Pack");
	FNrbPackCS::FParameters* Params = GraphBuilder.AllocParameters<FNrbPackCS::FParameters>();
	Params->View = InView.ViewUniformBuffer;
	Params->SceneTexturesStruct = SceneTextures;
	Params->CustomStencilTexture = SceneTextures->GetParameters()->CustomStencilTexture;
	TArray<uint32> Table;
	Module->GetMaterialTable(Table);
	for (int32 I = 0; I < 64; ++I)
	{
		Params->MaterialOfObject[I] = FUintVector4(Table[I * 4], Table[I * 4 + 1], Table[I * 4 + 2], Table[I * 4 + 3]);
	}
	Params->ViewMin = Rect.Min;
	Params->OutputSize = FVector2f(Size.X, Size.Y);
	FRDGTextureRef Packed[nrbglue::NumTargets];
	FRDGTextureUAVRef* Uavs[nrbglue::NumTargets] = {};
	Uavs[nrbglue::TargetAlbedo] = &Params->OutAlbedo;
	Uavs[nrbglue::TargetNormals] = &Params->OutNormal;
	Uavs[nrbglue::TargetDepth] = &Params->OutDepth;
	Uavs[nrbglue::TargetLinearDepth] = &Params->OutLinearDepth;
	Uavs[nrbglue::TargetMotionVectors] = &Params->OutMotion;
	Uavs[nrbglue::TargetRoughness] = &Params->OutRoughness;
	Uavs[nrbglue::TargetMetallic] = &Params->OutMetallic;
	Uavs[nrbglue::TargetEmissive] = &Params->OutEmissive;
	Uavs[nrbglue::TargetObjectId] = &Params->OutObjectId;
	Uavs[nrbglue::TargetMaterialId] = &Params->OutMaterialId;
	for (int32 I = 0; I < nrbglue::NumTargets; ++I)
	{
		Packed[I] = GraphBuilder.CreateTexture(
			FRDGTextureDesc::Create2D(Size, TargetPixelFormat(nrbglue::PackedTargets[I].Format), FClearValueBinding::None, TexCreate_UAV | TexCreate_ShaderResource),
			TEXT("NeuralRenderBridge.Target"));
		*Uavs[I] = GraphBuilder.CreateUAV(Packed[I]);
	}
	TShaderMapRef<FNrbPackCS> Shader(GetGlobalShaderMap(InView.GetFeatureLevel()));
	FComputeShaderUtils::AddPass(GraphBuilder, RDG_EVENT_NAME("NrbPack %dx%d", Size.X, Size.Y), Shader, Params,
		FComputeShaderUtils::GetGroupCount(Size, FIntPoint(8, 8)));

	if (Set.Readbacks.Num() != NumReadbacks)
	{
		Set.Readbacks.Reset();
		for (int32 I = 0; I < NumReadbacks; ++I)  // the packed targets, then hudless_color (after Tonemap)
		{
			Set.Readbacks.Add(MakeUnique<FRHIGPUTextureReadback>(TEXT("NeuralRenderBridge.Readback")));
		}
	}
	Set.bHudless = false;  // until the Tonemap pass of this frame copies it
	for (int32 I = 0; I < nrbglue::NumTargets; ++I)
	{
		AddEnqueueCopyPass(GraphBuilder, Set.Readbacks[I].Get(), Packed[I]);  // GPU -> staging, no wait
	}
	FillCamera(InView, Size, Set.Frame);
	Set.Frame.Width = static_cast<uint32_t>(Size.X);
	Set.Frame.Height = static_cast<uint32_t>(Size.Y);
	Set.State.store(ESlot::Copying, std::memory_order_release);
	HudlessSet = NextSet;  // the Tonemap pass of this frame adds its hudless_color to this set
	NextSet = (NextSet + 1) % FramesInFlight;
}

void FNeuralSceneViewExtension::AddHudlessPass_RenderThread(FRDGBuilder& GraphBuilder, const FSceneView& View,
	const FScreenPassTexture& SceneColor)
{
	if (HudlessSet == NoSet || !SceneColor.IsValid())
	{
		return;
	}
	FReadbackSet& Set = Sets[HudlessSet];
	HudlessSet = NoSet;  // once per frame
	if (Set.State.load(std::memory_order_acquire) != ESlot::Copying || Set.Readbacks.Num() != NumReadbacks)
	{
		return;
	}
	const FIntPoint Size(static_cast<int32>(Set.Frame.Width), static_cast<int32>(Set.Frame.Height));
	const FIntPoint Extent = SceneColor.Texture->Desc.Extent;
	const FIntRect Rect = SceneColor.ViewRect;
	if (Size.X <= 0 || Size.Y <= 0 || Extent.X <= 0 || Extent.Y <= 0 || Rect.Width() <= 0 || Rect.Height() <= 0)
	{
		return;
	}
	RDG_EVENT_SCOPE(GraphBuilder, "NeuralRenderBridge.Hudless");
	FRDGTextureRef Hudless = GraphBuilder.CreateTexture(
		FRDGTextureDesc::Create2D(Size, TargetPixelFormat(nrbglue::HudlessColor.Format), FClearValueBinding::None,
			TexCreate_UAV | TexCreate_ShaderResource),
		TEXT("NeuralRenderBridge.Hudless"));
	FNrbHudlessCS::FParameters* Params = GraphBuilder.AllocParameters<FNrbHudlessCS::FParameters>();
	Params->InputTexture = SceneColor.Texture;
	Params->InputSampler = TStaticSamplerState<SF_Bilinear, AM_Clamp, AM_Clamp, AM_Clamp>::GetRHI();
	Params->InputUVMin = FVector2f(static_cast<float>(Rect.Min.X) / Extent.X, static_cast<float>(Rect.Min.Y) / Extent.Y);
	Params->InputUVSize =
		FVector2f(static_cast<float>(Rect.Width()) / Extent.X, static_cast<float>(Rect.Height()) / Extent.Y);
	Params->OutputSize = FVector2f(Size.X, Size.Y);
	Params->OutHudless = GraphBuilder.CreateUAV(Hudless);
	TShaderMapRef<FNrbHudlessCS> Shader(GetGlobalShaderMap(View.GetFeatureLevel()));
	FComputeShaderUtils::AddPass(GraphBuilder, RDG_EVENT_NAME("NrbHudless %dx%d", Size.X, Size.Y), Shader, Params,
		FComputeShaderUtils::GetGroupCount(Size, FIntPoint(8, 8)));
	AddEnqueueCopyPass(GraphBuilder, Set.Readbacks[nrbglue::NumTargets].Get(), Hudless);  // GPU -> staging, no wait
	Set.bHudless = true;
}

void FNeuralSceneViewExtension::ProcessReadbacks_RenderThread()
{
	// Slots the worker is done with: unlock their staging memory (an RHI call, so here, on the render thread).
	for (FReadbackSet& Set : Sets)
	{
		if (Set.State.load(std::memory_order_acquire) == ESlot::Submitted)
		{
			for (int32 I = 0; I < ReadbacksOf(Set); ++I)
			{
				Set.Readbacks[I]->Unlock();
			}
			Set.State.store(ESlot::Free, std::memory_order_release);
		}
	}
	// Copies the GPU has finished, oldest first: map them here and hand the copy into libnrb (nrb_frame_tag_buffer,
	// 80 MB per 1080p frame) to the worker, which keeps the render thread free of it.
	nrb_client* Client = Module->GetClient();
	for (int32 K = 0; K < FramesInFlight; ++K)
	{
		FReadbackSet& Set = Sets[(NextSet + K) % FramesInFlight];
		if (Set.State.load(std::memory_order_acquire) != ESlot::Copying)
		{
			continue;
		}
		bool bReady = true;
		for (int32 I = 0; I < ReadbacksOf(Set); ++I)  // hudless_color only when its Tonemap pass copied it
		{
			bReady &= Set.Readbacks[I]->IsReady();
		}
		if (!bReady)
		{
			return;  // keep frame order
		}
		for (int32 I = 0; I < nrbglue::NumTargets; ++I)
		{
			int32 RowPitchPixels = 0;
			Set.Frame.Data[I] = Set.Readbacks[I]->Lock(RowPitchPixels);
			Set.Frame.RowPitchPixels[I] = static_cast<uint32_t>(RowPitchPixels);
		}
		Set.Frame.HudlessData = nullptr;
		if (Set.bHudless)
		{
			int32 RowPitchPixels = 0;
			Set.Frame.HudlessData = Set.Readbacks[nrbglue::NumTargets]->Lock(RowPitchPixels);
			Set.Frame.HudlessRowPitchPixels = static_cast<uint32_t>(RowPitchPixels);
		}
		Set.State.store(ESlot::Submitting, std::memory_order_release);
		FReadbackSet* SetPtr = &Set;
		SubmitPipe.Launch(TEXT("NeuralRenderBridge.SubmitFrame"), [Client, SetPtr]()
		{
			if (Client != nullptr)
			{
				nrbglue::SubmitFrame(Client, SetPtr->Frame);  // returns at once after the copy
			}
			SetPtr->State.store(ESlot::Submitted, std::memory_order_release);
		});
	}
}

#if UE_VERSION_OLDER_THAN(5, 5, 0)
void FNeuralSceneViewExtension::SubscribeToPostProcessingPass(EPostProcessingPass Pass,
	FAfterPassCallbackDelegateArray& InOutPassCallbacks, bool bIsPassEnabled)
{
	if (Pass == EPostProcessingPass::Tonemap)  // the view is checked in the callback
	{
		InOutPassCallbacks.Add(FAfterPassCallbackDelegate::CreateRaw(this, &FNeuralSceneViewExtension::PostTonemap_RenderThread));
	}
}
#else
void FNeuralSceneViewExtension::SubscribeToPostProcessingPass(EPostProcessingPass Pass, const FSceneView& InView,
	FAfterPassCallbackDelegateArray& InOutPassCallbacks, bool bIsPassEnabled)
{
	if (Pass == EPostProcessingPass::Tonemap && IsNeuralView(InView))
	{
		InOutPassCallbacks.Add(FAfterPassCallbackDelegate::CreateRaw(this, &FNeuralSceneViewExtension::PostTonemap_RenderThread));
	}
}
#endif

FScreenPassTexture FNeuralSceneViewExtension::PostTonemap_RenderThread(FRDGBuilder& GraphBuilder, const FSceneView& View,
	const FPostProcessMaterialInputs& Inputs)
{
#if UE_VERSION_OLDER_THAN(5, 4, 0)
	const FScreenPassTexture SceneColor = Inputs.GetInput(EPostProcessMaterialInput::SceneColor);  // 5.3: a texture
#else
	// 5.4+: GetInput returns an FScreenPassTextureSlice
	const FScreenPassTexture SceneColor =
		FScreenPassTexture::CopyFromSlice(GraphBuilder, Inputs.GetInput(EPostProcessMaterialInput::SceneColor));
#endif
	if (IsNeuralView(View))
	{
		// The engine's own image of this frame, before the UI and before the neural frame replaces it: hudless_color
		// for the renderer (intensity and exclusions mix it back in), read back with the G-buffers of this frame.
		AddHudlessPass_RenderThread(GraphBuilder, View, SceneColor);
	}
	nrb_client* Client = Module->GetClient();
	nrb_result Result;
	FMemory::Memzero(Result);
	Result.struct_size = sizeof(Result);
	Result.struct_version = NRB_RESULT_VERSION;
	const bool bHaveResult = IsNeuralView(View) && Client != nullptr && nrb_acquire_result(Client, &Result) == NRB_OK;
	const nrbglue::FResultPlan Plan = nrbglue::PlanResult(bHaveResult ? Result.format : NRB_FORMAT_UNKNOWN);
	if (bHaveResult && Plan.Texture == nrbglue::EResultTexture::Unsupported)
	{
		if (!bWarnedFormat)
		{
			UE_LOG(LogNeuralRendering, Warning, TEXT("Result format %s cannot be shown; showing the engine's image."),
				UTF8_TO_TCHAR(nrb_format_name(Result.format)));
			bWarnedFormat = true;
		}
		nrb_release_result(Client, &Result);
	}
	if (!bHaveResult || Plan.Texture == nrbglue::EResultTexture::Unsupported)
	{
		// fall back: the engine's own image
		if (Inputs.OverrideOutput.IsValid())
		{
			AddDrawTexturePass(GraphBuilder, View, SceneColor, Inputs.OverrideOutput);
			return FScreenPassTexture(Inputs.OverrideOutput);
		}
		return SceneColor;
	}

	const FIntPoint Size(static_cast<int32>(Result.width), static_cast<int32>(Result.height));
	const EPixelFormat Format = ToPixelFormat(Plan.Texture);
	if (!NeuralTexture.IsValid() || NeuralTexture->GetSizeXY() != Size || NeuralFormat != Format)
	{
		// No sRGB view: after Tonemap the engine's image holds display-encoded values, and an rgba8_srgb result is
		// already encoded that way; sampling it through an sRGB view would decode it and darken the image.
		const FRHITextureCreateDesc Desc =
			FRHITextureCreateDesc::Create2D(TEXT("NeuralRenderBridge.Frame"), Size.X, Size.Y, Format)
				.SetFlags(ETextureCreateFlags::ShaderResource);
		NeuralTexture = RHICreateTexture(Desc);
		NeuralFormat = Format;
		UploadedFrame = 0;
	}
	if (UploadedFrame != Result.frame_id)
	{
		const FUpdateTextureRegion2D Region(0, 0, 0, 0, Size.X, Size.Y);
		GraphBuilder.RHICmdList.UpdateTexture2D(NeuralTexture, 0, Region, Result.stride, static_cast<const uint8*>(Result.pixels));
		UploadedFrame = Result.frame_id;
	}
	nrb_release_result(Client, &Result);  // UpdateTexture2D copied the pixels

	FRDGTextureRef Neural = GraphBuilder.RegisterExternalTexture(CreateRenderTarget(NeuralTexture, TEXT("NeuralRenderBridge.Frame")));
	FScreenPassRenderTarget Output = Inputs.OverrideOutput;
	if (!Output.IsValid())
	{
		Output = FScreenPassRenderTarget::CreateFromInput(GraphBuilder, SceneColor, View.GetOverwriteLoadAction(),
			TEXT("NeuralRenderBridge.Output"));
	}
	FNrbCompositePS::FParameters* Params = GraphBuilder.AllocParameters<FNrbCompositePS::FParameters>();
	Params->InputTexture = Neural;
	Params->InputSampler = TStaticSamplerState<SF_Bilinear, AM_Clamp, AM_Clamp, AM_Clamp>::GetRHI();
	Params->EncodeSrgb = Plan.bEncodeSrgb ? 1u : 0u;
	Params->RenderTargets[0] = Output.GetRenderTargetBinding();
	TShaderMapRef<FNrbCompositePS> PixelShader(GetGlobalShaderMap(View.GetFeatureLevel()));
	// the whole neural frame, stretched over the view's rect of the output
	AddDrawScreenPass(GraphBuilder, RDG_EVENT_NAME("NeuralRenderBridge.Composite"), View, FScreenPassTextureViewport(Output),
		FScreenPassTextureViewport(Neural), PixelShader, Params);
	return FScreenPassTexture(Output);
}
