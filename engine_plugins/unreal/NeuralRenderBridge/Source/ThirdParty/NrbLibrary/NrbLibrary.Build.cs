// libnrb (the Neural Render Bridge C ABI, cpp/include/nrb/nrb.h) and libzmq, prebuilt: see the plugin README.
//   include/nrb/nrb.h, nrb_export.h, version.h          copied from the nrb repository's cpp/include/nrb/
//   lib/Linux/libnrb.so(.0), libzmq.so.5                 cmake --build ... --target nrb (+ the system libzmq)
//   lib/Win64/nrb.lib, nrb.dll, libzmq*.dll
//   lib/Mac/libnrb.dylib, libnrb.0.dylib, libzmq.5.dylib
using System.IO;
using UnrealBuildTool;

public class NrbLibrary : ModuleRules
{
	public NrbLibrary(ReadOnlyTargetRules Target) : base(Target)
	{
		Type = ModuleType.External;
		PublicIncludePaths.Add(Path.Combine(ModuleDirectory, "include"));

		if (Target.Platform == UnrealTargetPlatform.Win64)
		{
			string Lib = Path.Combine(ModuleDirectory, "lib", "Win64");
			PublicAdditionalLibraries.Add(Path.Combine(Lib, "nrb.lib"));
			PublicDelayLoadDLLs.Add("nrb.dll");
			RuntimeDependencies.Add("$(BinaryOutputDir)/nrb.dll", Path.Combine(Lib, "nrb.dll"));
			RuntimeDependencies.Add("$(BinaryOutputDir)/libzmq-mt-4_3_5.dll", Path.Combine(Lib, "libzmq-mt-4_3_5.dll"));
		}
		else if (Target.Platform == UnrealTargetPlatform.Linux)
		{
			string Lib = Path.Combine(ModuleDirectory, "lib", "Linux");
			PublicAdditionalLibraries.Add(Path.Combine(Lib, "libnrb.so"));
			RuntimeDependencies.Add("$(BinaryOutputDir)/libnrb.so.0", Path.Combine(Lib, "libnrb.so.0"));
			RuntimeDependencies.Add("$(BinaryOutputDir)/libzmq.so.5", Path.Combine(Lib, "libzmq.so.5"));
		}
		else if (Target.Platform == UnrealTargetPlatform.Mac)
		{
			string Lib = Path.Combine(ModuleDirectory, "lib", "Mac");
			PublicAdditionalLibraries.Add(Path.Combine(Lib, "libnrb.dylib"));
			RuntimeDependencies.Add("$(BinaryOutputDir)/libnrb.0.dylib", Path.Combine(Lib, "libnrb.0.dylib"));
			RuntimeDependencies.Add("$(BinaryOutputDir)/libzmq.5.dylib", Path.Combine(Lib, "libzmq.5.dylib"));
		}
	}
}
