#include "NeuralRenderBridgeModule.h"

#include "Interfaces/IPluginManager.h"
#include "Misc/CoreDelegates.h"
#include "Misc/EngineVersion.h"
#include "Misc/Paths.h"
#include "SceneViewExtension.h"
#include "ShaderCore.h"

#include "NeuralRenderingCVars.h"
#include "NeuralRenderingSettings.h"
#include "NeuralSceneViewExtension.h"
#include "nrb/nrb.h"

DEFINE_LOG_CATEGORY_STATIC(LogNeuralRendering, Log, All);

namespace
{
void LogFromNrb(void* /*User*/, nrb_log_level Level, const char* Message)
{
	const FString Text = UTF8_TO_TCHAR(Message);
	if (Level >= NRB_LOG_ERROR)
	{
		UE_LOG(LogNeuralRendering, Error, TEXT("%s"), *Text);
	}
	else if (Level >= NRB_LOG_WARNING)
	{
		UE_LOG(LogNeuralRendering, Warning, TEXT("%s"), *Text);
	}
	else
	{
		UE_LOG(LogNeuralRendering, Verbose, TEXT("%s"), *Text);
	}
}
}  // namespace

void FNeuralRenderBridgeModule::StartupModule()
{
	// Our compute shader (Shaders/Private/NrbPack.usf) lives under /Plugin/NeuralRenderBridge.
	const TSharedPtr<IPlugin> Plugin = IPluginManager::Get().FindPlugin(TEXT("NeuralRenderBridge"));
	if (Plugin.IsValid())
	{
		AddShaderSourceDirectoryMapping(TEXT("/Plugin/NeuralRenderBridge"),
			FPaths::Combine(Plugin->GetBaseDir(), TEXT("Shaders")));
	}
	MaterialOfObject.SetNumZeroed(256);
	PostEngineInitHandle = FCoreDelegates::OnPostEngineInit.AddRaw(this, &FNeuralRenderBridgeModule::OnPostEngineInit);
}

void FNeuralRenderBridgeModule::OnPostEngineInit()
{
	GetDefault<UNeuralRenderingSettings>()->ApplyToConsoleVariables();
	RecreateClient();
	ViewExtension = FSceneViewExtensions::NewExtension<FNeuralSceneViewExtension>(this);
	CVarSinkHandle = IConsoleManager::Get().RegisterConsoleVariableSink_Handle(
		FConsoleCommandDelegate::CreateRaw(this, &FNeuralRenderBridgeModule::OnCVarsChanged));
}

void FNeuralRenderBridgeModule::RecreateClient()
{
	const FString Endpoint = CVarNeuralRenderingEndpoint.GetValueOnGameThread();
	const float DeadlineMs = CVarNeuralRenderingDeadlineMs.GetValueOnGameThread();
	const bool bEnabled = CVarNeuralRenderingEnable.GetValueOnGameThread() != 0;
	if (Client)
	{
		FlushRenderingCommands();  // the render thread must not use the old client any more
		nrb_client_destroy(Client);
		Client = nullptr;
	}
	const FTCHARToUTF8 EndpointUtf8(*Endpoint);
	const FTCHARToUTF8 VersionUtf8(*FEngineVersion::Current().ToString());
	const FIntPoint Size = FNeuralSceneViewExtension::DefaultRenderSize();
	const nrb_buffer_spec Buffers[] = {
		{"albedo", NRB_FORMAT_RGBA8_SRGB},  {"normals", NRB_FORMAT_RGBA16F},  {"depth", NRB_FORMAT_R32F},
		{"linear_depth", NRB_FORMAT_R32F},  {"motion_vectors", NRB_FORMAT_RG16F}, {"roughness", NRB_FORMAT_R8},
		{"metallic", NRB_FORMAT_R8},        {"emissive", NRB_FORMAT_RGBA16F}, {"object_id", NRB_FORMAT_R16U},
		{"material_id", NRB_FORMAT_R16U},
	};
	nrb_client_config Config;
	nrb_client_config_init(&Config);
	Config.endpoint = EndpointUtf8.Get();
	Config.deadline_ms = DeadlineMs;
	Config.frames_in_flight = 2;
	Config.engine_name = "unreal";
	Config.engine_version = VersionUtf8.Get();
	Config.render_width = static_cast<uint32_t>(Size.X);
	Config.render_height = static_cast<uint32_t>(Size.Y);
	Config.buffers = Buffers;
	Config.buffer_count = UE_ARRAY_COUNT(Buffers);
	Config.start_disabled = bEnabled ? 0u : 1u;
	Config.log_fn = &LogFromNrb;
	Config.log_level = NRB_LOG_WARNING;
	const nrb_status Status = nrb_client_create(&Config, &Client);
	if (Status != NRB_OK)
	{
		UE_LOG(LogNeuralRendering, Error, TEXT("nrb_client_create failed (%s): %s"), UTF8_TO_TCHAR(nrb_status_name(Status)),
			UTF8_TO_TCHAR(nrb_last_error(nullptr)));
		Client = nullptr;
	}
	ClientEndpoint = Endpoint;
	ClientDeadlineMs = DeadlineMs;
}

void FNeuralRenderBridgeModule::OnCVarsChanged()
{
	if (CVarNeuralRenderingEndpoint.GetValueOnGameThread() != ClientEndpoint ||
		CVarNeuralRenderingDeadlineMs.GetValueOnGameThread() != ClientDeadlineMs)
	{
		RecreateClient();
	}
	else if (Client)
	{
		nrb_set_enabled(Client, CVarNeuralRenderingEnable.GetValueOnGameThread() != 0 ? 1 : 0);
	}
}

void FNeuralRenderBridgeModule::SetMaterialOfObject(int32 ObjectId, int32 MaterialId)
{
	FScopeLock Lock(&MaterialLock);
	if (MaterialOfObject.IsValidIndex(ObjectId))
	{
		MaterialOfObject[ObjectId] = static_cast<uint32>(FMath::Clamp(MaterialId, 0, 65535));
	}
}

void FNeuralRenderBridgeModule::GetMaterialTable(TArray<uint32>& Out) const
{
	FScopeLock Lock(&MaterialLock);
	Out = MaterialOfObject;
}

void FNeuralRenderBridgeModule::ShutdownModule()
{
	FCoreDelegates::OnPostEngineInit.Remove(PostEngineInitHandle);
	if (CVarSinkHandle.IsValid())
	{
		IConsoleManager::Get().UnregisterConsoleVariableSink_Handle(CVarSinkHandle);
	}
	ViewExtension.Reset();
	if (Client)
	{
		nrb_client_destroy(Client);
		Client = nullptr;
	}
}

IMPLEMENT_MODULE(FNeuralRenderBridgeModule, NeuralRenderBridge)
