#include "NeuralRenderingBlueprintLibrary.h"

#include "Components/PrimitiveComponent.h"

#include "NeuralRenderBridgeModule.h"
#include "NeuralRenderingCVars.h"
#include "NrbGlue.h"
#include "nrb/nrb.h"

namespace
{
nrb_client* Client()
{
	return FNeuralRenderBridgeModule::IsAvailable() ? FNeuralRenderBridgeModule::Get().GetClient() : nullptr;
}

nrb_scope ToScope(ENeuralStyleScope Scope)
{
	switch (Scope)
	{
	case ENeuralStyleScope::Material: return NRB_SCOPE_MATERIAL;
	case ENeuralStyleScope::Object: return NRB_SCOPE_OBJECT;
	default: return NRB_SCOPE_GLOBAL;
	}
}

/** The params as UTF-8 pairs for nrbglue::FireStringMapEvent (libnrb's typed params encode them). */
std::vector<std::pair<std::string, std::string>> Utf8Pairs(const TMap<FString, FString>& Params)
{
	std::vector<std::pair<std::string, std::string>> Pairs;
	for (const TPair<FString, FString>& Pair : Params)
	{
		const FTCHARToUTF8 Key(*Pair.Key);
		const FTCHARToUTF8 Value(*Pair.Value);
		Pairs.emplace_back(std::string(Key.Get(), Key.Length()), std::string(Value.Get(), Value.Length()));
	}
	return Pairs;
}
}  // namespace

void UNeuralRenderingBlueprintLibrary::SetNeuralRenderingEnabled(bool bEnabled)
{
	CVarNeuralRenderingEnable->Set(bEnabled ? 1 : 0, ECVF_SetByCode);
	if (Client() != nullptr)
	{
		// nrb_set_enabled now (the next frame, not the next console variable sink); turning it on also retries a
		// session the renderer refused (nrbglue::RetryIfRefused, nrb_client_retry)
		FNeuralRenderBridgeModule::Get().SetEnabled(bEnabled);
	}
}

bool UNeuralRenderingBlueprintLibrary::IsNeuralRenderingEnabled()
{
	int Enabled = 0;
	nrb_client* C = Client();
	return C != nullptr && nrb_get_enabled(C, &Enabled) == NRB_OK && Enabled != 0;
}

bool UNeuralRenderingBlueprintLibrary::SetNeuralStyle(FName Style, float Strength, float OverSeconds,
	ENeuralStyleScope Scope, const TArray<int32>& Ids)
{
	nrb_client* C = Client();
	if (C == nullptr)
	{
		return false;
	}
	TArray<uint32> IdList;
	for (int32 Id : Ids)
	{
		IdList.Add(static_cast<uint32>(Id));
	}
	const nrb_target Target{ToScope(Scope), IdList.GetData(), static_cast<uint32_t>(IdList.Num())};
	const FTCHARToUTF8 Name(*Style.ToString());
	return nrb_set_style(C, Name.Get(), Strength, OverSeconds, &Target) == NRB_OK;
}

bool UNeuralRenderingBlueprintLibrary::FireNeuralStyleEvent(FName EventName, const TMap<FString, FString>& Params,
	ENeuralStyleScope Scope, const TArray<int32>& Ids)
{
	nrb_client* C = Client();
	if (C == nullptr)
	{
		return false;
	}
	TArray<uint32> IdList;
	for (int32 Id : Ids)
	{
		IdList.Add(static_cast<uint32>(Id));
	}
	const nrb_target Target{ToScope(Scope), IdList.GetData(), static_cast<uint32_t>(IdList.Num())};
	const FTCHARToUTF8 Name(*EventName.ToString());
	return nrbglue::FireStringMapEvent(C, Name.Get(), Utf8Pairs(Params), &Target) == NRB_OK;
}

bool UNeuralRenderingBlueprintLibrary::DefineNeuralStyle(FName Style, const TMap<FString, float>& Scalars,
	const TMap<FString, FLinearColor>& Colors, const TMap<FString, FString>& Names, float Strength, float OverSeconds,
	ENeuralStyleScope Scope, const TArray<int32>& Ids)
{
	nrb_client* C = Client();
	if (C == nullptr)
	{
		return false;
	}
	std::vector<std::pair<std::string, double>> ScalarList;
	for (const TPair<FString, float>& Pair : Scalars)
	{
		ScalarList.emplace_back(std::string(TCHAR_TO_UTF8(*Pair.Key)), static_cast<double>(Pair.Value));
	}
	std::vector<std::pair<std::string, std::array<double, 3>>> ColorList;
	for (const TPair<FString, FLinearColor>& Pair : Colors)
	{
		ColorList.emplace_back(std::string(TCHAR_TO_UTF8(*Pair.Key)),
			std::array<double, 3>{Pair.Value.R, Pair.Value.G, Pair.Value.B});
	}
	std::vector<std::pair<std::string, std::string>> NameList = Utf8Pairs(Names);
	TArray<uint32> IdList;
	for (int32 Id : Ids)
	{
		IdList.Add(static_cast<uint32>(Id));
	}
	const nrb_target Target{ToScope(Scope), IdList.GetData(), static_cast<uint32_t>(IdList.Num())};
	const FTCHARToUTF8 Name(*Style.ToString());
	return nrbglue::SetStyleParams(C, Name.Get(), ScalarList, ColorList, NameList, Strength, OverSeconds, &Target) ==
		NRB_OK;
}

bool UNeuralRenderingBlueprintLibrary::SetNeuralIntensity(float Intensity, float OverSeconds)
{
	const double Value = nrbglue::ClampIntensity(Intensity);
	// the console variable keeps the player's setting; the module's sink sees it already applied
	FNeuralRenderBridgeModule::Get().NoteIntensity(Value);
	CVarNeuralRenderingIntensity->Set(static_cast<float>(Value), ECVF_SetByCode);
	nrb_client* C = Client();
	return C != nullptr && nrb_set_intensity(C, Value, FMath::Max(0.0f, OverSeconds)) == NRB_OK;
}

bool UNeuralRenderingBlueprintLibrary::ExcludeFromNeuralRendering(ENeuralStyleScope Scope, const TArray<int32>& Ids,
	bool bExcluded)
{
	nrb_client* C = Client();
	if (C == nullptr)
	{
		return false;
	}
	TArray<uint32> IdList;
	for (int32 Id : Ids)
	{
		IdList.Add(static_cast<uint32>(Id));
	}
	const nrb_target Target{ToScope(Scope), IdList.GetData(), static_cast<uint32_t>(IdList.Num())};
	return nrb_exclude(C, &Target, bExcluded ? 1 : 0) == NRB_OK;
}

FNeuralRenderingStats UNeuralRenderingBlueprintLibrary::GetNeuralRenderingStats()
{
	FNeuralRenderingStats Out;
	const nrbglue::FStatsView Stats = nrbglue::ReadStats(Client());  // nrb_get_stats
	Out.State = UTF8_TO_TCHAR(Stats.State.c_str());
	if (Stats.bValid)
	{
		Out.FramesSubmitted = static_cast<int64>(Stats.Raw.frames_submitted);
		Out.FramesSent = static_cast<int64>(Stats.Raw.frames_sent);
		Out.ResultsReceived = static_cast<int64>(Stats.Raw.results_received);
		Out.Fallbacks = static_cast<int64>(Stats.Raw.fallbacks);
		Out.Reconnects = static_cast<int64>(Stats.Raw.reconnects);
		Out.RoundTripP50Ms = static_cast<float>(Stats.Raw.rtt_p50_ms);
		Out.RoundTripP95Ms = static_cast<float>(Stats.Raw.rtt_p95_ms);
		Out.RoundTripP99Ms = static_cast<float>(Stats.Raw.rtt_p99_ms);
		Out.FramesInFlightLimit = static_cast<int32>(Stats.Raw.in_flight_limit);
		Out.RendererMs = static_cast<float>(Stats.Raw.service_ms);
		Out.LinkMs = static_cast<float>(Stats.Raw.link_ms);
		Out.bConnected = Stats.Raw.state == NRB_STATE_CONNECTED;
		Out.bRefused = Stats.bRefused;
		Out.RefusalCode = Stats.RefusalCode;
		Out.RefusalMessage = UTF8_TO_TCHAR(Stats.RefusalMessage.c_str());
	}
	return Out;
}

void UNeuralRenderingBlueprintLibrary::SetNeuralObjectId(UPrimitiveComponent* Component, int32 ObjectId,
	int32 MaterialId)
{
	if (Component == nullptr || ObjectId < 1 || ObjectId > 255)
	{
		return;
	}
	Component->SetRenderCustomDepth(true);
	Component->SetCustomDepthStencilValue(ObjectId);
	FNeuralRenderBridgeModule::Get().SetMaterialOfObject(ObjectId, MaterialId);
}
