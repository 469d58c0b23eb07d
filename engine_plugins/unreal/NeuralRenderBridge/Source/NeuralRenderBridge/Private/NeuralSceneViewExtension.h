// FNeuralSceneViewExtension: G-buffers out after the base pass, neural frame in after tonemapping.
#pragma once

#include <atomic>

#include "CoreMinimal.h"
#include "Misc/EngineVersionComparison.h"
#include "RHIGPUReadback.h"
#include "ScreenPass.h"
#include "SceneViewExtension.h"
#include "Tasks/Pipe.h"

#include "NrbGlue.h"

class FNeuralRenderBridgeModule;

class FNeuralSceneViewExtension : public FSceneViewExtensionBase
{
public:
	FNeuralSceneViewExtension(const FAutoRegister& AutoRegister, FNeuralRenderBridgeModule* InModule);
	virtual ~FNeuralSceneViewExtension() override;

	/** Render size announced in HELLO before the first view is seen (the client adopts the real size per frame). */
	static FIntPoint DefaultRenderSize() { return FIntPoint(1280, 720); }

	/** The views the plugin works on: the game viewport's primary view, never a scene capture, reflection capture or
	 * planar reflection, and only with post-processing on (OpenColorIO and ColorCorrectRegions filter the same way). */
	static bool IsNeuralView(const FSceneView& View);

	/** Waits until the worker has submitted every frame handed to it: before the client it uses is destroyed. */
	void WaitForSubmissions();
	/** Unlocks and frees the read-backs on the render thread and waits for it (module shutdown). */
	void ReleaseReadbacks();

	// ISceneViewExtension
	virtual void SetupViewFamily(FSceneViewFamily& InViewFamily) override {}
	virtual void SetupView(FSceneViewFamily& InViewFamily, FSceneView& InView) override {}
	virtual void BeginRenderViewFamily(FSceneViewFamily& InViewFamily) override;
	virtual void PreRenderViewFamily_RenderThread(FRDGBuilder& GraphBuilder, FSceneViewFamily& InViewFamily) override;
	virtual void PostRenderBasePassDeferred_RenderThread(FRDGBuilder& GraphBuilder, FSceneView& InView,
		const FRenderTargetBindingSlots& RenderTargets,
		TRDGUniformBufferRef<FSceneTextureUniformParameters> SceneTextures) override;
#if UE_VERSION_OLDER_THAN(5, 5, 0)
	// 5.3, 5.4: the only overload
	virtual void SubscribeToPostProcessingPass(EPostProcessingPass Pass, FAfterPassCallbackDelegateArray& InOutPassCallbacks,
		bool bIsPassEnabled) override;
#else
	// 5.5 calls this overload only (the one without the view is deprecated and never called)
	virtual void SubscribeToPostProcessingPass(EPostProcessingPass Pass, const FSceneView& InView,
		FAfterPassCallbackDelegateArray& InOutPassCallbacks, bool bIsPassEnabled) override;
#endif

protected:
	virtual bool IsActiveThisFrame_Internal(const FSceneViewExtensionContext& Context) const override;

private:
	/** A read-back slot: Free -> Copying (GPU copy enqueued) -> Submitting (mapped, the worker copies it into libnrb)
	 * -> Submitted (unlocked by the render thread) -> Free. The render thread never waits for the GPU or the worker: a
	 * frame that finds its slot busy is skipped. */
	enum class ESlot : uint8
	{
		Free,
		Copying,
		Submitting,
		Submitted,
	};

	/** One frame's read-backs (one per packed target, then hudless_color) and the constants sent with it. */
	struct FReadbackSet
	{
		TArray<TUniquePtr<FRHIGPUTextureReadback>> Readbacks;
		nrbglue::FPackedFrame Frame;
		std::atomic<ESlot> State{ESlot::Free};
		bool bHudless = false;  // the Tonemap pass copied hudless_color into Readbacks[NumTargets] (render thread)
	};
	static constexpr int32 NumReadbacks = nrbglue::NumTargets + 1;
	/** The read-backs of a set that hold a copy: the packed targets, and hudless_color when it was copied. */
	static int32 ReadbacksOf(const FReadbackSet& Set) { return nrbglue::NumTargets + (Set.bHudless ? 1 : 0); }

	/** The world's sun for the lighting constant x_sun_direction (docs/protocol.md 6.1), protocol world space. Only the
	 * direction is sent: Unreal's light units (lux, before exposure) are not the renderer's radiance scale, so the
	 * renderer keeps its own sun and sky intensity. With it, the world's other lights for the light list x_lights
	 * (point and spot light components, further directional lights; nrbglue::MakeLight puts them on the scale of
	 * the engine's exposed image), the brightest first, at most NRB_MAX_LIGHTS. */
	struct FSun
	{
		bool bValid = false;
		double Towards[3] = {};
		TArray<nrbglue::FLightInputs> Lights;
	};

	FScreenPassTexture PostTonemap_RenderThread(FRDGBuilder& GraphBuilder, const FSceneView& View,
		const FPostProcessMaterialInputs& Inputs);
	/** After Tonemap: the view's image (no HUD yet) resampled to the render size and copied to the read-back set the
	 * base pass filled this frame, as hudless_color. */
	void AddHudlessPass_RenderThread(FRDGBuilder& GraphBuilder, const FSceneView& View,
		const FScreenPassTexture& SceneColor);
	void ProcessReadbacks_RenderThread();
	void FillCamera(const FSceneView& View, FIntPoint RenderSize, nrbglue::FPackedFrame& Frame);

	FNeuralRenderBridgeModule* Module;
	static constexpr int32 FramesInFlight = 2;  // read-back slots
	FReadbackSet Sets[FramesInFlight];
	int32 NextSet = 0;
	static constexpr int32 NoSet = -1;
	int32 HudlessSet = NoSet;  // the set whose G-buffers this frame's base pass copied (render thread)
	nrbglue::FCameraTracker CameraTracker;  // render thread
	double LastTime = 0.0;
	FSun Sun_RenderThread;  // written by the render command BeginRenderViewFamily enqueues
	UE::Tasks::FPipe SubmitPipe{TEXT("NeuralRenderBridge.Submit")};  // one frame at a time, in order
	FTextureRHIRef NeuralTexture;
	EPixelFormat NeuralFormat = PF_Unknown;
	uint64 UploadedFrame = 0;
	bool bWarnedFormat = false;
};
