#include "NeuralRenderingCVars.h"

TAutoConsoleVariable<int32> CVarNeuralRenderingEnable(
	TEXT("r.NeuralRendering.Enable"), 1,
	TEXT("1: replace the final image with the neural renderer's output when a fresh one exists; 0: off (no traffic)."),
	ECVF_Default);

TAutoConsoleVariable<float> CVarNeuralRenderingIntensity(
	TEXT("r.NeuralRendering.Intensity"), 1.f,
	TEXT("How much of the neural image is shown over the engine's own (hudless) image: 0 the engine's image, 1 fully ")
	TEXT("re-rendered (the player's setting, next to r.NeuralRendering.Enable)."),
	ECVF_Default);

TAutoConsoleVariable<FString> CVarNeuralRenderingEndpoint(
	TEXT("r.NeuralRendering.Endpoint"), TEXT("tcp://127.0.0.1:5555"),
	TEXT("ZeroMQ endpoint of the nrb server (changing it reconnects)."),
	ECVF_Default);

TAutoConsoleVariable<int32> CVarNeuralRenderingShowStats(
	TEXT("r.NeuralRendering.ShowStats"), 0,
	TEXT("1: show the client's state and counters on screen (a refusal by the renderer is shown even when 0)."),
	ECVF_Default);

TAutoConsoleVariable<float> CVarNeuralRenderingDeadlineMs(
	TEXT("r.NeuralRendering.DeadlineMs"), 100.f,
	TEXT("A neural frame older than this many milliseconds (from submit) is never shown."),
	ECVF_Default);

// CurveZMQ (docs/security.md): Z85 text, 40 characters each, as `nrb keys show` prints it; all three or none. Each one
// that is empty is read from its environment variable instead when the client is created.
TAutoConsoleVariable<FString> CVarNeuralRenderingCurveServerPublicKey(
	TEXT("r.NeuralRendering.CurveServerPublicKey"), TEXT(""),
	TEXT("CurveZMQ: the nrb server's public key (Z85, 40 characters; empty: NRB_CURVE_SERVER_PUBLIC_KEY, or a ")
	TEXT("plain connection when all three keys are empty). The client then talks only to that server. Changing it ")
	TEXT("reconnects."),
	ECVF_Default);

TAutoConsoleVariable<FString> CVarNeuralRenderingCurveClientPublicKey(
	TEXT("r.NeuralRendering.CurveClientPublicKey"), TEXT(""),
	TEXT("CurveZMQ: this install's public key, listed in the server's --allow-dir (Z85, 40 characters; empty: ")
	TEXT("NRB_CURVE_CLIENT_PUBLIC_KEY). Changing it reconnects."),
	ECVF_Default);

TAutoConsoleVariable<FString> CVarNeuralRenderingCurveClientSecretKey(
	TEXT("r.NeuralRendering.CurveClientSecretKey"), TEXT(""),
	TEXT("CurveZMQ: this install's secret key (Z85, 40 characters; empty: NRB_CURVE_CLIENT_SECRET_KEY). Set it on the ")
	TEXT("per-user settings page or in the environment, never in the project's Config/*.ini. Changing it reconnects."),
	ECVF_Default);
