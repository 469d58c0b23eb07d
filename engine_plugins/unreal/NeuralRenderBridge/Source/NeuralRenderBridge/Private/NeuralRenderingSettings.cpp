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
		ImportConsoleVariableValues();  // values set on the command line or in ini files win in the editor UI
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
}
