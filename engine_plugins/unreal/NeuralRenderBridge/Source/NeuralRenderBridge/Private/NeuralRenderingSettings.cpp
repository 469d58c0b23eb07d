#include "NeuralRenderingSettings.h"

#include "CoreGlobals.h"
#include "HAL/IConsoleManager.h"
#include "Misc/ConfigUtilities.h"

UNeuralRenderingSettings::UNeuralRenderingSettings()
{
	CategoryName = TEXT("Plugins");
	SectionName = TEXT("NeuralRendering");
}

void UNeuralRenderingSettings::PostInitProperties()
{
	if (IsTemplate())
	{
		// The saved values win over the console variables' defaults: apply the ini section (keys are the console
		// variables' names) before UDeveloperSettingsBackedByCVars imports the console variables into the properties.
		// In a packaged game this is the only way the saved values arrive. A value set with a higher priority (the
		// command line, the console) is kept by its console variable.
		UE::ConfigUtilities::ApplyCVarSettingsFromIni(TEXT("/Script/NeuralRenderBridge.NeuralRenderingSettings"),
			*GEngineIni, ECVF_SetByProjectSetting);
	}
	Super::PostInitProperties();
}
