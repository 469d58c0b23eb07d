// Game-logic verbs of the Neural Render Bridge: each maps to one call of libnrb's C ABI (nrb.h).
#pragma once

#include "CoreMinimal.h"
#include "Kismet/BlueprintFunctionLibrary.h"

#include "NeuralRenderingBlueprintLibrary.generated.h"

class UPrimitiveComponent;

/** What a style command or event applies to (docs/protocol.md section 5.3). */
UENUM(BlueprintType)
enum class ENeuralStyleScope : uint8
{
	Global,
	Material,
	Object
};

/** Statistics for an on-screen overlay (nrb_stats). r.NeuralRendering.ShowStats 1 shows the same on screen. */
USTRUCT(BlueprintType)
struct FNeuralRenderingStats
{
	GENERATED_BODY()

	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") int64 FramesSubmitted = 0;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") int64 FramesSent = 0;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") int64 ResultsReceived = 0;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") int64 Fallbacks = 0;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") int64 Reconnects = 0;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") float RoundTripP50Ms = 0.f;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") float RoundTripP95Ms = 0.f;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") float RoundTripP99Ms = 0.f;
	/** Frames in flight libnrb chose (nrb_stats in_flight_limit: adaptive unless the config fixes it). */
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") int32 FramesInFlightLimit = 0;
	/** Where a round trip goes: the renderer's own time per frame (nrb_stats service_ms) and the fastest recent
	 * transport time (link_ms). A round trip far above their sum is frames waiting in the queue. */
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") float RendererMs = 0.f;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") float LinkMs = 0.f;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") bool bConnected = false;
	/** "disabled", "connecting", "connected", "refused" (the renderer refused the session: no automatic retry; the
	 * player's toggle off and on retries it), or "no client". */
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") FString State;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") bool bRefused = false;
	/** The renderer's refusal code and reason (nrb_stats refusal_code, refusal_message), when bRefused. */
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") int32 RefusalCode = 0;
	UPROPERTY(BlueprintReadOnly, Category = "Neural Rendering") FString RefusalMessage;
};

UCLASS()
class NEURALRENDERBRIDGE_API UNeuralRenderingBlueprintLibrary : public UBlueprintFunctionLibrary
{
	GENERATED_BODY()

public:
	/** The player's toggle: neural image on or off (r.NeuralRendering.Enable). Turning it on retries a session the
	 * renderer refused (nrb_client_retry). C ABI: nrb_set_enabled. */
	UFUNCTION(BlueprintCallable, Category = "Neural Rendering")
	static void SetNeuralRenderingEnabled(bool bEnabled);

	/** C ABI: nrb_get_enabled. */
	UFUNCTION(BlueprintPure, Category = "Neural Rendering")
	static bool IsNeuralRenderingEnabled();

	/** Moves the target toward Style at Strength (0..1) over OverSeconds. C ABI: nrb_set_style. */
	UFUNCTION(BlueprintCallable, Category = "Neural Rendering", meta = (AutoCreateRefTerm = "Ids"))
	static bool SetNeuralStyle(FName Style, float Strength, float OverSeconds, ENeuralStyleScope Scope,
		const TArray<int32>& Ids);

	/** Sends a gameplay event to the server's hooks (@on("name")). C ABI: nrb_fire_event_params (typed params, nrb_params). */
	UFUNCTION(BlueprintCallable, Category = "Neural Rendering", meta = (AutoCreateRefTerm = "Params,Ids"))
	static bool FireNeuralStyleEvent(FName EventName, const TMap<FString, FString>& Params, ENeuralStyleScope Scope,
		const TArray<int32>& Ids);

	/** A look written by game logic: defines (or redefines) Style with these parameters (docs/server.md "Styles,
	 * LUTs, masks": Scalars such as hue, temperature, fog; Colors such as gain, lift, fog_color (R, G, B; alpha is
	 * ignored); Names: "lut" and "base", a style's name), then moves the target toward it at Strength over
	 * OverSeconds. Afterwards SetNeuralStyle(Style) names it like any other style. A parameter the renderer does not
	 * know or a value out of its range is refused by the renderer (that frame is not rendered; the game goes on).
	 * C ABI: nrb_set_style_params (typed params, nrb_params). */
	UFUNCTION(BlueprintCallable, Category = "Neural Rendering", meta = (AutoCreateRefTerm = "Scalars,Colors,Names,Ids"))
	static bool DefineNeuralStyle(FName Style, const TMap<FString, float>& Scalars,
		const TMap<FString, FLinearColor>& Colors, const TMap<FString, FString>& Names, float Strength,
		float OverSeconds, ENeuralStyleScope Scope, const TArray<int32>& Ids);

	/** How much of the re-rendered image is shown over the engine's own (hudless) image: 0 the engine's image, 1
	 * fully re-rendered, reached over OverSeconds. Also the player's setting r.NeuralRendering.Intensity (set by
	 * this call too, so the settings page shows it). C ABI: nrb_set_intensity. */
	UFUNCTION(BlueprintCallable, Category = "Neural Rendering")
	static bool SetNeuralIntensity(float Intensity, float OverSeconds);

	/** Keeps the engine's pixels for these objects (custom stencil ids) or materials, with a soft edge; bExcluded
	 * false re-renders them again (Global with bExcluded false: every id). C ABI: nrb_exclude. */
	UFUNCTION(BlueprintCallable, Category = "Neural Rendering", meta = (AutoCreateRefTerm = "Ids"))
	static bool ExcludeFromNeuralRendering(ENeuralStyleScope Scope, const TArray<int32>& Ids, bool bExcluded);

	/** Counters, connection state and a refusal's reason. C ABI: nrb_get_stats. */
	UFUNCTION(BlueprintPure, Category = "Neural Rendering")
	static FNeuralRenderingStats GetNeuralRenderingStats();

	/** Gives a component an object id (custom stencil 1..255) and a material id for the G-buffers. Engine side
	 * only: no C ABI call (the ids travel in the object_id / material_id buffers). */
	UFUNCTION(BlueprintCallable, Category = "Neural Rendering")
	static void SetNeuralObjectId(UPrimitiveComponent* Component, int32 ObjectId, int32 MaterialId);
};
