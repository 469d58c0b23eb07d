#include "NeuralRenderingBlueprintLibrary.h"

#include "Components/PrimitiveComponent.h"

#include "NeuralRenderBridgeModule.h"
#include "NeuralRenderingCVars.h"
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

// msgpack (docs/protocol.md section 3.1): a map of str -> str, shortest forms.
void PutLength(TArray<uint8>& Out, uint32 Length, uint8 Fix, uint32 FixLimit, uint8 Code8, uint8 Code16, uint8 Code32)
{
	if (Length < FixLimit)
	{
		Out.Add(static_cast<uint8>(Fix | Length));
	}
	else if (Code8 != 0 && Length < 256)
	{
		Out.Add(Code8);
		Out.Add(static_cast<uint8>(Length));
	}
	else if (Length < 65536)
	{
		Out.Add(Code16);
		Out.Add(static_cast<uint8>(Length >> 8));
		Out.Add(static_cast<uint8>(Length));
	}
	else
	{
		Out.Add(Code32);
		for (int32 Shift = 24; Shift >= 0; Shift -= 8)
		{
			Out.Add(static_cast<uint8>(Length >> Shift));
		}
	}
}

void PutString(TArray<uint8>& Out, const FString& Text)
{
	const FTCHARToUTF8 Utf8(*Text);
	PutLength(Out, static_cast<uint32>(Utf8.Length()), 0xa0, 32, 0xd9, 0xda, 0xdb);
	Out.Append(reinterpret_cast<const uint8*>(Utf8.Get()), Utf8.Length());
}

TArray<uint8> EncodeParams(const TMap<FString, FString>& Params)
{
	TArray<uint8> Out;
	PutLength(Out, static_cast<uint32>(Params.Num()), 0x80, 16, 0, 0xde, 0xdf);
	for (const TPair<FString, FString>& Pair : Params)
	{
		PutString(Out, Pair.Key);
		PutString(Out, Pair.Value);
	}
	return Out;
}
}  // namespace

void UNeuralRenderingBlueprintLibrary::SetNeuralRenderingEnabled(bool bEnabled)
{
	CVarNeuralRenderingEnable->Set(bEnabled ? 1 : 0, ECVF_SetByCode);
	if (nrb_client* C = Client())
	{
		nrb_set_enabled(C, bEnabled ? 1 : 0);  // takes effect on the next frame, not at the next CVar sink
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
	const TArray<uint8> Packed = EncodeParams(Params);
	const FTCHARToUTF8 Name(*EventName.ToString());
	return nrb_fire_event(C, Name.Get(), Packed.GetData(), Packed.Num(), &Target) == NRB_OK;
}

FNeuralRenderingStats UNeuralRenderingBlueprintLibrary::GetNeuralRenderingStats()
{
	FNeuralRenderingStats Out;
	nrb_stats Stats;
	FMemory::Memzero(Stats);
	Stats.struct_size = sizeof(Stats);
	Stats.struct_version = NRB_STATS_VERSION;
	nrb_client* C = Client();
	if (C != nullptr && nrb_get_stats(C, &Stats) == NRB_OK)
	{
		Out.FramesSubmitted = static_cast<int64>(Stats.frames_submitted);
		Out.FramesSent = static_cast<int64>(Stats.frames_sent);
		Out.ResultsReceived = static_cast<int64>(Stats.results_received);
		Out.Fallbacks = static_cast<int64>(Stats.fallbacks);
		Out.Reconnects = static_cast<int64>(Stats.reconnects);
		Out.RoundTripP50Ms = static_cast<float>(Stats.rtt_p50_ms);
		Out.RoundTripP95Ms = static_cast<float>(Stats.rtt_p95_ms);
		Out.bConnected = Stats.state == NRB_STATE_CONNECTED;
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
