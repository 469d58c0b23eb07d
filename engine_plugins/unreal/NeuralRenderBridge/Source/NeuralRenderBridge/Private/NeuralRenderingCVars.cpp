#include "NeuralRenderingCVars.h"

TAutoConsoleVariable<int32> CVarNeuralRenderingEnable(
	TEXT("r.NeuralRendering.Enable"), 1,
	TEXT("1: replace the final image with the neural renderer's output when a fresh one exists; 0: off (no traffic)."),
	ECVF_Default);

TAutoConsoleVariable<FString> CVarNeuralRenderingEndpoint(
	TEXT("r.NeuralRendering.Endpoint"), TEXT("tcp://127.0.0.1:5555"),
	TEXT("ZeroMQ endpoint of the nrb server (changing it reconnects)."),
	ECVF_Default);

TAutoConsoleVariable<float> CVarNeuralRenderingDeadlineMs(
	TEXT("r.NeuralRendering.DeadlineMs"), 100.f,
	TEXT("A neural frame older than this many milliseconds (from submit) is never shown."),
	ECVF_Default);
