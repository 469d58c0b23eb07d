#include "NeuralRenderingUserSettings.h"

#include "NeuralRenderingCVars.h"

UNeuralRenderingUserSettings::UNeuralRenderingUserSettings()
{
	CategoryName = TEXT("Plugins");
	SectionName = TEXT("NeuralRenderingThisMachine");
}

void UNeuralRenderingUserSettings::PostInitProperties()
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
void UNeuralRenderingUserSettings::PostEditChangeProperty(FPropertyChangedEvent& PropertyChangedEvent)
{
	Super::PostEditChangeProperty(PropertyChangedEvent);
	if (PropertyChangedEvent.Property)
	{
		ExportValuesToConsoleVariables(PropertyChangedEvent.Property);
	}
}
#endif

void UNeuralRenderingUserSettings::ApplyToConsoleVariables() const
{
	CVarNeuralRenderingCurveClientPublicKey->Set(*CurveClientPublicKey, ECVF_SetByProjectSetting);
	CVarNeuralRenderingCurveClientSecretKey->Set(*CurveClientSecretKey, ECVF_SetByProjectSetting);
}
