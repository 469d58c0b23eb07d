// FNeuralSceneViewExtension: G-buffers out after the base pass, neural frame in after tonemapping.
#pragma once

#include "CoreMinimal.h"
#include "RHIGPUReadback.h"
#include "SceneViewExtension.h"

class FNeuralRenderBridgeModule;

class FNeuralSceneViewExtension : public FSceneViewExtensionBase
{
public:
	FNeuralSceneViewExtension(const FAutoRegister& AutoRegister, FNeuralRenderBridgeModule* InModule);
	virtual ~FNeuralSceneViewExtension() override;

	/** Render size announced in HELLO before the first view is seen (the client adopts the real size per frame). */
	static FIntPoint DefaultRenderSize() { return FIntPoint(1280, 720); }

	// ISceneViewExtension
	virtual void SetupViewFamily(FSceneViewFamily& InViewFamily) override {}
	virtual void SetupView(FSceneViewFamily& InViewFamily, FSceneView& InView) override {}
	virtual void BeginRenderViewFamily(FSceneViewFamily& InViewFamily) override;
	virtual void PreRenderViewFamily_RenderThread(FRDGBuilder& GraphBuilder, FSceneViewFamily& InViewFamily) override;
	virtual void PostRenderBasePassDeferred_RenderThread(FRDGBuilder& GraphBuilder, FSceneView& InView,
		const FRenderTargetBindingSlots& RenderTargets,
		TRDGUniformBufferRef<FSceneTextureUniformParameters> SceneTextures) override;
	virtual void SubscribeToPostProcessingPass(EPostProcessingPass Pass, FAfterPassCallbackDelegateArray& InOutPassCallbacks,
		bool bIsPassEnabled) override;

protected:
	virtual bool IsActiveThisFrame_Internal(const FSceneViewExtensionContext& Context) const override;

private:
	/** The world's sun for the lighting constant x_sun_direction (docs/protocol.md 6.1), protocol world space. Only the
	 * direction is sent: Unreal's light units (lux, before exposure) are not the renderer's radiance scale, so the
	 * renderer keeps its own sun and sky intensity. */
	struct FSun
	{
		bool bValid = false;
		double Towards[3] = {};
	};

	/** One frame's read-backs (one per packed target) and the camera constants of that frame. */
	struct FReadbackSet
	{
		TArray<TUniquePtr<FRHIGPUTextureReadback>> Readbacks;
		FIntPoint Size = FIntPoint::ZeroValue;
		double Camera[5][16] = {};  // view_to_clip, clip_to_view, clip_to_prev_clip, prev_clip_to_clip, world_to_view
		double Position[3] = {}, Up[3] = {}, Right[3] = {}, Forward[3] = {};
		double Near = 10.0, FovY = 1.0, Aspect = 1.0;
		double Dt = 0.0;
		FSun Sun;
		bool bReset = false;
		bool bInUse = false;
	};

	FScreenPassTexture PostTonemap_RenderThread(FRDGBuilder& GraphBuilder, const FSceneView& View,
		const FPostProcessMaterialInputs& Inputs);
	void SubmitReadyFrames_RenderThread();
	void FillCamera(const FSceneView& View, FReadbackSet& Set);

	FNeuralRenderBridgeModule* Module;
	static constexpr int32 FramesInFlight = 2;  // read-backs in flight: never wait for the GPU
	FReadbackSet Sets[FramesInFlight];
	int32 NextSet = 0;
	double PrevViewProj[16] = {};
	bool bHavePrev = false;
	double LastTime = 0.0;
	FSun Sun_RenderThread;  // written by the render command BeginRenderViewFamily enqueues
	FTextureRHIRef NeuralTexture;
	uint64 UploadedFrame = 0;
};
