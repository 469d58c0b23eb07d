// The r.NeuralRendering.* console variables (bound to UNeuralRenderingSettings).
#pragma once

#include "HAL/IConsoleManager.h"

extern TAutoConsoleVariable<int32> CVarNeuralRenderingEnable;
extern TAutoConsoleVariable<FString> CVarNeuralRenderingEndpoint;
extern TAutoConsoleVariable<float> CVarNeuralRenderingDeadlineMs;
