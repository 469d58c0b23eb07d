#include "NeuralRenderingUserSettings.h"

#include "CoreGlobals.h"
#include "HAL/IConsoleManager.h"
#include "Misc/ConfigUtilities.h"

UNeuralRenderingUserSettings::UNeuralRenderingUserSettings()
{
	CategoryName = TEXT("Plugins");
	SectionName = TEXT("NeuralRenderingThisMachine");
}

void UNeuralRenderingUserSettings::PostInitProperties()
{
	if (IsTemplate())
	{
		// As UNeuralRenderingSettings, from this user's GameUserSettings ini (Config = GameUserSettings).
		UE::ConfigUtilities::ApplyCVarSettingsFromIni(TEXT("/Script/NeuralRenderBridge.NeuralRenderingUserSettings"),
			*GGameUserSettingsIni, ECVF_SetByProjectSetting);
	}
	Super::PostInitProperties();
}
