#include "NeuralRenderingSettings.h"

#include "NeuralRenderingCVars.h"

UNeuralRenderingSettings::UNeuralRenderingSettings()
{
	CategoryName = TEXT("Plugins");
	SectionName = TEXT("NeuralRendering");
}

void UNeuralRenderingSettings::PostInitProperties()
{
	Super::PostInitProperties();
#if WITH_EDITOR
	if (IsTemplate())
	{
		// The class default object has just read its ini file, and the import copies every bound console variable
		// over it. Push the saved values first, at project-setting priority, so that the import keeps them; a value
		// already set with a higher priority (the command line, for one) is kept by the cvar and wins in the editor UI.
		ApplyToConsoleVariables();
		ImportConsoleVariableValues();
	}
#endif
}

#if WITH_EDITOR
void UNeuralRenderingSettings::PostEditChangeProperty(FPropertyChangedEvent& PropertyChangedEvent)
{
	Super::PostEditChangeProperty(PropertyChangedEvent);
	if (PropertyChangedEvent.Property)
	{
		ExportValuesToConsoleVariables(PropertyChangedEvent.Property);
	}
}
#endif

void UNeuralRenderingSettings::ApplyToConsoleVariables() const
{
	CVarNeuralRenderingEnable->Set(bEnabled ? 1 : 0, ECVF_SetByProjectSetting);
	CVarNeuralRenderingEndpoint->Set(*Endpoint, ECVF_SetByProjectSetting);
	CVarNeuralRenderingDeadlineMs->Set(DeadlineMs, ECVF_SetByProjectSetting);
	CVarNeuralRenderingCurveServerPublicKey->Set(*CurveServerPublicKey, ECVF_SetByProjectSetting);
}
