// Project Settings > Plugins > Neural Rendering, bound to the r.NeuralRendering.* console variables. Saved in the
// project's Config/DefaultEngine.ini, shared by everyone: this install's CurveZMQ key pair is on the per-user page
// (NeuralRenderingUserSettings.h) instead.
//
// The editor saves a property bound to a console variable under the console variable's name
// (r.NeuralRendering.Endpoint=...), and only the editor knows that binding: a packaged game loading the properties by
// name would find nothing. So, as Epic's own settings do (NNEDenoiser, PCG), the values travel through the console
// variables: UDeveloperSettingsBackedByCVars, and the saved keys applied to the console variables with
// ApplyCVarSettingsFromIni when the class default object is created, in every build.
#pragma once

#include "CoreMinimal.h"
#include "Engine/DeveloperSettingsBackedByCVars.h"

#include "NeuralRenderingSettings.generated.h"

UCLASS(Config = Engine, DefaultConfig, meta = (DisplayName = "Neural Rendering"))
class NEURALRENDERBRIDGE_API UNeuralRenderingSettings : public UDeveloperSettingsBackedByCVars
{
	GENERATED_BODY()

public:
	UNeuralRenderingSettings();

	/** Replace the final image with the neural renderer's output (the player's toggle sets this at run time). */
	UPROPERTY(Config, EditAnywhere, Category = "Neural Rendering",
		meta = (ConsoleVariable = "r.NeuralRendering.Enable"))
	bool bEnabled = true;

	/** How much of the neural image is shown over the engine's own: 0 the engine's image, 1 fully re-rendered. */
	UPROPERTY(Config, EditAnywhere, Category = "Neural Rendering",
		meta = (ConsoleVariable = "r.NeuralRendering.Intensity", ClampMin = "0", ClampMax = "1"))
	float Intensity = 1.f;

	/** ZeroMQ endpoint of the nrb server, e.g. tcp://127.0.0.1:5555. */
	UPROPERTY(Config, EditAnywhere, Category = "Neural Rendering",
		meta = (ConsoleVariable = "r.NeuralRendering.Endpoint"))
	FString Endpoint = TEXT("tcp://127.0.0.1:5555");

	/** A result older than this (from submit) is never shown; the engine's own image is shown instead. */
	UPROPERTY(Config, EditAnywhere, Category = "Neural Rendering",
		meta = (ConsoleVariable = "r.NeuralRendering.DeadlineMs", ClampMin = "1", ClampMax = "60000"))
	float DeadlineMs = 100.f;

	/** CurveZMQ: the nrb server's public key (Z85 text, 40 characters: `nrb keys show server.key`). With it, and this
	 * install's key pair on the "Neural Rendering (This Machine)" page, the client talks only to that server, over
	 * an encrypted connection. Empty: NRB_CURVE_SERVER_PUBLIC_KEY, or a plain connection when all three are empty. */
	UPROPERTY(Config, EditAnywhere, Category = "Neural Rendering|CurveZMQ",
		meta = (ConsoleVariable = "r.NeuralRendering.CurveServerPublicKey"))
	FString CurveServerPublicKey;

	virtual FName GetCategoryName() const override { return TEXT("Plugins"); }
	/** The class default object applies the saved keys ([/Script/NeuralRenderBridge.NeuralRenderingSettings] of the
	 * engine ini) to the console variables before the base class imports them into the properties (editor). */
	virtual void PostInitProperties() override;
};
