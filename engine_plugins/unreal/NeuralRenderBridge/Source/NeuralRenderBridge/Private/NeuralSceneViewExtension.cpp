#include "NeuralSceneViewExtension.h"

#include "Components/DirectionalLightComponent.h"
#include "DataDrivenShaderPlatformInfo.h"
#include "GlobalShader.h"
#include "PostProcess/PostProcessMaterialInputs.h"
#include "RenderGraphBuilder.h"
#include "RenderGraphUtils.h"
#include "RenderTargetPool.h"
#include "SceneRenderTargetParameters.h"
#include "SceneTexturesConfig.h"
#include "SceneView.h"
#include "ScreenPass.h"
#include "ShaderParameterStruct.h"
#include "UObject/UObjectIterator.h"

#include "NeuralRenderBridgeModule.h"
#include "NeuralRenderingCVars.h"
#include "nrb/nrb.h"

// ------------------------------------------------------------------------------------------- the pack shader
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

namespace
{
/** The packed targets, in read-back order: protocol name, protocol format, pixel format. */
struct FTarget
{
	const char* Name;
	nrb_format Format;
	EPixelFormat PixelFormat;
};
constexpr FTarget GTargets[] = {
	{"albedo", NRB_FORMAT_RGBA8_SRGB, PF_R8G8B8A8},   {"normals", NRB_FORMAT_RGBA16F, PF_FloatRGBA},
	{"depth", NRB_FORMAT_R32F, PF_R32_FLOAT},         {"linear_depth", NRB_FORMAT_R32F, PF_R32_FLOAT},
	{"motion_vectors", NRB_FORMAT_RG16F, PF_G16R16F}, {"roughness", NRB_FORMAT_R8, PF_G8},
	{"metallic", NRB_FORMAT_R8, PF_G8},               {"emissive", NRB_FORMAT_RGBA16F, PF_FloatRGBA},
	{"object_id", NRB_FORMAT_R16U, PF_R16_UINT},      {"material_id", NRB_FORMAT_R16U, PF_R16_UINT},
};
constexpr int32 GNumTargets = UE_ARRAY_COUNT(GTargets);

// 4x4 helpers: row-major storage, column vectors (docs/protocol.md section 3).
void Mul(const double A[16], const double B[16], double Out[16])
{
	double R[16];
	for (int32 I = 0; I < 4; ++I)
		for (int32 J = 0; J < 4; ++J)
		{
			double S = 0.0;
			for (int32 K = 0; K < 4; ++K) S += A[I * 4 + K] * B[K * 4 + J];
			R[I * 4 + J] = S;
		}
	FMemory::Memcpy(Out, R, sizeof(R));
}

bool Invert(const double M[16], double Out[16])
{
	FMatrix44d U;
	for (int32 I = 0; I < 4; ++I)
		for (int32 J = 0; J < 4; ++J) U.M[I][J] = M[I * 4 + J];
	if (FMath::Abs(U.Determinant()) < 1e-300) return false;
	const FMatrix44d Inv = U.Inverse();
	for (int32 I = 0; I < 4; ++I)
		for (int32 J = 0; J < 4; ++J) Out[I * 4 + J] = Inv.M[I][J];
	return true;
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

FNeuralSceneViewExtension::~FNeuralSceneViewExtension() = default;

bool FNeuralSceneViewExtension::IsActiveThisFrame_Internal(const FSceneViewExtensionContext& Context) const
{
	return Module != nullptr && Module->GetClient() != nullptr && CVarNeuralRenderingEnable.GetValueOnAnyThread() != 0;
}

void FNeuralSceneViewExtension::BeginRenderViewFamily(FSceneViewFamily& InViewFamily)
{
	// Game thread: the strongest visible directional light of the view's world is the sun.
	FSun Found;
	const UWorld* World = InViewFamily.Scene != nullptr ? InViewFamily.Scene->GetWorld() : nullptr;
	float Best = 0.0f;
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
			ToProtocol(-Light->GetDirection(), Found.Towards);  // GetDirection: the way the light travels
		}
	}
	ENQUEUE_RENDER_COMMAND(NeuralRenderBridgeSun)([this, Found](FRHICommandListImmediate&) { Sun_RenderThread = Found; });
}

void FNeuralSceneViewExtension::PreRenderViewFamily_RenderThread(FRDGBuilder& GraphBuilder, FSceneViewFamily& InViewFamily)
{
	SubmitReadyFrames_RenderThread();
}

void FNeuralSceneViewExtension::FillCamera(const FSceneView& View, FReadbackSet& Set)
{
	const FViewMatrices& VM = View.ViewMatrices;
	const FMatrix Proj = VM.GetProjectionNoAAMatrix();  // no jitter
	const double F = Proj.M[1][1];
	Set.FovY = 2.0 * FMath::Atan(1.0 / F);
	Set.Aspect = Proj.M[1][1] / Proj.M[0][0];
	Set.Near = View.NearClippingDistance;
	const FRotationMatrix Rot(View.ViewRotation);
	ToProtocol(VM.GetViewOrigin(), Set.Position);
	ToProtocol(Rot.GetScaledAxis(EAxis::X), Set.Forward);
	ToProtocol(Rot.GetScaledAxis(EAxis::Y), Set.Right);
	ToProtocol(Rot.GetScaledAxis(EAxis::Z), Set.Up);
	// world_to_view: rows right, up, -forward
	double* WtoV = Set.Camera[4];
	FMemory::Memzero(WtoV, sizeof(double) * 16);
	const double* Rows[3] = {Set.Right, Set.Up, Set.Forward};
	for (int32 R = 0; R < 3; ++R)
	{
		const double Sign = R == 2 ? -1.0 : 1.0;
		for (int32 C = 0; C < 3; ++C) WtoV[R * 4 + C] = Sign * Rows[R][C];
		WtoV[R * 4 + 3] = -Sign * (Rows[R][0] * Set.Position[0] + Rows[R][1] * Set.Position[1] + Rows[R][2] * Set.Position[2]);
	}
	WtoV[15] = 1.0;
	// view_to_clip: Unreal's reversed-Z, infinite far projection in protocol view space (depth = near / distance)
	double* P = Set.Camera[0];
	FMemory::Memzero(P, sizeof(double) * 16);
	P[0] = F / Set.Aspect;
	P[5] = F;
	P[11] = Set.Near;
	P[14] = -1.0;
	Invert(P, Set.Camera[1]);
	double ViewProj[16];
	Mul(P, WtoV, ViewProj);
	Set.bReset = !bHavePrev || View.bCameraCut;
	const double* Prev = Set.bReset ? ViewProj : PrevViewProj;
	double InvViewProj[16];
	Invert(ViewProj, InvViewProj);
	Mul(Prev, InvViewProj, Set.Camera[2]);
	Invert(Set.Camera[2], Set.Camera[3]);
	FMemory::Memcpy(PrevViewProj, ViewProj, sizeof(ViewProj));
	bHavePrev = true;
	Set.Sun = Sun_RenderThread;
	const double Now = FPlatformTime::Seconds();
	Set.Dt = LastTime > 0.0 ? FMath::Min(Now - LastTime, 10.0) : 0.0;
	LastTime = Now;
}

void FNeuralSceneViewExtension::PostRenderBasePassDeferred_RenderThread(FRDGBuilder& GraphBuilder, FSceneView& InView,
	const FRenderTargetBindingSlots& RenderTargets, TRDGUniformBufferRef<FSceneTextureUniformParameters> SceneTextures)
{
	if (!InView.bIsViewInfo || InView.Family == nullptr || InView.Family->Views.Num() == 0 ||
		InView.Family->Views[0] != &InView)
	{
		return;  // primary view only (no split screen / stereo yet)
	}
	FReadbackSet& Set = Sets[NextSet];
	if (Set.bInUse)
	{
		return;  // both read-backs still in flight: skip this frame rather than stall
	}
	const FIntPoint Size = InView.UnscaledViewRect.Size();
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
	Params->OutputSize = FVector2f(Size.X, Size.Y);
	FRDGTextureRef Targets[GNumTargets];
	FRDGTextureUAVRef* Uavs[GNumTargets] = {&Params->OutAlbedo, &Params->OutNormal, &Params->OutDepth,
		&Params->OutLinearDepth, &Params->OutMotion, &Params->OutRoughness, &Params->OutMetallic, &Params->OutEmissive,
		&Params->OutObjectId, &Params->OutMaterialId};
	for (int32 I = 0; I < GNumTargets; ++I)
	{
		Targets[I] = GraphBuilder.CreateTexture(
			FRDGTextureDesc::Create2D(Size, GTargets[I].PixelFormat, FClearValueBinding::None, TexCreate_UAV | TexCreate_ShaderResource),
			TEXT("NeuralRenderBridge.Target"));
		*Uavs[I] = GraphBuilder.CreateUAV(Targets[I]);
	}
	TShaderMapRef<FNrbPackCS> Shader(GetGlobalShaderMap(InView.GetFeatureLevel()));
	FComputeShaderUtils::AddPass(GraphBuilder, RDG_EVENT_NAME("NrbPack %dx%d", Size.X, Size.Y), Shader, Params,
		FComputeShaderUtils::GetGroupCount(Size, FIntPoint(8, 8)));

	if (Set.Readbacks.Num() != GNumTargets)
	{
		Set.Readbacks.Reset();
		for (int32 I = 0; I < GNumTargets; ++I)
		{
			Set.Readbacks.Add(MakeUnique<FRHIGPUTextureReadback>(TEXT("NeuralRenderBridge.Readback")));
		}
	}
	for (int32 I = 0; I < GNumTargets; ++I)
	{
		AddEnqueueCopyPass(GraphBuilder, Set.Readbacks[I].Get(), Targets[I]);  // GPU -> staging, no wait
	}
	FillCamera(InView, Set);
	Set.Size = Size;
	Set.bInUse = true;
	NextSet = (NextSet + 1) % FramesInFlight;
}

void FNeuralSceneViewExtension::SubmitReadyFrames_RenderThread()
{
	nrb_client* Client = Module->GetClient();
	for (int32 K = 0; K < FramesInFlight; ++K)
	{
		FReadbackSet& Set = Sets[(NextSet + K) % FramesInFlight];  // oldest first
		if (!Set.bInUse)
		{
			continue;
		}
		bool bReady = true;
		for (const TUniquePtr<FRHIGPUTextureReadback>& R : Set.Readbacks)
		{
			bReady &= R->IsReady();
		}
		if (!bReady)
		{
			return;  // keep frame order
		}
		nrb_frame_info Info;
		FMemory::Memzero(Info);
		Info.struct_size = sizeof(Info);
		Info.struct_version = NRB_FRAME_INFO_VERSION;
		Info.dt = Set.Dt;
		if (Client != nullptr && nrb_frame_begin(Client, &Info, nullptr) == NRB_OK)
		{
			for (int32 I = 0; I < GNumTargets; ++I)
			{
				int32 RowPitchPixels = 0;
				const void* Data = Set.Readbacks[I]->Lock(RowPitchPixels);
				nrb_buffer_desc Desc;
				FMemory::Memzero(Desc);
				Desc.struct_size = sizeof(Desc);
				Desc.struct_version = NRB_BUFFER_DESC_VERSION;
				Desc.name = GTargets[I].Name;
				Desc.format = GTargets[I].Format;
				Desc.width = static_cast<uint32_t>(Set.Size.X);
				Desc.height = static_cast<uint32_t>(Set.Size.Y);
				Desc.stride = static_cast<uint32_t>(RowPitchPixels) * nrb_format_bytes_per_pixel(GTargets[I].Format);
				Desc.data = Data;
				Desc.flags = I == 2 ? (NRB_BUFFER_DEPTH_REVERSED | NRB_BUFFER_DEPTH_INFINITE) : 0u;
				nrb_frame_tag_buffer(Client, &Desc);  // copies: the staging buffer is unlocked right after
				Set.Readbacks[I]->Unlock();
			}
			if (Set.Sun.bValid)  // a 1x1 per-frame constant (docs/protocol.md 6.1)
			{
				const float Towards[4] = {float(Set.Sun.Towards[0]), float(Set.Sun.Towards[1]), float(Set.Sun.Towards[2]), 0.0f};
				nrb_buffer_desc Desc;
				FMemory::Memzero(Desc);
				Desc.struct_size = sizeof(Desc);
				Desc.struct_version = NRB_BUFFER_DESC_VERSION;
				Desc.name = "x_sun_direction";
				Desc.format = NRB_FORMAT_RGBA32F;
				Desc.width = Desc.height = 1;
				Desc.stride = sizeof(Towards);
				Desc.data = Towards;
				nrb_frame_tag_buffer(Client, &Desc);
			}
			nrb_camera Cam;
			nrb_camera_init(&Cam);
			FMemory::Memcpy(Cam.view_to_clip, Set.Camera[0], sizeof(Cam.view_to_clip));
			FMemory::Memcpy(Cam.clip_to_view, Set.Camera[1], sizeof(Cam.clip_to_view));
			FMemory::Memcpy(Cam.clip_to_prev_clip, Set.Camera[2], sizeof(Cam.clip_to_prev_clip));
			FMemory::Memcpy(Cam.prev_clip_to_clip, Set.Camera[3], sizeof(Cam.prev_clip_to_clip));
			FMemory::Memcpy(Cam.world_to_view, Set.Camera[4], sizeof(Cam.world_to_view));
			FMemory::Memcpy(Cam.position, Set.Position, sizeof(Cam.position));
			FMemory::Memcpy(Cam.up, Set.Up, sizeof(Cam.up));
			FMemory::Memcpy(Cam.right, Set.Right, sizeof(Cam.right));
			FMemory::Memcpy(Cam.forward, Set.Forward, sizeof(Cam.forward));
			Cam.near_plane = Set.Near;
			Cam.far_plane = INFINITY;
			Cam.fov_y = Set.FovY;
			Cam.aspect = Set.Aspect;
			Cam.mv_scale[0] = Cam.mv_scale[1] = 1.0;
			Cam.depth_inverted = 1;
			Cam.depth_infinite = 1;
			Cam.camera_motion_included = 1;
			Cam.reset = Set.bReset ? 1 : 0;
			Cam.render_width = Cam.output_width = static_cast<uint32_t>(Set.Size.X);
			Cam.render_height = Cam.output_height = static_cast<uint32_t>(Set.Size.Y);
			nrb_frame_set_camera(Client, &Cam);
			nrb_frame_submit(Client);  // returns at once; the client's I/O thread sends it
		}
		Set.bInUse = false;
	}
}

void FNeuralSceneViewExtension::SubscribeToPostProcessingPass(EPostProcessingPass Pass,
	FAfterPassCallbackDelegateArray& InOutPassCallbacks, bool bIsPassEnabled)
{
	if (Pass == EPostProcessingPass::Tonemap)
	{
		InOutPassCallbacks.Add(FAfterPassCallbackDelegate::CreateRaw(this, &FNeuralSceneViewExtension::PostTonemap_RenderThread));
	}
}

FScreenPassTexture FNeuralSceneViewExtension::PostTonemap_RenderThread(FRDGBuilder& GraphBuilder, const FSceneView& View,
	const FPostProcessMaterialInputs& Inputs)
{
	const FScreenPassTexture SceneColor =
		FScreenPassTexture::CopyFromSlice(GraphBuilder, Inputs.GetInput(EPostProcessMaterialInput::SceneColor));
	nrb_client* Client = Module->GetClient();
	nrb_result Result;
	FMemory::Memzero(Result);
	Result.struct_size = sizeof(Result);
	Result.struct_version = NRB_RESULT_VERSION;
	if (Client == nullptr || nrb_acquire_result(Client, &Result) != NRB_OK)
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
	if (!NeuralTexture.IsValid() || NeuralTexture->GetSizeXY() != Size)
	{
		const FRHITextureCreateDesc Desc =
			FRHITextureCreateDesc::Create2D(TEXT("NeuralRenderBridge.Frame"), Size.X, Size.Y, PF_R8G8B8A8)
				.SetFlags(ETextureCreateFlags::ShaderResource | ETextureCreateFlags::SRGB);
		NeuralTexture = RHICreateTexture(Desc);
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
	AddDrawTexturePass(GraphBuilder, View, FScreenPassTexture(Neural), Output);
	return FScreenPassTexture(Output);
}
