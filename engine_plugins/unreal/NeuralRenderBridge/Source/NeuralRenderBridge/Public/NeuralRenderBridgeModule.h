// Neural Render Bridge runtime module: loads libnrb, owns its client and the scene view extension.
#pragma once

#include "CoreMinimal.h"
#include "Containers/Ticker.h"
#include "Modules/ModuleInterface.h"
#include "Modules/ModuleManager.h"

struct nrb_client;
class FNeuralSceneViewExtension;

class NEURALRENDERBRIDGE_API FNeuralRenderBridgeModule : public IModuleInterface
{
public:
	static FNeuralRenderBridgeModule& Get()
	{
		return FModuleManager::LoadModuleChecked<FNeuralRenderBridgeModule>("NeuralRenderBridge");
	}
	static bool IsAvailable() { return FModuleManager::Get().IsModuleLoaded("NeuralRenderBridge"); }

	virtual void StartupModule() override;
	virtual void ShutdownModule() override;

	/** The libnrb client, or nullptr before the engine finished starting / when libnrb could not be loaded or the
	 * client could not be created. Any thread may call the event, style, enable and stats functions of nrb.h on it. */
	nrb_client* GetClient() const { return Client; }

	/** (Re)creates the client from the console variables (endpoint, deadline, enable, CurveZMQ keys; an empty key
	 * from its NRB_CURVE_* environment variable). Keys that are partial or not Z85 leave no client: the engine renders
	 * on its own rather than connecting without encryption. Game thread. */
	void RecreateClient();

	/** The player's toggle: enables or disables the client and, when it turns rendering back on, retries a session
	 * the renderer refused (libnrb does not retry those by itself). Game thread. */
	void SetEnabled(bool bEnabled);

	/** The intensity the client was last given (SetNeuralIntensity, or r.NeuralRendering.Intensity through the
	 * console variable sink, which applies a changed value with nrb_set_intensity). Game thread. */
	void NoteIntensity(double Intensity);

	/** Object id (custom stencil value, 1..255) -> material id, read by the render thread's pack pass. */
	void SetMaterialOfObject(int32 ObjectId, int32 MaterialId);
	void GetMaterialTable(TArray<uint32>& Out) const;

private:
	bool LoadLibnrb();
	void OnPostEngineInit();
	void OnCVarsChanged();
	/** r.NeuralRendering.Intensity to the client (nrb_set_intensity) when it differs from what it was last given. */
	void ApplyIntensity();
	bool TickStats(float DeltaTime);

	void* LibnrbHandle = nullptr;  // Windows: nrb.dll is delay-loaded; this is the handle that loaded it
	bool bLibnrbLoaded = false;
	nrb_client* Client = nullptr;
	FString ClientEndpoint;
	float ClientDeadlineMs = 0.f;
	FString ClientCurveKeys[3];  // server public, client public, client secret: what the client was created with
	bool bClientEnabled = true;  // what the client was last told by SetEnabled / the console variable
	double ClientIntensity = 1.0;  // what the client was last told by nrb_set_intensity (1: a session's default)
	FString LastRefusal;         // the refusal last logged, so that each one is logged once
	TSharedPtr<FNeuralSceneViewExtension, ESPMode::ThreadSafe> ViewExtension;
	FDelegateHandle PostEngineInitHandle;
	FDelegateHandle CVarSinkHandle;
	FTSTicker::FDelegateHandle StatsTickerHandle;
	mutable FCriticalSection MaterialLock;
	TArray<uint32> MaterialOfObject;
};
