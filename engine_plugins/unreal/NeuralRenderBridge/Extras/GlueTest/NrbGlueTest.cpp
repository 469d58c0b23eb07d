// Test driver for the plugin's engine-independent half (Source/NeuralRenderBridge/Private/NrbGlue.cpp), built with a
// plain C++ compiler against cpp/include/nrb/nrb.h and linked with libnrb by tests/test_plugin_unreal_glue.py. It
// lives outside Source/ so that UnrealBuildTool never compiles it into the module.
//
//   NrbGlueTest unit                 no server: encoding, keys, config, camera, result formats, statistics
//   NrbGlueTest e2e ENDPOINT         against `nrb serve --renderer passthrough`: a frame of padded rows submitted
//                                    through nrbglue::SubmitFrame comes back byte for byte (its hudless_color, which
//                                    passthrough prefers to albedo); an event with params
//   NrbGlueTest refused ENDPOINT     against a renderer that refuses every HELLO: the refusal reaches the statistics
//                                    and the overlay line, and RetryIfRefused asks again
// Prints "FAIL ..." for each failed check and "OK <mode>" at the end; the exit status is the number of failures.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "NrbGlue.h"

namespace
{
int Failures = 0;

#define EXPECT(Cond, ...)                                      \
	do                                                         \
	{                                                          \
		if (!(Cond))                                           \
		{                                                      \
			std::printf("FAIL %s:%d %s: ", __FILE__, __LINE__, #Cond); \
			std::printf(__VA_ARGS__);                          \
			std::printf("\n");                                 \
			++Failures;                                        \
		}                                                      \
	} while (0)

bool Near(double A, double B, double Tol = 1e-9) { return std::fabs(A - B) <= Tol * (1.0 + std::fabs(A) + std::fabs(B)); }

void Transform(const double M[16], const double V[4], double Out[4])
{
	for (int I = 0; I < 4; ++I)
	{
		Out[I] = M[I * 4] * V[0] + M[I * 4 + 1] * V[1] + M[I * 4 + 2] * V[2] + M[I * 4 + 3] * V[3];
	}
}


const nrbglue::FKeySource Sources[3] = {
	{"r.NeuralRendering.CurveServerPublicKey", "NRB_CURVE_SERVER_PUBLIC_KEY"},
	{"r.NeuralRendering.CurveClientPublicKey", "NRB_CURVE_CLIENT_PUBLIC_KEY"},
	{"r.NeuralRendering.CurveClientSecretKey", "NRB_CURVE_CLIENT_SECRET_KEY"},
};
const char* const KeyA = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";  // ZeroMQ RFC 32 test vectors
const char* const KeyB = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
const char* const KeyC = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs";

// ------------------------------------------------------------------------------------------------------------ unit
void TestEncoding()
{
	// The plugin encodes nothing itself: FireStringMapEvent builds libnrb's typed params. A client that starts
	// disabled queues the event; params over 4096 bytes are refused at the value that breaks the limit.
	nrbglue::FClientSettings S;
	S.Endpoint = "tcp://127.0.0.1:1";
	S.bEnabled = false;
	const nrbglue::FClientConfig Config(S);
	nrb_client* Client = nullptr;
	EXPECT(nrb_client_create(&Config.Get(), &Client) == NRB_OK, "create: %s", nrb_last_error(nullptr));
	nrb_target Global{NRB_SCOPE_GLOBAL, nullptr, 0};
	EXPECT(nrbglue::FireStringMapEvent(Client, "boss_phase", {{"phase", "2"}, {"boss", "Grüner Drache"}}, &Global) ==
			NRB_OK,
		"fire: %s", nrb_last_error(Client));
	EXPECT(nrbglue::FireStringMapEvent(Client, "empty", {}, &Global) == NRB_OK, "empty params");
	EXPECT(nrbglue::FireStringMapEvent(Client, "huge", {{"k", std::string(5000, 'x')}}, &Global) ==
			NRB_ERROR_LIMIT_EXCEEDED,
		"params over 4096 bytes");
	EXPECT(nrbglue::FireStringMapEvent(Client, "bad", {{"k", "\xff"}}, &Global) == NRB_ERROR_INVALID_ARGUMENT,
		"a value that is not UTF-8");
	nrbglue::FStatsView Stats = nrbglue::ReadStats(Client);
	EXPECT(Stats.bValid && Stats.Raw.events_pending == 2, "two events queued: %llu",
		static_cast<unsigned long long>(Stats.Raw.events_pending));
	nrb_client_destroy(Client);
}

void TestKeys()
{
	EXPECT(nrbglue::IsZ85Key(KeyA) && nrbglue::IsZ85Key(KeyB), "RFC 32 keys are Z85");
	EXPECT(!nrbglue::IsZ85Key(std::string(KeyA) + "x"), "41 characters");
	EXPECT(!nrbglue::IsZ85Key(std::string(39, 'a') + "\""), "a quote is not Z85");
	const std::string None[3];
	EXPECT(nrbglue::CurveKeysProblem(None, Sources).empty(), "no keys: plain connection");
	const std::string All[3] = {KeyA, KeyB, KeyC};
	EXPECT(nrbglue::CurveKeysProblem(All, Sources).empty(), "three keys");
	const std::string Partial[3] = {KeyA, "", KeyC};
	const std::string P = nrbglue::CurveKeysProblem(Partial, Sources);
	EXPECT(P.find("r.NeuralRendering.CurveClientPublicKey (or NRB_CURVE_CLIENT_PUBLIC_KEY) is empty") == 0, "%s", P.c_str());
	const std::string Bad[3] = {KeyA, KeyB, std::string(KeyC).substr(0, 12)};
	const std::string B = nrbglue::CurveKeysProblem(Bad, Sources);
	EXPECT(B.find("r.NeuralRendering.CurveClientSecretKey is not a CurveZMQ key") == 0 && B.find("12 characters") != std::string::npos
			&& B.find(std::string(KeyC).substr(0, 12)) == std::string::npos,
		"names the setting and the length, never the key: %s", B.c_str());
}

void TestLights()
{
	// A spot light as the view extension reads it: Unreal brightness (cd x 100^2, linear), cm, half-angles in degrees.
	nrbglue::FLightInputs Spot;
	Spot.Type = nrbglue::FLightInputs::EType::Spot;
	Spot.Position[0] = 100.0, Spot.Position[1] = 300.0, Spot.Position[2] = -50.0;
	Spot.Direction[0] = 0.0, Spot.Direction[1] = -2.0, Spot.Direction[2] = 0.0;
	Spot.Brightness[0] = 40000.0f, Spot.Brightness[1] = 20000.0f, Spot.Brightness[2] = 10000.0f;
	Spot.AttenuationRadius = 1000.0;
	Spot.InnerConeDeg = 20.0, Spot.OuterConeDeg = 40.0;
	const nrb_light L = nrbglue::MakeLight(Spot, 0.5);
	EXPECT(L.struct_size == sizeof(nrb_light) && L.struct_version == NRB_LIGHT_VERSION, "versioned");
	EXPECT(L.type == NRB_LIGHT_SPOT, "spot");
	EXPECT(Near(L.color[0], 20000.0) && Near(L.color[2], 5000.0), "brightness x exposure: %g %g", L.color[0], L.color[2]);
	EXPECT(Near(L.direction[1], -1.0, 1e-6) && L.direction[0] == 0.0f, "unit direction");
	EXPECT(Near(L.inner_cone, 20.0 * 3.14159265358979 / 180.0, 1e-6) && Near(L.outer_cone, 40.0 * 3.14159265358979 / 180.0, 1e-6),
		"half-angles in radians");
	EXPECT(L.range == 1000.0f && L.position[1] == 300.0f, "range and position as given");
	nrbglue::FLightInputs Legacy;  // a point light without inverse-squared falloff: matched at half its radius
	Legacy.Brightness[0] = Legacy.Brightness[1] = Legacy.Brightness[2] = 2.0f;
	Legacy.AttenuationRadius = 400.0;
	Legacy.bInverseSquared = false;
	EXPECT(Near(nrbglue::MakeLight(Legacy, 1.0).color[0], 2.0 * 200.0 * 200.0), "legacy falloff");

	// libnrb accepts them (checked as a renderer would), and a bad one is refused naming it.
	nrbglue::FClientSettings S;
	S.Endpoint = "tcp://127.0.0.1:1";
	S.bEnabled = false;
	nrbglue::FClientConfig Config(S);
	nrb_client* C = nullptr;
	EXPECT(nrb_client_create(&Config.Get(), &C) == NRB_OK, "client");
	EXPECT(nrb_frame_begin(C, nullptr, nullptr) == NRB_OK, "begin");
	const nrb_light Good[2] = {L, nrbglue::MakeLight(Legacy, 1.0)};
	EXPECT(nrb_frame_set_lights(C, Good, 2) == NRB_OK, "%s", nrb_last_error(C));
	nrb_light Bad = L;
	Bad.inner_cone = 1.0f;  // wider than the outer cone
	EXPECT(nrb_frame_set_lights(C, &Bad, 1) == NRB_ERROR_INVALID_ARGUMENT
			&& std::string(nrb_last_error(C)).find("lights[0].inner_cone") != std::string::npos,
		"%s", nrb_last_error(C));
	bool Offered = false;
	for (const nrb_buffer_spec& B : nrbglue::OfferedBuffers())
	{
		Offered = Offered || std::string(B.name) == NRB_BUFFER_X_LIGHTS;
	}
	EXPECT(Offered, "HELLO offers the light list");
	nrb_client_destroy(C);
}

void TestConfig()
{
	nrbglue::FClientSettings S;
	S.Endpoint = "tcp://127.0.0.1:6000";
	S.DeadlineMs = 42.0;
	S.bEnabled = false;
	S.EngineVersion = "5.5.1-0+UE5";
	S.RenderWidth = 640;
	S.RenderHeight = 360;
	S.CurveKeys[0] = KeyA;
	S.CurveKeys[1] = KeyB;
	S.CurveKeys[2] = KeyC;
	const nrbglue::FClientConfig Config(S);
	const nrb_client_config& C = Config.Get();
	EXPECT(C.struct_size == sizeof(nrb_client_config) && C.struct_version == NRB_CLIENT_CONFIG_VERSION, "init");
	EXPECT(std::strcmp(C.endpoint, "tcp://127.0.0.1:6000") == 0 && C.deadline_ms == 42.0, "endpoint, deadline");
	EXPECT(C.start_disabled == 1 && C.frames_in_flight == 0, "start disabled, adaptive frames in flight");
	EXPECT(std::strcmp(C.engine_name, "unreal") == 0 && std::strcmp(C.engine_version, "5.5.1-0+UE5") == 0, "engine");
	EXPECT(C.render_width == 640 && C.render_height == 360, "render size");
	EXPECT(std::strcmp(C.curve_server_public_key, KeyA) == 0 && std::strcmp(C.curve_client_public_key, KeyB) == 0 &&
			std::strcmp(C.curve_client_secret_key, KeyC) == 0,
		"CurveKeys[0..2] -> server public, client public, client secret");
	EXPECT(C.buffer_count == nrbglue::NumTargets + 3, "ten targets, hudless_color, the sun and the light list: %u",
		C.buffer_count);
	for (int I = 0; I < nrbglue::NumTargets; ++I)
	{
		EXPECT(std::strcmp(C.buffers[I].name, nrbglue::PackedTargets[I].Name) == 0 &&
				C.buffers[I].format == nrbglue::PackedTargets[I].Format,
			"buffer %d", I);
	}
	EXPECT(std::strcmp(C.buffers[nrbglue::NumTargets].name, NRB_BUFFER_HUDLESS_COLOR) == 0 &&
			C.buffers[nrbglue::NumTargets].format == NRB_FORMAT_RGBA8_SRGB,
		"the engine's image without the HUD is offered by default");
	EXPECT(std::strcmp(C.buffers[nrbglue::NumTargets + 1].name, NRB_BUFFER_X_SUN_DIRECTION) == 0, "sun");
	EXPECT(std::strcmp(nrbglue::PackedTargets[nrbglue::TargetDepth].Name, NRB_BUFFER_DEPTH) == 0 &&
			nrbglue::PackedTargets[nrbglue::TargetDepth].Flags ==
				(NRB_BUFFER_DEPTH_REVERSED | NRB_BUFFER_DEPTH_INFINITE),
		"the depth target carries Unreal's reversed, infinite depth");
	const nrbglue::FClientSettings Plain;
	const nrbglue::FClientConfig PlainConfig(Plain);
	EXPECT(PlainConfig.Get().curve_server_public_key == nullptr && PlainConfig.Get().start_disabled == 0, "no keys");
	// libnrb accepts the config (it connects in the background)
	nrb_client* Client = nullptr;
	EXPECT(nrb_client_create(&C, &Client) == NRB_OK && Client != nullptr, "nrb_client_create: %s", nrb_last_error(nullptr));
	nrb_client_destroy(Client);
}

void TestCamera()
{
	nrbglue::FCameraTracker Tracker;
	nrbglue::FCameraInputs In;
	In.Position[0] = 100.0;
	In.Position[1] = 50.0;
	In.Position[2] = -20.0;
	In.FocalY = 1.0 / std::tan(0.5);  // fov_y = 1 rad
	In.Aspect = 16.0 / 9.0;
	In.Near = 10.0;
	In.RenderWidth = 1280;
	In.RenderHeight = 720;
	In.OutputWidth = 1920;
	In.OutputHeight = 1080;
	nrb_camera A;
	nrb_camera_init(&A);
	Tracker.Build(In, A);
	EXPECT(A.reset == 1 && Near(A.fov_y, 1.0) && Near(A.aspect, 16.0 / 9.0) && std::isinf(A.far_plane), "first frame");
	EXPECT(A.render_width == 1280 && A.output_width == 1920 && A.output_height == 1080, "render vs output size");
	double I4[16];
	nrbglue::Mul4(A.view_to_clip, A.clip_to_view, I4);
	for (int K = 0; K < 16; ++K)
	{
		EXPECT(Near(I4[K], K % 5 == 0 ? 1.0 : 0.0), "view_to_clip * clip_to_view = I at %d: %g", K, I4[K]);
	}
	// a point straight ahead at distance 250: depth near / distance (reversed, infinite), centre of the screen
	const double World[4] = {100.0, 50.0, -20.0 - 250.0, 1.0};
	double View[4], Clip[4];
	Transform(A.world_to_view, World, View);
	Transform(A.view_to_clip, View, Clip);
	EXPECT(Near(View[2], -250.0) && Near(Clip[0] / Clip[3], 0.0) && Near(Clip[2] / Clip[3], 10.0 / 250.0),
		"projection: view z %g, ndc x %g, depth %g", View[2], Clip[0] / Clip[3], Clip[2] / Clip[3]);
	for (int K = 0; K < 16; ++K)
	{
		EXPECT(Near(A.clip_to_prev_clip[K], K % 5 == 0 ? 1.0 : 0.0), "reset: clip_to_prev_clip = I");
	}
	// the camera moves 30 cm right: a world point's clip position this frame maps to its clip position last frame
	nrbglue::FCameraInputs Moved = In;
	Moved.Position[0] += 30.0;
	nrb_camera B;
	nrb_camera_init(&B);
	Tracker.Build(Moved, B);
	double PrevClip[4], CurView[4], CurClip[4], Mapped[4];
	Transform(B.world_to_view, World, CurView);
	Transform(B.view_to_clip, CurView, CurClip);
	Transform(B.clip_to_prev_clip, CurClip, Mapped);
	Transform(A.view_to_clip, View, PrevClip);
	EXPECT(B.reset == 0, "second frame continues");
	for (int K = 0; K < 3; ++K)
	{
		EXPECT(Near(Mapped[K] / Mapped[3], PrevClip[K] / PrevClip[3], 1e-7), "reprojection %d: %g vs %g", K,
			Mapped[K] / Mapped[3], PrevClip[K] / PrevClip[3]);
	}
	EXPECT(B.pre_exposure == 0.0 && B.tone_mapping == NRB_TONE_MAPPING_UNSET, "no exposure, no curve: not sent");
	// how hudless_color was made: the eye adaptation's exposure and Unreal's filmic curve, ACES at its defaults
	EXPECT(nrbglue::ToneMappingOf(nrbglue::FFilmCurve{}) == NRB_TONE_MAPPING_ACES, "default film curve: ACES");
	EXPECT(nrbglue::ToneMappingOf(nrbglue::FFilmCurve{0.88, 0.55, 0.26, 0.0, 0.04}) == NRB_TONE_MAPPING_ACES,
		"Epic's defaults (Scene.cpp) are the ACES fit");
	EXPECT(nrbglue::ToneMappingOf(nrbglue::FFilmCurve{0.91, 0.53, 0.23, 0.0, 0.035}) == NRB_TONE_MAPPING_OTHER,
		"a changed film curve is not the ACES the protocol names");
	nrbglue::FCameraInputs Exposed = Moved;
	Exposed.PreExposure = 2.5;
	Exposed.ToneMapping = NRB_TONE_MAPPING_ACES;
	nrb_camera E;
	nrb_camera_init(&E);
	Tracker.Build(Exposed, E);
	EXPECT(E.pre_exposure == 2.5 && E.tone_mapping == NRB_TONE_MAPPING_ACES, "exposure %g, tone mapping %u",
		E.pre_exposure, E.tone_mapping);
	nrbglue::FCameraInputs Cut = Moved;
	Cut.bCameraCut = true;
	nrb_camera C;
	nrb_camera_init(&C);
	Tracker.Build(Cut, C);
	EXPECT(C.reset == 1, "a camera cut resets");
	// libnrb's own validation accepts the constants
	const nrbglue::FClientConfig Config{nrbglue::FClientSettings()};
	nrb_client* Client = nullptr;
	if (nrb_client_create(&Config.Get(), &Client) == NRB_OK)
	{
		EXPECT(nrb_frame_begin(Client, nullptr, nullptr) == NRB_OK, "frame_begin");
		EXPECT(nrb_frame_set_camera(Client, &B) == NRB_OK, "nrb_frame_set_camera: %s", nrb_last_error(Client));
		EXPECT(nrb_frame_set_camera(Client, &E) == NRB_OK, "with exposure and tone mapping: %s",
			nrb_last_error(Client));
		nrb_client_destroy(Client);
	}
}

void TestStylesAndControls()
{
	// A client that never connects queues commands all the same: the shapes are checked by libnrb at the call.
	nrbglue::FClientSettings S;
	S.Endpoint = "tcp://127.0.0.1:9";
	const nrbglue::FClientConfig Config(S);
	nrb_client* Client = nullptr;
	if (nrb_client_create(&Config.Get(), &Client) != NRB_OK)
	{
		EXPECT(false, "nrb_client_create: %s", nrb_last_error(nullptr));
		return;
	}
	const uint32_t Boss = 30;
	const nrb_target Object{NRB_SCOPE_OBJECT, &Boss, 1};
	EXPECT(nrbglue::SetStyleParams(Client, "poison", {{"hue", 35.0}, {"saturation", 0.6}},
			   {{"gain", {0.85, 1.1, 0.75}}}, {{"base", "photoreal"}}, 1.0, 0.5, nullptr) == NRB_OK,
		"a style written at run time is queued: %s", nrb_last_error(Client));
	std::vector<std::pair<std::string, double>> TooMany;
	for (int I = 0; I < 33; ++I)
	{
		TooMany.emplace_back("p" + std::to_string(I), 1.0);
	}
	EXPECT(nrbglue::SetStyleParams(Client, "crowded", TooMany, {}, {}, 1.0, 0.0, nullptr) == NRB_ERROR_LIMIT_EXCEEDED,
		"more than 32 parameters is refused at the call");
	EXPECT(nrb_set_intensity(Client, nrbglue::ClampIntensity(0.4), 1.0) == NRB_OK, "intensity");
	EXPECT(nrbglue::ClampIntensity(7.0) == 1.0 && nrbglue::ClampIntensity(-1.0) == 0.0 &&
			nrbglue::ClampIntensity(std::nan("")) == 1.0,
		"r.NeuralRendering.Intensity is clamped to what libnrb takes");
	EXPECT(nrb_exclude(Client, &Object, 1) == NRB_OK && nrb_exclude(Client, nullptr, 0) == NRB_OK, "exclude, include");
	EXPECT(nrb_exclude(Client, nullptr, 1) == NRB_ERROR_INVALID_ARGUMENT, "excluding everything is intensity 0");
	nrb_client_destroy(Client);
}

void TestResultsAndStats()
{
	const nrbglue::FResultPlan Srgb = nrbglue::PlanResult(NRB_FORMAT_RGBA8_SRGB);
	EXPECT(Srgb.Texture == nrbglue::EResultTexture::Rgba8 && !Srgb.bEncodeSrgb && Srgb.BytesPerPixel == 4,
		"rgba8_srgb: copied as stored, no sRGB view");
	const nrbglue::FResultPlan Linear8 = nrbglue::PlanResult(NRB_FORMAT_RGBA8);
	EXPECT(Linear8.Texture == nrbglue::EResultTexture::Rgba8 && Linear8.bEncodeSrgb, "rgba8 (linear): encoded");
	const nrbglue::FResultPlan Half = nrbglue::PlanResult(NRB_FORMAT_RGBA16F);
	EXPECT(Half.Texture == nrbglue::EResultTexture::Rgba16f && Half.bEncodeSrgb && Half.BytesPerPixel == 8, "rgba16f");
	EXPECT(nrbglue::PlanResult(NRB_FORMAT_R16U).Texture == nrbglue::EResultTexture::Unsupported, "not an image");

	nrbglue::FStatsView None = nrbglue::ReadStats(nullptr);
	EXPECT(!None.bValid && nrbglue::StatsLine(None).find("no client") != std::string::npos, "no client");
	nrbglue::FStatsView Refused;
	std::memset(&Refused.Raw, 0, sizeof(Refused.Raw));
	Refused.bValid = true;
	Refused.State = "refused";
	Refused.bRefused = true;
	Refused.RefusalCode = 6;
	Refused.RefusalMessage = "renderer 'x' needs buffers ['hudless_color']";
	const std::string Line = nrbglue::StatsLine(Refused);
	EXPECT(Line.find("REFUSED") == 0 + std::strlen("Neural rendering ") && Line.find("code 6") != std::string::npos &&
			Line.find("needs buffers ['hudless_color']") != std::string::npos && Line.find("off and on") != std::string::npos,
		"refusal first, with the reason and how to retry: %s", Line.c_str());
	EXPECT(std::strcmp(nrbglue::StateName(NRB_STATE_CONNECTED), "connected") == 0, "state names");
#if NRB_GLUE_HAS_REFUSAL
	EXPECT(std::strcmp(nrbglue::StateName(NRB_STATE_REFUSED), "refused") == 0, "refused");
#endif
	// a client that never connected: its frames are dropped, not an error
	const nrbglue::FClientConfig Config{nrbglue::FClientSettings()};
	nrb_client* Client = nullptr;
	if (nrb_client_create(&Config.Get(), &Client) == NRB_OK)
	{
		nrbglue::FStatsView S = nrbglue::ReadStats(Client);
		EXPECT(S.bValid && !S.bRefused && (S.State == "connecting" || S.State == "connected"), "state %s", S.State.c_str());
		EXPECT(!nrbglue::RetryIfRefused(Client), "nothing to retry");
		nrb_client_destroy(Client);
	}
}

// ------------------------------------------------------------------------------------------------------------ e2e
constexpr uint32_t W = 48, H = 32, Pitch = 64;  // rows padded as a GPU read-back's are

struct FFrameData
{
	std::vector<std::vector<uint8_t>> Rows;  // one padded image per target
	nrbglue::FPackedFrame Frame;
};

void MakeFrame(FFrameData& D, nrbglue::FCameraTracker& Tracker, uint8_t Seed)
{
	D.Rows.assign(nrbglue::NumTargets + 1, {});  // the packed targets, then hudless_color
	for (int I = 0; I < nrbglue::NumTargets; ++I)
	{
		const uint32_t Bpp = nrb_format_bytes_per_pixel(nrbglue::PackedTargets[I].Format);
		D.Rows[I].assign(static_cast<size_t>(Pitch) * H * Bpp, 0xEE);  // padding stays 0xEE
		for (uint32_t Y = 0; Y < H; ++Y)
		{
			for (uint32_t X = 0; X < W * Bpp; ++X)
			{
				// albedo: a pattern the passthrough renderer sends back; the other targets zero
				D.Rows[I][static_cast<size_t>(Y) * Pitch * Bpp + X] =
					I == nrbglue::TargetAlbedo ? static_cast<uint8_t>(X % 4 == 3 ? 255 : (X * 7 + Y * 13 + Seed) & 0xff) : 0;
			}
		}
		if (nrbglue::PackedTargets[I].Format == NRB_FORMAT_R32F)  // depth 0.5 / linear depth 20
		{
			const float Value = I == nrbglue::TargetDepth ? 0.5f : 20.0f;
			for (uint32_t Y = 0; Y < H; ++Y)
			{
				for (uint32_t X = 0; X < W; ++X)
				{
					std::memcpy(&D.Rows[I][(static_cast<size_t>(Y) * Pitch + X) * 4], &Value, 4);
				}
			}
		}
		D.Frame.Data[I] = D.Rows[I].data();
		D.Frame.RowPitchPixels[I] = Pitch;
	}
	// hudless_color (what the Tonemap pass copies): another pattern, which the passthrough renderer prefers to albedo
	std::vector<uint8_t>& Hudless = D.Rows[nrbglue::NumTargets];
	Hudless.assign(static_cast<size_t>(Pitch) * H * 4, 0xEE);
	for (uint32_t Y = 0; Y < H; ++Y)
	{
		for (uint32_t X = 0; X < W * 4; ++X)
		{
			Hudless[static_cast<size_t>(Y) * Pitch * 4 + X] = static_cast<uint8_t>(X % 4 == 3 ? 255 : (X * 3 + Y * 5 + 101) & 0xff);
		}
	}
	D.Frame.HudlessData = Hudless.data();
	D.Frame.HudlessRowPitchPixels = Pitch;
	D.Frame.Width = W;
	D.Frame.Height = H;
	D.Frame.Dt = 1.0 / 60.0;
	D.Frame.bHasSun = true;
	D.Frame.SunTowards[1] = 1.0f;
	nrbglue::FCameraInputs In;
	In.Position[2] = 500.0;
	In.FocalY = 1.0 / std::tan(0.5);
	In.Aspect = double(W) / H;
	In.RenderWidth = W;
	In.RenderHeight = H;
	nrb_camera_init(&D.Frame.Camera);
	Tracker.Build(In, D.Frame.Camera);
}

nrb_client* Connect(const char* Endpoint, nrb_connection_state Want, nrbglue::FStatsView& Stats)
{
	nrbglue::FClientSettings S;
	S.Endpoint = Endpoint;
	S.DeadlineMs = 5000.0;
	S.RenderWidth = W;
	S.RenderHeight = H;
	const nrbglue::FClientConfig Config(S);
	nrb_client* Client = nullptr;
	if (nrb_client_create(&Config.Get(), &Client) != NRB_OK)
	{
		std::printf("FAIL nrb_client_create: %s\n", nrb_last_error(nullptr));
		++Failures;
		return nullptr;
	}
	for (int I = 0; I < 300; ++I)  // up to 15 s
	{
		Stats = nrbglue::ReadStats(Client);
		if (Stats.Raw.state == Want)
		{
			break;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	return Client;
}

void TestEndToEnd(const char* Endpoint)
{
	nrbglue::FStatsView Stats;
	nrb_client* Client = Connect(Endpoint, NRB_STATE_CONNECTED, Stats);
	if (Client == nullptr)
	{
		return;
	}
	EXPECT(Stats.State == "connected", "state %s: %s", Stats.State.c_str(), nrb_last_error(Client));
	nrb_target Global{NRB_SCOPE_GLOBAL, nullptr, 0};
	EXPECT(nrbglue::FireStringMapEvent(Client, "boss_phase", {{"phase", "2"}, {"boss", "Grüner Drache"}}, &Global) ==
			NRB_OK,
		"fire_event: %s", nrb_last_error(Client));
	nrbglue::FCameraTracker Tracker;
	FFrameData D;
	bool bGot = false;
	for (int Attempt = 0; Attempt < 100 && !bGot; ++Attempt)
	{
		MakeFrame(D, Tracker, 3);
		const nrb_status Status = nrbglue::SubmitFrame(Client, D.Frame);
		EXPECT(Status == NRB_OK, "SubmitFrame: %s %s", nrb_status_name(Status), nrb_last_error(Client));
		for (int Wait = 0; Wait < 20 && !bGot; ++Wait)
		{
			std::this_thread::sleep_for(std::chrono::milliseconds(10));
			nrb_result R;
			std::memset(&R, 0, sizeof(R));
			R.struct_size = sizeof(R);
			R.struct_version = NRB_RESULT_VERSION;
			if (nrb_acquire_result(Client, &R) != NRB_OK)
			{
				continue;
			}
			bGot = true;
			const nrbglue::FResultPlan Plan = nrbglue::PlanResult(R.format);
			EXPECT(R.width == W && R.height == H, "result %ux%u", R.width, R.height);
			EXPECT(R.format == NRB_FORMAT_RGBA8_SRGB && Plan.Texture == nrbglue::EResultTexture::Rgba8 && !Plan.bEncodeSrgb,
				"passthrough answers rgba8_srgb, shown as stored: %s", nrb_format_name(R.format));
			int Mismatch = 0;
			for (uint32_t Y = 0; Y < H && R.pixels != nullptr; ++Y)
			{
				const uint8_t* Got = static_cast<const uint8_t*>(R.pixels) + static_cast<size_t>(Y) * R.stride;
				Mismatch += std::memcmp(Got, &D.Rows[nrbglue::NumTargets][static_cast<size_t>(Y) * Pitch * 4], W * 4) != 0;
			}
			EXPECT(Mismatch == 0, "%d rows differ from the hudless_color sent (row pitch %u px)", Mismatch, Pitch);
			nrb_release_result(Client, &R);
		}
	}
	EXPECT(bGot, "no result from %s: %s", Endpoint, nrb_last_error(Client));
	nrb_client_destroy(Client);
}

void TestRefused(const char* Endpoint)
{
#if NRB_GLUE_HAS_REFUSAL
	nrbglue::FStatsView Stats;
	nrb_client* Client = Connect(Endpoint, NRB_STATE_REFUSED, Stats);
	if (Client == nullptr)
	{
		return;
	}
	EXPECT(Stats.bRefused && Stats.State == "refused", "state %s: %s", Stats.State.c_str(), nrb_last_error(Client));
	EXPECT(Stats.RefusalCode != 0 && Stats.RefusalMessage.find("refuses every engine") != std::string::npos,
		"refusal %d: %s", Stats.RefusalCode, Stats.RefusalMessage.c_str());
	const std::string Line = nrbglue::StatsLine(Stats);
	EXPECT(Line.find("REFUSED") != std::string::npos && Line.find("refuses every engine") != std::string::npos,
		"overlay: %s", Line.c_str());
	// the player's toggle turned it on again: libnrb asks the renderer again, which refuses again
	EXPECT(nrbglue::RetryIfRefused(Client), "RetryIfRefused");
	std::this_thread::sleep_for(std::chrono::milliseconds(20));
	nrbglue::FStatsView After;
	for (int I = 0; I < 300; ++I)
	{
		After = nrbglue::ReadStats(Client);
		if (After.bRefused)
		{
			break;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	EXPECT(After.bRefused, "refused again after the retry: %s", After.State.c_str());
	nrb_client_destroy(Client);
#else
	(void)Endpoint;
	std::printf("SKIP refused: nrb.h has no NRB_STATE_REFUSED (nrb_stats version %d)\n", NRB_STATS_VERSION);
#endif
}
}  // namespace

int main(int Argc, char** Argv)
{
	const std::string Mode = Argc > 1 ? Argv[1] : "unit";
	if (Mode == "unit")
	{
		TestEncoding();
		TestKeys();
		TestLights();
		TestConfig();
		TestCamera();
		TestStylesAndControls();
		TestResultsAndStats();
	}
	else if (Mode == "e2e" && Argc > 2)
	{
		TestEndToEnd(Argv[2]);
	}
	else if (Mode == "refused" && Argc > 2)
	{
		TestRefused(Argv[2]);
	}
	else
	{
		std::printf("usage: %s unit | e2e ENDPOINT | refused ENDPOINT\n", Argv[0]);
		return 100;
	}
	std::printf("%s %s (%d failures)\n", Failures == 0 ? "OK" : "FAILED", Mode.c_str(), Failures);
	return Failures;
}
