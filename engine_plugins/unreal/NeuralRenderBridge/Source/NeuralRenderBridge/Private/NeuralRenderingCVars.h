// The r.NeuralRendering.* console variables (bound to UNeuralRenderingSettings and, for this install's CurveZMQ key
// pair, UNeuralRenderingUserSettings).
#pragma once

#include "HAL/IConsoleManager.h"

extern TAutoConsoleVariable<int32> CVarNeuralRenderingEnable;
extern TAutoConsoleVariable<FString> CVarNeuralRenderingEndpoint;
extern TAutoConsoleVariable<float> CVarNeuralRenderingDeadlineMs;
extern TAutoConsoleVariable<FString> CVarNeuralRenderingCurveServerPublicKey;
extern TAutoConsoleVariable<FString> CVarNeuralRenderingCurveClientPublicKey;
extern TAutoConsoleVariable<FString> CVarNeuralRenderingCurveClientSecretKey;
