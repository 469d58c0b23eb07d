// Neural Render Bridge runtime module: scene view extension, console variables, settings, Blueprint library.
// Private/NrbGlue.cpp is plain C++ over libnrb's C ABI (no engine headers), compiled with the rest.
using UnrealBuildTool;

public class NeuralRenderBridge : ModuleRules
{
	public NeuralRenderBridge(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;

		PublicDependencyModuleNames.AddRange(new string[]
		{
			"Core",
			"CoreUObject",
			"Engine",
			"DeveloperSettings",
		});

		PrivateDependencyModuleNames.AddRange(new string[]
		{
			"Projects",
			"RenderCore",
			"Renderer",
			"RHI",
			"NrbLibrary",
		});
	}
}
