// Project Settings > Plugins > Neural Rendering (This Machine): this install's CurveZMQ key pair, bound to the
// r.NeuralRendering.CurveClient* console variables.
#pragma once

#include "CoreMinimal.h"
#include "Engine/DeveloperSettingsBackedByCVars.h"

#include "NeuralRenderingUserSettings.generated.h"

/** A client's key pair belongs to one install (`nrb keys generate` on that machine), and its secret key must not be
 * committed with the project. Config = GameUserSettings without DefaultConfig: the settings page saves these with
 * SaveConfig() into the user's Saved/Config/<Platform>/GameUserSettings.ini (<Platform>Editor in the editor), which
 * packaged games read as well and which never leaves that machine. The keys are the console variables' names
 * (r.NeuralRendering.CurveClientPublicKey=...), applied to them when the class default object is created. Not "Set as Default" on this page: that would
 * copy them into the project's Config/DefaultGameUserSettings.ini. */
UCLASS(Config = GameUserSettings, meta = (DisplayName = "Neural Rendering (This Machine)"))
class NEURALRENDERBRIDGE_API UNeuralRenderingUserSettings : public UDeveloperSettingsBackedByCVars
{
	GENERATED_BODY()

public:
	UNeuralRenderingUserSettings();

	/** CurveZMQ: this install's public key (Z85 text, 40 characters: `nrb keys show alice.key`); its .key file goes
	 * into the server's --allow-dir. Empty: NRB_CURVE_CLIENT_PUBLIC_KEY. */
	UPROPERTY(Config, EditAnywhere, Category = "CurveZMQ",
		meta = (ConsoleVariable = "r.NeuralRendering.CurveClientPublicKey"))
	FString CurveClientPublicKey;

	/** CurveZMQ: this install's secret key (Z85 text, 40 characters: `nrb keys show alice.key_secret --secret`).
	 * Empty: NRB_CURVE_CLIENT_SECRET_KEY. Shown as dots here; stored as plain text in the user's ini file. */
	UPROPERTY(Config, EditAnywhere, Category = "CurveZMQ",
		meta = (ConsoleVariable = "r.NeuralRendering.CurveClientSecretKey", PasswordField = true))
	FString CurveClientSecretKey;

	virtual FName GetCategoryName() const override { return TEXT("Plugins"); }
	/** The class default object applies the saved keys ([/Script/NeuralRenderBridge.NeuralRenderingUserSettings] of
	 * the user's GameUserSettings ini) to the console variables before the base class imports them (editor). */
	virtual void PostInitProperties() override;
};
