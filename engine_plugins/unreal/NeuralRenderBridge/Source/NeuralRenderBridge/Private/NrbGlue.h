// The engine-independent half of the Unreal plugin: everything between the engine's data and libnrb's C ABI that
// needs no Unreal type (params encoding, client configuration, camera constants, frame submission, result formats,
// statistics). No Unreal header is included here, so this file and NrbGlue.cpp compile and are tested against libnrb
// without an engine (tests/test_plugin_unreal_glue.py); the Unreal files convert their types at the edges.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nrb/nrb.h"

// libnrb 0.1 with nrb_stats struct_version 3 reports a refused session (NRB_STATE_REFUSED, refusal_code,
// refusal_message) and offers nrb_client_retry. Against an older nrb.h the plugin still builds: a refusal then looks
// like a server that never answers.
#if defined(NRB_STATS_VERSION) && NRB_STATS_VERSION >= 3
#define NRB_GLUE_HAS_REFUSAL 1
#else
#define NRB_GLUE_HAS_REFUSAL 0
#endif

namespace nrbglue
{
// ------------------------------------------------------------------------------------------------- event params
/** Queues event Name with a str -> str params map (UTF-8), built with libnrb's typed params (nrb_params, which
 * encodes and checks them: the plugin carries no msgpack encoder) and fired with nrb_fire_event_params. Returns the
 * first failing status (e.g. NRB_ERROR_LIMIT_EXCEEDED for params over 4096 bytes; nrb_last_error(NULL) says why for
 * a params call, nrb_last_error(Client) for the fire). */
nrb_status FireStringMapEvent(nrb_client* Client, const char* Name,
	const std::vector<std::pair<std::string, std::string>>& Params, const nrb_target* Target);

// ------------------------------------------------------------------------------------------------- styles, controls
/** A style written at run time (nrb_set_style_params, protocol section 5.3 stylecmd params): defines Style with
 * these parameters (Scalars: one number each; Colors: R, G, B; Names: "lut" and "base", a style's name) and moves
 * Target to it at Strength over OverSeconds. Built with libnrb's typed params (the plugin encodes nothing). Returns
 * the first failing status; nrb_last_error(NULL) or nrb_last_error(Client) says why. */
nrb_status SetStyleParams(nrb_client* Client, const char* Style,
	const std::vector<std::pair<std::string, double>>& Scalars,
	const std::vector<std::pair<std::string, std::array<double, 3>>>& Colors,
	const std::vector<std::pair<std::string, std::string>>& Names, double Strength, double OverSeconds,
	const nrb_target* Target);

/** r.NeuralRendering.Intensity as libnrb takes it: clamped to [0, 1] (nrb_set_intensity refuses values outside). */
double ClampIntensity(double Intensity);

// ------------------------------------------------------------------------------------------------- CurveZMQ keys
/** A CurveZMQ key as libzmq takes it: 40 characters of the Z85 alphabet (ZeroMQ RFC 32). libnrb checks only the
 * length; a key with a stray quote would otherwise fail later, in libnrb's I/O thread, on every reconnect. */
bool IsZ85Key(const std::string& Key);

/** Where a key comes from, for messages: the console variable and the environment variable read when it is empty. */
struct FKeySource
{
	const char* Setting;
	const char* Environment;
};

/** Why the three keys (server public, client public, client secret) cannot be used, naming the setting at fault and
 * never showing a key (it may be the secret one); empty when they can: all three valid, or none. */
std::string CurveKeysProblem(const std::string (&Keys)[3], const FKeySource (&Sources)[3]);

// ------------------------------------------------------------------------------------------------- buffers
/** One packed G-buffer target of the pack pass, in read-back order. */
struct FTargetSpec
{
	const char* Name;    // docs/protocol.md section 6.1
	nrb_format Format;   // the wire format; the engine's pixel format has the same layout
	uint32_t Flags;      // NRB_BUFFER_* sent with it
};
/** The packed targets by index: NrbPack.usf's UAV order, PackedTargets' order. Code that needs one target names it
 * here (TargetDepth), never by a number. */
enum ETarget : int
{
	TargetAlbedo,
	TargetNormals,
	TargetDepth,
	TargetLinearDepth,
	TargetMotionVectors,
	TargetRoughness,
	TargetMetallic,
	TargetEmissive,
	TargetObjectId,
	TargetMaterialId,
	NumTargets
};
/** The ten targets NrbPack.usf writes, in the order of its UAVs: the one list of the plugin's G-buffers (names are
 * nrb.h's NRB_BUFFER_* constants; NeuralSceneViewExtension derives the engine pixel formats from Format). */
extern const FTargetSpec PackedTargets[NumTargets];
/** The 1x1 lighting constant (protocol section 6.1) sent with each frame when the world has a sun. */
extern const FTargetSpec SunDirection;
/** The engine's own image without the HUD: the tonemapped SceneColor after the Tonemap pass (UMG and Slate draw the UI
 * later, onto the back buffer), resampled to the render rect's size by NrbPack.usf's HudlessCS. Display-encoded, so
 * rgba8_srgb; the camera's pre_exposure and tone_mapping say how it was made (ToneMappingOf). */
extern const FTargetSpec HudlessColor;
/** The light list (protocol section 6.1, x_lights): offered in HELLO, filled each frame by SubmitFrame from
 * FPackedFrame::Lights through nrb_frame_set_lights (libnrb checks and packs it). */
extern const FTargetSpec LightList;

/** One of the world's lights as the engine describes it, in protocol world space (ToProtocol: Unreal units, cm) and
 * Unreal's own brightness: ULightComponent::GetColoredLightBrightness(), linear RGB, which Unreal's renderer divides
 * by the squared distance in cm (a point light's candelas x 100^2, UPointLightComponent::ComputeLightBrightness) and
 * shades as albedo / pi x that irradiance: the protocol's radiant intensity, as it is. */
struct FLightInputs
{
	enum class EType : uint8_t
	{
		Point,
		Spot,
		Directional
	};
	EType Type = EType::Point;
	double Position[3] = {};
	double Direction[3] = {0.0, -1.0, 0.0};  // the way the light travels (ULightComponent::GetDirection)
	float Brightness[3] = {};
	double AttenuationRadius = 0.0;  // cm; 0: none
	bool bInverseSquared = true;     // UPointLightComponent::bUseInverseSquaredFalloff
	double InnerConeDeg = 0.0, OuterConeDeg = 0.0;  // USpotLightComponent's half-angles
};

/** The nrb_light of one light: its brightness times Exposure (the view's pre-exposure, so the light is on the scale
 * of the image the engine shows, as its hudless_color is), the attenuation radius as the range, the spot's cone in
 * radians. A legacy light without inverse-squared falloff (Unreal fades it by (1 - (d/r)^2)^exponent) is matched at
 * half its radius: intensity brightness x (r/2)^2. Unit direction; negative channels clamp to 0. */
nrb_light MakeLight(const FLightInputs& In, double Exposure);

// ------------------------------------------------------------------------------------------------- client config
/** What the engine knows when it creates a client; every string is UTF-8. */
struct FClientSettings
{
	std::string Endpoint;
	double DeadlineMs = 100.0;
	bool bEnabled = true;
	std::string EngineVersion;
	uint32_t RenderWidth = 1280, RenderHeight = 720;  // 0x0: libnrb's default for the link (nrb.h nrb_link)
	uint32_t OutputWidth = 0, OutputHeight = 0;       // 0: the render size
	std::string CurveKeys[3];                    // server public, client public, client secret; all or none
	nrb_log_fn LogFn = nullptr;
	void* LogUser = nullptr;
	nrb_log_level LogLevel = NRB_LOG_WARNING;
};

/** The HELLO buffers: PackedTargets, then HudlessColor, SunDirection and LightList (one list, derived, so the offer
 * and what SubmitFrame tags cannot differ). */
std::vector<nrb_buffer_spec> OfferedBuffers();

/** An nrb_client_config and the storage its pointers refer to (it must outlive nrb_client_create, which copies). */
class FClientConfig
{
public:
	/** Fills the config from Settings: the ten packed targets plus the sun direction as HELLO buffers, adaptive
	 * frames in flight, the CurveZMQ keys only when all three are given. */
	explicit FClientConfig(const FClientSettings& Settings);
	FClientConfig(const FClientConfig&) = delete;
	FClientConfig& operator=(const FClientConfig&) = delete;

	const nrb_client_config& Get() const { return Config; }

private:
	FClientSettings Held;
	std::vector<nrb_buffer_spec> Buffers;
	nrb_client_config Config;
};

// ------------------------------------------------------------------------------------------------- camera
/** The camera as the engine sees it, already in protocol world space (right-handed, +Y up; Unreal (x, y, z) is
 * protocol (y, z, -x)), lengths in centimetres. */
struct FCameraInputs
{
	double Position[3] = {};
	double Forward[3] = {0, 0, -1}, Right[3] = {1, 0, 0}, Up[3] = {0, 1, 0};
	double FocalY = 1.0;  // projection M[1][1] without jitter: cot(fov_y / 2)
	double Aspect = 1.0;  // width / height, M[1][1] / M[0][0]
	double Near = 10.0;
	uint32_t RenderWidth = 0, RenderHeight = 0;  // the G-buffers: the view's render rect
	uint32_t OutputWidth = 0, OutputHeight = 0;  // the image wanted back: the view's output size (after upscaling)
	bool bCameraCut = false;
	double PreExposure = 0.0;  // the exposure the tonemapper applied (eye adaptation); 0: not sent
	nrb_tone_mapping ToneMapping = NRB_TONE_MAPPING_UNSET;  // ToneMappingOf(the view's film curve)
};

/** The view's filmic tonemapper settings (FPostProcessSettings FilmSlope, FilmToe, FilmShoulder, FilmBlackClip,
 * FilmWhiteClip). */
struct FFilmCurve
{
	double Slope = 0.88, Toe = 0.55, Shoulder = 0.26, BlackClip = 0.0, WhiteClip = 0.04;
};
/** The camera's tone_mapping for hudless_color: Unreal's filmic tonemapper at its default curve (the values of
 * FFilmCurve, Epic's fit of the ACES reference RRT + sRGB ODT) is stated as NRB_TONE_MAPPING_ACES, the ACES curve
 * the protocol names (Stephen Hill's fit of the same reference, so the renderer's inverse is close, not exact); a
 * project that changed the curve gets NRB_TONE_MAPPING_OTHER (the image is taken as display values). */
nrb_tone_mapping ToneMappingOf(const FFilmCurve& Film);

/** Builds the protocol camera constants (docs/protocol.md section 8) of successive frames: Unreal's reversed-Z,
 * infinite-far projection in protocol view space, and the reprojection to the previous frame's clip space. */
class FCameraTracker
{
public:
	/** Fills Out (nrb_camera_init first) for this frame and remembers it as the previous frame of the next one. */
	void Build(const FCameraInputs& In, nrb_camera& Out);
	void Reset() { bHavePrev = false; }

private:
	double PrevViewProj[16] = {};
	bool bHavePrev = false;
};

/** 4x4 helpers (row-major storage, column vectors). Invert returns false for a singular matrix. */
void Mul4(const double A[16], const double B[16], double Out[16]);
bool Invert4(const double M[16], double Out[16]);

// ------------------------------------------------------------------------------------------------- frames
/** One frame's read-backs as mapped by the engine (each target's rows RowPitchPixels apart) and its constants. */
struct FPackedFrame
{
	uint32_t Width = 0, Height = 0;
	const void* Data[NumTargets] = {};
	uint32_t RowPitchPixels[NumTargets] = {};
	nrb_camera Camera;
	double Dt = 0.0;
	bool bHasSun = false;
	float SunTowards[4] = {};  // protocol world space, w = 0
	const void* HudlessData = nullptr;  // HudlessColor's rows, when the Tonemap pass produced them this frame
	uint32_t HudlessRowPitchPixels = 0;
	std::vector<nrb_light> Lights;  // the light list (MakeLight), at most NRB_MAX_LIGHTS; empty: none this frame
};

/** nrb_frame_begin, one nrb_frame_tag_buffer per target and for hudless_color when present (the copy of the mapped rows: 80 MB at 1080p, which is why
 * the plugin calls this on a worker thread, never the render thread), the sun, nrb_frame_set_camera and
 * nrb_frame_submit. Returns the first failing status (the frame is then not submitted), NRB_OK otherwise. */
nrb_status SubmitFrame(nrb_client* Client, const FPackedFrame& Frame);

// ------------------------------------------------------------------------------------------------- results
/** How an engine texture must hold a result and whether the composite pass must sRGB-encode it. After Tonemap the
 * engine's image holds display-encoded (sRGB) values, so an rgba8_srgb result is copied as stored (no sRGB view,
 * which would decode it and darken the image) and a linear result (rgba8, rgba16f) is encoded by the pass. */
enum class EResultTexture : uint8_t
{
	Unsupported,
	Rgba8,    // PF_R8G8B8A8, no sRGB view
	Rgba16f,  // PF_FloatRGBA
	Rgba32f,  // PF_A32B32G32R32F
};
struct FResultPlan
{
	EResultTexture Texture = EResultTexture::Unsupported;
	bool bEncodeSrgb = false;
	uint32_t BytesPerPixel = 0;
};
FResultPlan PlanResult(nrb_format Format);

// ------------------------------------------------------------------------------------------------- statistics
/** nrb_stats as the overlay and GetNeuralRenderingStats show it. */
struct FStatsView
{
	bool bValid = false;  // nrb_get_stats succeeded
	nrb_stats Raw;
	std::string State;    // "disabled", "connecting", "connected", "refused"
	bool bRefused = false;
	int32_t RefusalCode = 0;
	std::string RefusalMessage;  // the renderer's reason, UTF-8; empty unless refused
};
const char* StateName(nrb_connection_state State);
/** Reads the client's statistics (a NULL client gives bValid = false). Any thread. */
FStatsView ReadStats(const nrb_client* Client);
/** One line for the on-screen overlay; a refusal comes first, with the renderer's reason. */
std::string StatsLine(const FStatsView& Stats);
/** The player's toggle turned rendering back on: a refused session is not retried automatically, so ask libnrb to
 * retry it (nrb_client_retry). Returns whether it did. */
bool RetryIfRefused(nrb_client* Client);
}  // namespace nrbglue
