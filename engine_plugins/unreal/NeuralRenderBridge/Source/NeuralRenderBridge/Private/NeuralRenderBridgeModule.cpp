#include "NeuralRenderBridgeModule.h"

#include "Engine/Engine.h"
#include "HAL/IConsoleManager.h"
#include "HAL/PlatformMisc.h"
#include "HAL/PlatformProcess.h"
#include "Interfaces/IPluginManager.h"
#include "Misc/CoreDelegates.h"
#include "Misc/EngineVersion.h"
#include "Misc/Paths.h"
#include "RenderingThread.h"
#include "SceneViewExtension.h"
#include "ShaderCore.h"

#include "NeuralRenderingCVars.h"
#include "NeuralRenderingLog.h"
#include "NeuralRenderingSettings.h"
#include "NeuralRenderingUserSettings.h"
#include "NeuralSceneViewExtension.h"
#include "NrbGlue.h"
#include "nrb/nrb.h"

DEFINE_LOG_CATEGORY(LogNeuralRendering);

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
// The same sources for the engine-independent checks, which name them in their messages.
const nrbglue::FKeySource GGlueKeySources[3] = {
	{"r.NeuralRendering.CurveServerPublicKey", "NRB_CURVE_SERVER_PUBLIC_KEY"},
	{"r.NeuralRendering.CurveClientPublicKey", "NRB_CURVE_CLIENT_PUBLIC_KEY"},
	{"r.NeuralRendering.CurveClientSecretKey", "NRB_CURVE_CLIENT_SECRET_KEY"},
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

std::string ToUtf8(const FString& Text)
{
	const FTCHARToUTF8 Utf8(*Text);
	return std::string(Utf8.Get(), Utf8.Length());
}

/** Object ids reach the pack pass only if custom depth/stencil is rendered before the base pass; by default (2) it
 * is rendered after it unless DBuffer decals are on. Says so once at startup instead of sending empty ids. */
void WarnIfCustomStencilIsLate()
{
	IConsoleManager& Console = IConsoleManager::Get();
	const IConsoleVariable* CustomDepth = Console.FindConsoleVariable(TEXT("r.CustomDepth"));
	const IConsoleVariable* Order = Console.FindConsoleVariable(TEXT("r.CustomDepth.Order"));
	const IConsoleVariable* DBuffer = Console.FindConsoleVariable(TEXT("r.DBuffer"));
	if (CustomDepth != nullptr && CustomDepth->GetInt() != 3)
	{
		UE_LOG(LogNeuralRendering, Warning,
			TEXT("r.CustomDepth is %d: object ids need 3 (Project Settings > Rendering > Postprocessing > Custom ")
			TEXT("Depth-Stencil Pass = Enabled with Stencil)."), CustomDepth->GetInt());
	}
	const int32 OrderValue = Order != nullptr ? Order->GetInt() : 2;
	const bool bDBuffer = DBuffer != nullptr && DBuffer->GetInt() != 0;
	if (OrderValue == 1 || (OrderValue == 2 && !bDBuffer))
	{
		UE_LOG(LogNeuralRendering, Warning,
			TEXT("r.CustomDepth.Order is %d%s: custom stencil is rendered after the base pass, so the object_id and ")
			TEXT("material_id buffers are empty. Set r.CustomDepth.Order=0 ([/Script/Engine.RendererSettings] in ")
			TEXT("Config/DefaultEngine.ini)."), OrderValue, bDBuffer ? TEXT("") : TEXT(" without DBuffer decals"));
	}
}
}  // namespace

bool FNeuralRenderBridgeModule::LoadLibnrb()
{
#if PLATFORM_WINDOWS
	// nrb.dll is delay-loaded (NrbLibrary.Build.cs): the first call into it would look for it next to the executable
	// and crash. Load it from the plugin's Binaries folder first, as Epic's ThirdPartyLibrary template does; with the
	// folder pushed, its imports (libzmq, lz4, zstd, staged beside it) resolve from there too.
	const TSharedPtr<IPlugin> Plugin = IPluginManager::Get().FindPlugin(TEXT("NeuralRenderBridge"));
	if (!Plugin.IsValid())
	{
		UE_LOG(LogNeuralRendering, Error, TEXT("The NeuralRenderBridge plugin is not known to the plugin manager."));
		return false;
	}
	const FString Dir = FPaths::Combine(Plugin->GetBaseDir(), TEXT("Binaries/ThirdParty/NrbLibrary/Win64"));
	const FString Path = FPaths::Combine(Dir, TEXT("nrb.dll"));
	FPlatformProcess::PushDllDirectory(*Dir);
	LibnrbHandle = FPlatformProcess::GetDllHandle(*Path);
	FPlatformProcess::PopDllDirectory(*Dir);
	if (LibnrbHandle == nullptr)
	{
		UE_LOG(LogNeuralRendering, Error,
			TEXT("Could not load %s (or the libzmq, lz4 and zstd DLLs beside it): no neural rendering. See the ")
			TEXT("plugin's README, step 2."), *Path);
		return false;
	}
	return true;
#else
	// Linux and Mac link libnrb directly (staged beside the module by NrbLibrary.Build.cs).
	return true;
#endif
}

void FNeuralRenderBridgeModule::StartupModule()
{
	// Our shaders (Shaders/Private/*.usf) live under /Plugin/NeuralRenderBridge.
	const TSharedPtr<IPlugin> Plugin = IPluginManager::Get().FindPlugin(TEXT("NeuralRenderBridge"));
	if (Plugin.IsValid())
	{
		AddShaderSourceDirectoryMapping(TEXT("/Plugin/NeuralRenderBridge"),
			FPaths::Combine(Plugin->GetBaseDir(), TEXT("Shaders")));
	}
	bLibnrbLoaded = LoadLibnrb();
	MaterialOfObject.SetNumZeroed(256);
	PostEngineInitHandle = FCoreDelegates::OnPostEngineInit.AddRaw(this, &FNeuralRenderBridgeModule::OnPostEngineInit);
}

void FNeuralRenderBridgeModule::OnPostEngineInit()
{
	// The settings' class default objects apply their saved ini keys to the console variables when they are created
	// (UDeveloperSettingsBackedByCVars + ApplyCVarSettingsFromIni, editor and packaged game alike): make sure both
	// exist before the client reads the console variables.
	GetDefault<UNeuralRenderingSettings>();
	GetDefault<UNeuralRenderingUserSettings>();
	WarnIfCustomStencilIsLate();
	RecreateClient();
	ViewExtension = FSceneViewExtensions::NewExtension<FNeuralSceneViewExtension>(this);
	CVarSinkHandle = IConsoleManager::Get().RegisterConsoleVariableSink_Handle(
		FConsoleCommandDelegate::CreateRaw(this, &FNeuralRenderBridgeModule::OnCVarsChanged));
	StatsTickerHandle = FTSTicker::GetCoreTicker().AddTicker(
		FTickerDelegate::CreateRaw(this, &FNeuralRenderBridgeModule::TickStats), 0.25f);
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
		FlushRenderingCommands();  // the render thread must not use the old client any more ...
		if (ViewExtension.IsValid())
		{
			ViewExtension->WaitForSubmissions();  // ... nor the worker that copies its frames
		}
		nrb_client_destroy(Client);
		Client = nullptr;
	}
	ClientEndpoint = Endpoint;
	ClientDeadlineMs = DeadlineMs;
	bClientEnabled = bEnabled;
	LastRefusal.Reset();
	for (int32 Index = 0; Index < 3; ++Index)
	{
		ClientCurveKeys[Index] = CurveKeys[Index];
	}
	if (!bLibnrbLoaded)
	{
		return;  // logged at startup
	}
	nrbglue::FClientSettings Settings;
	for (int32 Index = 0; Index < 3; ++Index)
	{
		Settings.CurveKeys[Index] = ToUtf8(CurveKeys[Index]);
	}
	const std::string CurveProblem = nrbglue::CurveKeysProblem(Settings.CurveKeys, GGlueKeySources);
	if (!CurveProblem.empty())
	{
		UE_LOG(LogNeuralRendering, Error, TEXT("CurveZMQ: %s. No neural rendering until the keys are fixed."),
			UTF8_TO_TCHAR(CurveProblem.c_str()));
		return;
	}
	const FIntPoint Size = FNeuralSceneViewExtension::DefaultRenderSize();
	Settings.Endpoint = ToUtf8(Endpoint);
	Settings.DeadlineMs = DeadlineMs;
	Settings.bEnabled = bEnabled;
	Settings.EngineVersion = ToUtf8(FEngineVersion::Current().ToString());
	// The image wanted back; the render size is libnrb's default for the link (nrb.h nrb_link): the same size on this
	// host, half of it on a remote link (the renderer upscales 2x). libnrb resamples what the pack pass tags to it and
	// sends the compact formats there, so this plugin encodes nothing for a remote renderer.
	Settings.RenderWidth = 0;
	Settings.RenderHeight = 0;
	Settings.OutputWidth = static_cast<uint32_t>(Size.X);
	Settings.OutputHeight = static_cast<uint32_t>(Size.Y);
	Settings.LogFn = &LogFromNrb;
	Settings.LogLevel = NRB_LOG_WARNING;
	const nrbglue::FClientConfig Config(Settings);
	const nrb_status Status = nrb_client_create(&Config.Get(), &Client);
	if (Status != NRB_OK)
	{
		UE_LOG(LogNeuralRendering, Error, TEXT("nrb_client_create failed (%s): %s"), UTF8_TO_TCHAR(nrb_status_name(Status)),
			UTF8_TO_TCHAR(nrb_last_error(nullptr)));
		Client = nullptr;
		return;
	}
	nrb_link Link = NRB_LINK_LOCAL;
	uint32_t RenderWidth = 0, RenderHeight = 0;
	if (nrb_client_get_link(Client, &Link, &RenderWidth, &RenderHeight) == NRB_OK)
	{
		UE_LOG(LogNeuralRendering, Log, TEXT("neural renderer at %s: %s link, G-buffers sent at %ux%u"), *Endpoint,
			Link == NRB_LINK_REMOTE ? TEXT("remote") : TEXT("local"), RenderWidth, RenderHeight);
	}
	// the player's intensity setting (a new client's sessions start at 1)
	ClientIntensity = 1.0;
	ApplyIntensity();
}

void FNeuralRenderBridgeModule::NoteIntensity(double Intensity)
{
	ClientIntensity = Intensity;
}

void FNeuralRenderBridgeModule::ApplyIntensity()
{
	const double Intensity = nrbglue::ClampIntensity(CVarNeuralRenderingIntensity.GetValueOnGameThread());
	if (Client != nullptr && Intensity != ClientIntensity && nrb_set_intensity(Client, Intensity, 0.0) == NRB_OK)
	{
		ClientIntensity = Intensity;
	}
}

void FNeuralRenderBridgeModule::SetEnabled(bool bEnabled)
{
	bClientEnabled = bEnabled;
	if (Client == nullptr)
	{
		return;
	}
	nrb_set_enabled(Client, bEnabled ? 1 : 0);  // takes effect on the next frame
	if (bEnabled && nrbglue::RetryIfRefused(Client))
	{
		UE_LOG(LogNeuralRendering, Log, TEXT("Retrying the session the renderer refused."));
		LastRefusal.Reset();
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
		return;
	}
	const bool bEnabled = CVarNeuralRenderingEnable.GetValueOnGameThread() != 0;
	if (bEnabled != bClientEnabled)  // r.NeuralRendering.Enable typed in the console: the same toggle
	{
		SetEnabled(bEnabled);
	}
	ApplyIntensity();  // r.NeuralRendering.Intensity from the console or the settings page
}

bool FNeuralRenderBridgeModule::TickStats(float /*DeltaTime*/)
{
	if (Client == nullptr)
	{
		return true;
	}
	const nrbglue::FStatsView Stats = nrbglue::ReadStats(Client);
	if (Stats.bRefused)
	{
		const FString Refusal = FString::Printf(TEXT("%d: %s"), Stats.RefusalCode, UTF8_TO_TCHAR(Stats.RefusalMessage.c_str()));
		if (Refusal != LastRefusal)  // once per refusal, not every tick
		{
			UE_LOG(LogNeuralRendering, Error,
				TEXT("The renderer refused the session (code %s). The game shows its own image; toggle neural ")
				TEXT("rendering off and on (SetNeuralRenderingEnabled, r.NeuralRendering.Enable) to retry."), *Refusal);
			LastRefusal = Refusal;
		}
	}
	if (GEngine != nullptr && (Stats.bRefused || CVarNeuralRenderingShowStats.GetValueOnGameThread() != 0))
	{
		static const uint64 MessageKey = 0x4e52424272696467ull;  // one line, replaced on each tick
		GEngine->AddOnScreenDebugMessage(MessageKey, 0.5f, Stats.bRefused ? FColor::Red : FColor::Cyan,
			UTF8_TO_TCHAR(nrbglue::StatsLine(Stats).c_str()));
	}
	return true;
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
	FTSTicker::GetCoreTicker().RemoveTicker(StatsTickerHandle);
	if (CVarSinkHandle.IsValid())
	{
		IConsoleManager::Get().UnregisterConsoleVariableSink_Handle(CVarSinkHandle);
	}
	if (ViewExtension.IsValid())
	{
		ViewExtension->ReleaseReadbacks();  // waits for the worker, unlocks the staging memory on the render thread
	}
	ViewExtension.Reset();
	if (Client)
	{
		nrb_client_destroy(Client);
		Client = nullptr;
	}
	if (LibnrbHandle != nullptr)
	{
		FPlatformProcess::FreeDllHandle(LibnrbHandle);
		LibnrbHandle = nullptr;
	}
}

IMPLEMENT_MODULE(FNeuralRenderBridgeModule, NeuralRenderBridge)
