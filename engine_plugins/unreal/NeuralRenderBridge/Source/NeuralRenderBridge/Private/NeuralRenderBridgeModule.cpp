#include "NeuralRenderBridgeModule.h"

#include "HAL/PlatformMisc.h"
#include "Interfaces/IPluginManager.h"
#include "Misc/CoreDelegates.h"
#include "Misc/EngineVersion.h"
#include "Misc/Paths.h"
#include "SceneViewExtension.h"
#include "ShaderCore.h"

#include "NeuralRenderingCVars.h"
#include "NeuralRenderingSettings.h"
#include "NeuralRenderingUserSettings.h"
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

/** Where each CurveZMQ key of nrb_client_config comes from, in the order of ClientCurveKeys. */
struct FCurveKeySource
{
	TAutoConsoleVariable<FString>* CVar;
	const TCHAR* CVarName;
	const TCHAR* Environment;  // read when the console variable is empty: keys kept out of every ini file
};
const FCurveKeySource GCurveKeySources[3] = {
	{&CVarNeuralRenderingCurveServerPublicKey, TEXT("r.NeuralRendering.CurveServerPublicKey"),
		TEXT("NRB_CURVE_SERVER_PUBLIC_KEY")},
	{&CVarNeuralRenderingCurveClientPublicKey, TEXT("r.NeuralRendering.CurveClientPublicKey"),
		TEXT("NRB_CURVE_CLIENT_PUBLIC_KEY")},
	{&CVarNeuralRenderingCurveClientSecretKey, TEXT("r.NeuralRendering.CurveClientSecretKey"),
		TEXT("NRB_CURVE_CLIENT_SECRET_KEY")},
};

void ReadCurveKeys(FString (&Keys)[3])
{
	for (int32 Index = 0; Index < 3; ++Index)
	{
		Keys[Index] = GCurveKeySources[Index].CVar->GetValueOnGameThread().TrimStartAndEnd();
		if (Keys[Index].IsEmpty())
		{
			Keys[Index] = FPlatformMisc::GetEnvironmentVariable(GCurveKeySources[Index].Environment).TrimStartAndEnd();
		}
	}
}

/** A CurveZMQ key as libzmq takes it: 40 characters of the Z85 alphabet (ZeroMQ RFC 32). libnrb checks only the
 * length; a key with a stray quote would otherwise fail later, in libnrb's I/O thread, on every reconnect. */
bool IsZ85Key(const FString& Key)
{
	static const TCHAR* const Z85 =
		TEXT("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#");
	if (Key.Len() != 40)
	{
		return false;
	}
	for (const TCHAR Char : Key)
	{
		if (Char == 0 || FCString::Strchr(Z85, Char) == nullptr)
		{
			return false;
		}
	}
	return true;
}

/** Why the keys cannot be used (naming the setting at fault, never showing a key: it may be the secret one), or an
 * empty string when they can: all three valid, or none. */
FString CurveKeysProblem(const FString (&Keys)[3])
{
	if (Keys[0].IsEmpty() && Keys[1].IsEmpty() && Keys[2].IsEmpty())
	{
		return FString();
	}
	for (int32 Index = 0; Index < 3; ++Index)
	{
		if (Keys[Index].IsEmpty())
		{
			return FString::Printf(TEXT("%s (or %s) is empty; CurveZMQ needs all three keys or none"),
				GCurveKeySources[Index].CVarName, GCurveKeySources[Index].Environment);
		}
		if (!IsZ85Key(Keys[Index]))
		{
			return FString::Printf(
				TEXT("%s is not a CurveZMQ key (40 characters of Z85 text, as `nrb keys show` prints it; this one ")
				TEXT("has %d characters)"), GCurveKeySources[Index].CVarName, Keys[Index].Len());
		}
	}
	return FString();
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
	GetDefault<UNeuralRenderingUserSettings>()->ApplyToConsoleVariables();
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
	FString CurveKeys[3];
	ReadCurveKeys(CurveKeys);
	if (Client)
	{
		FlushRenderingCommands();  // the render thread must not use the old client any more
		nrb_client_destroy(Client);
		Client = nullptr;
	}
	ClientEndpoint = Endpoint;
	ClientDeadlineMs = DeadlineMs;
	for (int32 Index = 0; Index < 3; ++Index)
	{
		ClientCurveKeys[Index] = CurveKeys[Index];
	}
	const FString CurveProblem = CurveKeysProblem(CurveKeys);
	if (!CurveProblem.IsEmpty())
	{
		UE_LOG(LogNeuralRendering, Error, TEXT("CurveZMQ: %s. No neural rendering until the keys are fixed."),
			*CurveProblem);
		return;
	}
	const FTCHARToUTF8 EndpointUtf8(*Endpoint);
	const FTCHARToUTF8 VersionUtf8(*FEngineVersion::Current().ToString());
	const FTCHARToUTF8 CurveServerPublicKeyUtf8(*CurveKeys[0]);
	const FTCHARToUTF8 CurveClientPublicKeyUtf8(*CurveKeys[1]);
	const FTCHARToUTF8 CurveClientSecretKeyUtf8(*CurveKeys[2]);
	const FIntPoint Size = FNeuralSceneViewExtension::DefaultRenderSize();
	const nrb_buffer_spec Buffers[] = {
		{"albedo", NRB_FORMAT_RGBA8_SRGB},  {"normals", NRB_FORMAT_RGBA16F},  {"depth", NRB_FORMAT_R32F},
		{"linear_depth", NRB_FORMAT_R32F},  {"motion_vectors", NRB_FORMAT_RG16F}, {"roughness", NRB_FORMAT_R8},
		{"metallic", NRB_FORMAT_R8},        {"emissive", NRB_FORMAT_RGBA16F}, {"object_id", NRB_FORMAT_R16U},
		{"material_id", NRB_FORMAT_R16U},   {"x_sun_direction", NRB_FORMAT_RGBA32F},
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
	if (!CurveKeys[0].IsEmpty())  // checked above: all three keys or none
	{
		Config.curve_server_public_key = CurveServerPublicKeyUtf8.Get();
		Config.curve_client_public_key = CurveClientPublicKeyUtf8.Get();
		Config.curve_client_secret_key = CurveClientSecretKeyUtf8.Get();
	}
	const nrb_status Status = nrb_client_create(&Config, &Client);
	if (Status != NRB_OK)
	{
		UE_LOG(LogNeuralRendering, Error, TEXT("nrb_client_create failed (%s): %s"), UTF8_TO_TCHAR(nrb_status_name(Status)),
			UTF8_TO_TCHAR(nrb_last_error(nullptr)));
		Client = nullptr;
	}
}

void FNeuralRenderBridgeModule::OnCVarsChanged()
{
	FString CurveKeys[3];
	ReadCurveKeys(CurveKeys);
	bool bCurveKeysChanged = false;
	for (int32 Index = 0; Index < 3; ++Index)
	{
		// Z85 is case-sensitive, FString's != is not
		bCurveKeysChanged |= !CurveKeys[Index].Equals(ClientCurveKeys[Index], ESearchCase::CaseSensitive);
	}
	if (CVarNeuralRenderingEndpoint.GetValueOnGameThread() != ClientEndpoint ||
		CVarNeuralRenderingDeadlineMs.GetValueOnGameThread() != ClientDeadlineMs || bCurveKeysChanged)
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
