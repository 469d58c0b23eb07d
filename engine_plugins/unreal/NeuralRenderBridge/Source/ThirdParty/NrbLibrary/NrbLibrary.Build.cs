// libnrb (the Neural Render Bridge C ABI, cpp/include/nrb/nrb.h) and what it links, prebuilt: see the plugin README.
//   include/nrb/nrb.h, nrb_export.h, version.h          copied from the nrb repository's cpp/include/nrb/
//   lib/Linux/libnrb.so(.0), libzmq.so.5, liblz4.so.1, libzstd.so.1
//   lib/Win64/nrb.lib, nrb.dll, libzmq-mt-4_3_5.dll, lz4.dll, zstd.dll
//   lib/Mac/libnrb.dylib, libnrb.0.dylib, libzmq.5.dylib, liblz4.1.dylib, libzstd.1.dylib
// Every shared library libnrb loads is staged with the game (RuntimeDependencies): libzmq, and lz4 and zstd for the
// compressed transports.
using System.IO;
using UnrealBuildTool;

public class NrbLibrary : ModuleRules
{
	public NrbLibrary(ReadOnlyTargetRules Target) : base(Target)
	{
		Type = ModuleType.External;
		PublicSystemIncludePaths.Add(Path.Combine(ModuleDirectory, "include"));

		if (Target.Platform == UnrealTargetPlatform.Win64)
		{
			string Lib = Path.Combine(ModuleDirectory, "lib", "Win64");
			PublicAdditionalLibraries.Add(Path.Combine(Lib, "nrb.lib"));
			// Delay-loaded, so that the module can load it from the plugin's Binaries folder with
			// FPlatformProcess::GetDllHandle before the first call (FNeuralRenderBridgeModule::LoadLibnrb), as Epic's
			// ThirdPartyLibrary template does; its imports are loaded from the same folder.
			PublicDelayLoadDLLs.Add("nrb.dll");
			string Binaries = "$(PluginDir)/Binaries/ThirdParty/NrbLibrary/Win64";
			foreach (string Dll in new string[] { "nrb.dll", "libzmq-mt-4_3_5.dll", "lz4.dll", "zstd.dll" })
			{
				RuntimeDependencies.Add(Path.Combine(Binaries, Dll), Path.Combine(Lib, Dll));
			}
		}
		else if (Target.Platform == UnrealTargetPlatform.Linux)
		{
			string Lib = Path.Combine(ModuleDirectory, "lib", "Linux");
			PublicAdditionalLibraries.Add(Path.Combine(Lib, "libnrb.so"));
			foreach (string So in new string[] { "libnrb.so.0", "libzmq.so.5", "liblz4.so.1", "libzstd.so.1" })
			{
				RuntimeDependencies.Add(Path.Combine("$(BinaryOutputDir)", So), Path.Combine(Lib, So));
			}
		}
		else if (Target.Platform == UnrealTargetPlatform.Mac)
		{
			string Lib = Path.Combine(ModuleDirectory, "lib", "Mac");
			PublicAdditionalLibraries.Add(Path.Combine(Lib, "libnrb.dylib"));
			foreach (string Dylib in new string[] { "libnrb.0.dylib", "libzmq.5.dylib", "liblz4.1.dylib", "libzstd.1.dylib" })
			{
				RuntimeDependencies.Add(Path.Combine("$(BinaryOutputDir)", Dylib), Path.Combine(Lib, Dylib));
			}
		}
	}
}
