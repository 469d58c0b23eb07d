// The engine-independent half of the Unreal plugin (see NrbGlue.h). Standard C++ and nrb.h only.
#include "NrbGlue.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace nrbglue
{
// ------------------------------------------------------------------------------------------------- event params
nrb_status FireStringMapEvent(nrb_client* Client, const char* Name,
	const std::vector<std::pair<std::string, std::string>>& Params, const nrb_target* Target)
{
	nrb_params* Built = nullptr;
	nrb_status Status = nrb_params_create(&Built);
	for (size_t Index = 0; Status == NRB_OK && Index < Params.size(); ++Index)
	{
		const std::pair<std::string, std::string>& Pair = Params[Index];
		Status = nrb_params_set_string_n(Built, Pair.first.c_str(), Pair.second.data(), Pair.second.size());
	}
	if (Status == NRB_OK)
	{
		Status = nrb_fire_event_params(Client, Name, Built, Target);
	}
	nrb_params_destroy(Built);
	return Status;
}

// ------------------------------------------------------------------------------------------------- CurveZMQ keys
bool IsZ85Key(const std::string& Key)
{
	static const char Z85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
	if (Key.size() != 40)
	{
		return false;
	}
	for (const char Char : Key)
	{
		if (Char == 0 || std::strchr(Z85, Char) == nullptr)
		{
			return false;
		}
	}
	return true;
}

std::string CurveKeysProblem(const std::string (&Keys)[3], const FKeySource (&Sources)[3])
{
	if (Keys[0].empty() && Keys[1].empty() && Keys[2].empty())
	{
		return std::string();
	}
	for (int Index = 0; Index < 3; ++Index)
	{
		if (Keys[Index].empty())
		{
			return std::string(Sources[Index].Setting) + " (or " + Sources[Index].Environment +
				") is empty; CurveZMQ needs all three keys or none";
		}
		if (!IsZ85Key(Keys[Index]))
		{
			return std::string(Sources[Index].Setting) +
				" is not a CurveZMQ key (40 characters of Z85 text, as `nrb keys show` prints it; this one has " +
				std::to_string(Keys[Index].size()) + " characters)";
		}
	}
	return std::string();
}

// ------------------------------------------------------------------------------------------------- styles, controls
nrb_status SetStyleParams(nrb_client* Client, const char* Style,
	const std::vector<std::pair<std::string, double>>& Scalars,
	const std::vector<std::pair<std::string, std::array<double, 3>>>& Colors,
	const std::vector<std::pair<std::string, std::string>>& Names, double Strength, double OverSeconds,
	const nrb_target* Target)
{
	nrb_params* Params = nullptr;
	nrb_status Status = nrb_params_create(&Params);
	for (size_t I = 0; Status == NRB_OK && I < Scalars.size(); ++I)
	{
		Status = nrb_params_set_float(Params, Scalars[I].first.c_str(), Scalars[I].second);
	}
	for (size_t I = 0; Status == NRB_OK && I < Colors.size(); ++I)
	{
		Status = nrb_params_begin_array(Params, Colors[I].first.c_str());
		for (int C = 0; Status == NRB_OK && C < 3; ++C)
		{
			Status = nrb_params_set_float(Params, nullptr, Colors[I].second[C]);
		}
		if (Status == NRB_OK)
		{
			Status = nrb_params_end(Params);
		}
	}
	for (size_t I = 0; Status == NRB_OK && I < Names.size(); ++I)
	{
		Status = nrb_params_set_string(Params, Names[I].first.c_str(), Names[I].second.c_str());
	}
	if (Status == NRB_OK)
	{
		Status = nrb_set_style_params(Client, Style, Params, Strength, OverSeconds, Target);
	}
	nrb_params_destroy(Params);
	return Status;
}

double ClampIntensity(double Intensity)
{
	return Intensity != Intensity ? 1.0 : std::min(1.0, std::max(0.0, Intensity));  // NaN: the default, 1
}

// ------------------------------------------------------------------------------------------------- buffers
const FTargetSpec PackedTargets[NumTargets] = {
	{NRB_BUFFER_ALBEDO, NRB_FORMAT_RGBA8_SRGB, 0u},
	{NRB_BUFFER_NORMALS, NRB_FORMAT_RGBA16F, 0u},
	{NRB_BUFFER_DEPTH, NRB_FORMAT_R32F, NRB_BUFFER_DEPTH_REVERSED | NRB_BUFFER_DEPTH_INFINITE},
	{NRB_BUFFER_LINEAR_DEPTH, NRB_FORMAT_R32F, 0u},
	{NRB_BUFFER_MOTION_VECTORS, NRB_FORMAT_RG16F, 0u},
	{NRB_BUFFER_ROUGHNESS, NRB_FORMAT_R8, 0u},
	{NRB_BUFFER_METALLIC, NRB_FORMAT_R8, 0u},
	{NRB_BUFFER_EMISSIVE, NRB_FORMAT_RGBA16F, 0u},
	{NRB_BUFFER_OBJECT_ID, NRB_FORMAT_R16U, 0u},
	{NRB_BUFFER_MATERIAL_ID, NRB_FORMAT_R16U, 0u},
};
const FTargetSpec SunDirection = {NRB_BUFFER_X_SUN_DIRECTION, NRB_FORMAT_RGBA32F, 0u};
const FTargetSpec HudlessColor = {NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8_SRGB, 0u};
const FTargetSpec LightList = {NRB_BUFFER_X_LIGHTS, NRB_FORMAT_RGBA32F, 0u};

std::vector<nrb_buffer_spec> OfferedBuffers()
{
	std::vector<nrb_buffer_spec> Out;
	for (const FTargetSpec& Target : PackedTargets)
	{
		Out.push_back(nrb_buffer_spec{Target.Name, Target.Format});
	}
	Out.push_back(nrb_buffer_spec{HudlessColor.Name, HudlessColor.Format});
	Out.push_back(nrb_buffer_spec{SunDirection.Name, SunDirection.Format});
	Out.push_back(nrb_buffer_spec{LightList.Name, LightList.Format});
	return Out;
}

nrb_light MakeLight(const FLightInputs& In, double Exposure)
{
	constexpr double Pi = 3.14159265358979323846;
	nrb_light L;
	nrb_light_init(&L);
	L.type = In.Type == FLightInputs::EType::Spot          ? NRB_LIGHT_SPOT
	         : In.Type == FLightInputs::EType::Directional ? NRB_LIGHT_DIRECTIONAL
	                                                        : NRB_LIGHT_POINT;
	const double Len = std::sqrt(In.Direction[0] * In.Direction[0] + In.Direction[1] * In.Direction[1] +
	                             In.Direction[2] * In.Direction[2]);
	const double Half = In.AttenuationRadius * 0.5;
	const double Scale = Exposure * (In.Type != FLightInputs::EType::Directional && !In.bInverseSquared ? Half * Half : 1.0);
	for (int I = 0; I < 3; ++I)
	{
		L.position[I] = static_cast<float>(In.Position[I]);
		L.direction[I] = Len > 0.0 ? static_cast<float>(In.Direction[I] / Len) : (I == 1 ? -1.0f : 0.0f);
		L.color[I] = static_cast<float>(std::max(0.0, In.Brightness[I] * Scale));
	}
	L.range = static_cast<float>(std::max(0.0, In.AttenuationRadius));
	if (In.Type == FLightInputs::EType::Spot)
	{
		const double Outer = std::clamp(In.OuterConeDeg, 0.1, 180.0) * Pi / 180.0;
		L.outer_cone = static_cast<float>(Outer);
		L.inner_cone = static_cast<float>(std::clamp(In.InnerConeDeg * Pi / 180.0, 0.0, Outer));
	}
	return L;
}

// ------------------------------------------------------------------------------------------------- client config
FClientConfig::FClientConfig(const FClientSettings& Settings) : Held(Settings), Buffers(OfferedBuffers())
{

	nrb_client_config_init(&Config);
	Config.endpoint = Held.Endpoint.c_str();
	Config.deadline_ms = Held.DeadlineMs;
	Config.frames_in_flight = 0;  // adaptive, libnrb's recommendation (the plugin's two read-back slots are its own)
	Config.engine_name = "unreal";
	Config.engine_version = Held.EngineVersion.c_str();
	Config.render_width = Held.RenderWidth;
	Config.render_height = Held.RenderHeight;
	Config.output_width = Held.OutputWidth;
	Config.output_height = Held.OutputHeight;
	Config.buffers = Buffers.data();
	Config.buffer_count = static_cast<uint32_t>(Buffers.size());
	Config.start_disabled = Held.bEnabled ? 0u : 1u;
	Config.log_fn = Held.LogFn;
	Config.log_user = Held.LogUser;
	Config.log_level = Held.LogLevel;
	if (!Held.CurveKeys[0].empty() && !Held.CurveKeys[1].empty() && !Held.CurveKeys[2].empty())
	{
		Config.curve_server_public_key = Held.CurveKeys[0].c_str();
		Config.curve_client_public_key = Held.CurveKeys[1].c_str();
		Config.curve_client_secret_key = Held.CurveKeys[2].c_str();
	}
}

// ------------------------------------------------------------------------------------------------- camera
void Mul4(const double A[16], const double B[16], double Out[16])
{
	double R[16];
	for (int I = 0; I < 4; ++I)
	{
		for (int J = 0; J < 4; ++J)
		{
			double S = 0.0;
			for (int K = 0; K < 4; ++K)
			{
				S += A[I * 4 + K] * B[K * 4 + J];
			}
			R[I * 4 + J] = S;
		}
	}
	std::memcpy(Out, R, sizeof(R));
}

bool Invert4(const double M[16], double Out[16])
{
	// Gauss-Jordan with partial pivoting on [M | I].
	double A[4][8];
	for (int I = 0; I < 4; ++I)
	{
		for (int J = 0; J < 4; ++J)
		{
			A[I][J] = M[I * 4 + J];
			A[I][J + 4] = I == J ? 1.0 : 0.0;
		}
	}
	for (int Col = 0; Col < 4; ++Col)
	{
		int Pivot = Col;
		for (int Row = Col + 1; Row < 4; ++Row)
		{
			if (std::fabs(A[Row][Col]) > std::fabs(A[Pivot][Col]))
			{
				Pivot = Row;
			}
		}
		if (std::fabs(A[Pivot][Col]) < 1e-300)
		{
			return false;
		}
		if (Pivot != Col)
		{
			for (int J = 0; J < 8; ++J)
			{
				const double Tmp = A[Col][J];
				A[Col][J] = A[Pivot][J];
				A[Pivot][J] = Tmp;
			}
		}
		const double Scale = 1.0 / A[Col][Col];
		for (int J = 0; J < 8; ++J)
		{
			A[Col][J] *= Scale;
		}
		for (int Row = 0; Row < 4; ++Row)
		{
			if (Row != Col && A[Row][Col] != 0.0)
			{
				const double Factor = A[Row][Col];
				for (int J = 0; J < 8; ++J)
				{
					A[Row][J] -= Factor * A[Col][J];
				}
			}
		}
	}
	for (int I = 0; I < 4; ++I)
	{
		for (int J = 0; J < 4; ++J)
		{
			Out[I * 4 + J] = A[I][J + 4];
		}
	}
	return true;
}

void FCameraTracker::Build(const FCameraInputs& In, nrb_camera& Out)
{
	std::memcpy(Out.position, In.Position, sizeof(Out.position));
	std::memcpy(Out.forward, In.Forward, sizeof(Out.forward));
	std::memcpy(Out.right, In.Right, sizeof(Out.right));
	std::memcpy(Out.up, In.Up, sizeof(Out.up));

	// world_to_view: rows right, up, -forward (the view looks down -Z)
	double* WtoV = Out.world_to_view;
	std::memset(WtoV, 0, sizeof(Out.world_to_view));
	const double* Rows[3] = {In.Right, In.Up, In.Forward};
	for (int R = 0; R < 3; ++R)
	{
		const double Sign = R == 2 ? -1.0 : 1.0;
		for (int C = 0; C < 3; ++C)
		{
			WtoV[R * 4 + C] = Sign * Rows[R][C];
		}
		WtoV[R * 4 + 3] =
			-Sign * (Rows[R][0] * In.Position[0] + Rows[R][1] * In.Position[1] + Rows[R][2] * In.Position[2]);
	}
	WtoV[15] = 1.0;

	// view_to_clip: reversed Z, infinite far (device depth = near / distance), as Unreal renders
	double* P = Out.view_to_clip;
	std::memset(P, 0, sizeof(Out.view_to_clip));
	P[0] = In.FocalY / In.Aspect;
	P[5] = In.FocalY;
	P[11] = In.Near;
	P[14] = -1.0;
	Invert4(P, Out.clip_to_view);

	double ViewProj[16];
	Mul4(P, WtoV, ViewProj);
	const bool bReset = !bHavePrev || In.bCameraCut;
	const double* Prev = bReset ? ViewProj : PrevViewProj;
	double InvViewProj[16];
	Invert4(ViewProj, InvViewProj);
	Mul4(Prev, InvViewProj, Out.clip_to_prev_clip);
	Invert4(Out.clip_to_prev_clip, Out.prev_clip_to_clip);
	std::memcpy(PrevViewProj, ViewProj, sizeof(ViewProj));
	bHavePrev = true;

	Out.near_plane = In.Near;
	Out.far_plane = std::numeric_limits<double>::infinity();
	Out.fov_y = 2.0 * std::atan(1.0 / In.FocalY);
	Out.aspect = In.Aspect;
	Out.mv_scale[0] = Out.mv_scale[1] = 1.0;
	Out.depth_inverted = 1;
	Out.depth_infinite = 1;
	Out.camera_motion_included = 1;
	Out.reset = bReset ? 1 : 0;
	Out.render_width = In.RenderWidth;
	Out.render_height = In.RenderHeight;
	Out.output_width = In.OutputWidth != 0 ? In.OutputWidth : In.RenderWidth;
	Out.output_height = In.OutputHeight != 0 ? In.OutputHeight : In.RenderHeight;
	Out.pre_exposure = In.PreExposure > 0.0 ? In.PreExposure : 0.0;
	Out.tone_mapping = In.ToneMapping;
}

nrb_tone_mapping ToneMappingOf(const FFilmCurve& Film)
{
	const FFilmCurve Default;
	const auto Same = [](double A, double B) { return std::fabs(A - B) <= 1e-4; };
	const bool bDefault = Same(Film.Slope, Default.Slope) && Same(Film.Toe, Default.Toe) &&
		Same(Film.Shoulder, Default.Shoulder) && Same(Film.BlackClip, Default.BlackClip) &&
		Same(Film.WhiteClip, Default.WhiteClip);
	return bDefault ? NRB_TONE_MAPPING_ACES : NRB_TONE_MAPPING_OTHER;
}

// ------------------------------------------------------------------------------------------------- frames
nrb_status SubmitFrame(nrb_client* Client, const FPackedFrame& Frame)
{
	if (Client == nullptr)
	{
		return NRB_ERROR_INVALID_ARGUMENT;
	}
	nrb_frame_info Info;
	std::memset(&Info, 0, sizeof(Info));
	Info.struct_size = sizeof(Info);
	Info.struct_version = NRB_FRAME_INFO_VERSION;
	Info.dt = Frame.Dt;
	nrb_status Status = nrb_frame_begin(Client, &Info, nullptr);
	if (Status != NRB_OK)
	{
		return Status;
	}
	for (int I = 0; I < NumTargets; ++I)
	{
		nrb_buffer_desc Desc;
		std::memset(&Desc, 0, sizeof(Desc));
		Desc.struct_size = sizeof(Desc);
		Desc.struct_version = NRB_BUFFER_DESC_VERSION;
		Desc.name = PackedTargets[I].Name;
		Desc.format = PackedTargets[I].Format;
		Desc.width = Frame.Width;
		Desc.height = Frame.Height;
		Desc.stride = Frame.RowPitchPixels[I] * nrb_format_bytes_per_pixel(PackedTargets[I].Format);
		Desc.data = Frame.Data[I];
		Desc.flags = PackedTargets[I].Flags;
		Status = nrb_frame_tag_buffer(Client, &Desc);  // copies the rows
		if (Status != NRB_OK)
		{
			return Status;
		}
	}
	if (Frame.HudlessData != nullptr)
	{
		nrb_buffer_desc Desc;
		std::memset(&Desc, 0, sizeof(Desc));
		Desc.struct_size = sizeof(Desc);
		Desc.struct_version = NRB_BUFFER_DESC_VERSION;
		Desc.name = HudlessColor.Name;
		Desc.format = HudlessColor.Format;
		Desc.width = Frame.Width;
		Desc.height = Frame.Height;
		Desc.stride = Frame.HudlessRowPitchPixels * nrb_format_bytes_per_pixel(HudlessColor.Format);
		Desc.data = Frame.HudlessData;
		Status = nrb_frame_tag_buffer(Client, &Desc);
		if (Status != NRB_OK)
		{
			return Status;
		}
	}
	if (Frame.bHasSun)  // a 1x1 per-frame constant (docs/protocol.md 6.1)
	{
		nrb_buffer_desc Desc;
		std::memset(&Desc, 0, sizeof(Desc));
		Desc.struct_size = sizeof(Desc);
		Desc.struct_version = NRB_BUFFER_DESC_VERSION;
		Desc.name = SunDirection.Name;
		Desc.format = SunDirection.Format;
		Desc.width = Desc.height = 1;
		Desc.stride = sizeof(Frame.SunTowards);
		Desc.data = Frame.SunTowards;
		Status = nrb_frame_tag_buffer(Client, &Desc);
		if (Status != NRB_OK)
		{
			return Status;
		}
	}
	const uint32_t LightCount = static_cast<uint32_t>(std::min<size_t>(Frame.Lights.size(), NRB_MAX_LIGHTS));
	Status = nrb_frame_set_lights(Client, Frame.Lights.data(), LightCount);  // 0: no list this frame
	if (Status != NRB_OK)
	{
		return Status;
	}
	Status = nrb_frame_set_camera(Client, &Frame.Camera);
	if (Status != NRB_OK)
	{
		return Status;
	}
	return nrb_frame_submit(Client);  // returns at once; the client's I/O thread sends it
}

// ------------------------------------------------------------------------------------------------- results
FResultPlan PlanResult(nrb_format Format)
{
	FResultPlan Plan;
	switch (Format)
	{
	case NRB_FORMAT_RGBA8_SRGB: Plan.Texture = EResultTexture::Rgba8; Plan.bEncodeSrgb = false; break;
	case NRB_FORMAT_RGBA8: Plan.Texture = EResultTexture::Rgba8; Plan.bEncodeSrgb = true; break;
	case NRB_FORMAT_RGBA16F: Plan.Texture = EResultTexture::Rgba16f; Plan.bEncodeSrgb = true; break;
	case NRB_FORMAT_RGBA32F: Plan.Texture = EResultTexture::Rgba32f; Plan.bEncodeSrgb = true; break;
	default: return Plan;
	}
	Plan.BytesPerPixel = nrb_format_bytes_per_pixel(Format);
	return Plan;
}

// ------------------------------------------------------------------------------------------------- statistics
const char* StateName(nrb_connection_state State)
{
	switch (State)
	{
	case NRB_STATE_DISABLED: return "disabled";
	case NRB_STATE_CONNECTING: return "connecting";
	case NRB_STATE_CONNECTED: return "connected";
#if NRB_GLUE_HAS_REFUSAL
	case NRB_STATE_REFUSED: return "refused";
#endif
	default: return "unknown";
	}
}

FStatsView ReadStats(const nrb_client* Client)
{
	FStatsView View;
	std::memset(&View.Raw, 0, sizeof(View.Raw));
	View.Raw.struct_size = sizeof(View.Raw);
	View.Raw.struct_version = NRB_STATS_VERSION;
	if (Client == nullptr || nrb_get_stats(Client, &View.Raw) != NRB_OK)
	{
		View.State = "no client";
		return View;
	}
	View.bValid = true;
	View.State = StateName(View.Raw.state);
#if NRB_GLUE_HAS_REFUSAL
	View.bRefused = View.Raw.state == NRB_STATE_REFUSED;
	if (View.bRefused)
	{
		View.RefusalCode = View.Raw.refusal_code;
		// the library NUL-terminates it; bound the read anyway
		const char* Message = View.Raw.refusal_message;
		const void* End = std::memchr(Message, 0, sizeof(View.Raw.refusal_message));
		View.RefusalMessage.assign(Message, End != nullptr ? static_cast<const char*>(End) - Message
														  : sizeof(View.Raw.refusal_message));
	}
#endif
	return View;
}

std::string StatsLine(const FStatsView& Stats)
{
	if (!Stats.bValid)
	{
		return "Neural rendering: no client (see the log)";
	}
	std::string Line;
	if (Stats.bRefused)
	{
		Line = "Neural rendering REFUSED by the renderer (code " + std::to_string(Stats.RefusalCode) + "): " +
			(Stats.RefusalMessage.empty() ? std::string("no reason given") : Stats.RefusalMessage) +
			". Toggle neural rendering off and on to retry. ";
	}
	char Numbers[256];
	std::snprintf(Numbers, sizeof(Numbers),
		"Neural rendering: %s, sent %llu, results %llu, fallbacks %llu, reconnects %llu, rtt p50 %.1f ms p95 %.1f ms",
		Stats.State.c_str(), static_cast<unsigned long long>(Stats.Raw.frames_sent),
		static_cast<unsigned long long>(Stats.Raw.results_received), static_cast<unsigned long long>(Stats.Raw.fallbacks),
		static_cast<unsigned long long>(Stats.Raw.reconnects), Stats.Raw.rtt_p50_ms, Stats.Raw.rtt_p95_ms);
	return Line + Numbers;
}

bool RetryIfRefused(nrb_client* Client)
{
#if NRB_GLUE_HAS_REFUSAL
	if (Client != nullptr && ReadStats(Client).bRefused)
	{
		return nrb_client_retry(Client) == NRB_OK;
	}
#else
	(void)Client;
#endif
	return false;
}
}  // namespace nrbglue
