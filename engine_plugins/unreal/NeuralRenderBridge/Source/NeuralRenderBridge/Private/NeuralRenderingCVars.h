// The r.NeuralRendering.* console variables (bound to UNeuralRenderingSettings and, for this install's CurveZMQ key
// pair, UNeuralRenderingUserSettings; r.NeuralRendering.ShowStats is a debug switch without a settings page).
#pragma once

#include "HAL/IConsoleManager.h"

extern TAutoConsoleVariable<int32> CVarNeuralRenderingEnable;
extern TAutoConsoleVariable<float> CVarNeuralRenderingIntensity;
extern TAutoConsoleVariable<FString> CVarNeuralRenderingEndpoint;
extern TAutoConsoleVariable<float> CVarNeuralRenderingDeadlineMs;
extern TAutoConsoleVariable<int32> CVarNeuralRenderingShowStats;
extern TAutoConsoleVariable<FString> CVarNeuralRenderingCurveServerPublicKey;
extern TAutoConsoleVariable<FString> CVarNeuralRenderingCurveClientPublicKey;
extern TAutoConsoleVariable<FString> CVarNeuralRenderingCurveClientSecretKey;
