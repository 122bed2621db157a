using System.Diagnostics;

namespace Mblm.Tests;

/// <summary>
/// A user's own project, created outside this repository (so none of our Directory.Build files apply), that references
/// src/Mblm: it must build and run a tensor operation on this machine (Debian 12's libstdc++ lacks GLIBCXX_3.4.32, so
/// this only passes when the runtime fallback patches the consumer's copy of libLibTorchSharp.so).
/// </summary>
[TestClass]
public sealed class ConsumerProjectTests
{
    [TestMethod]
    [Timeout(600_000, CooperativeCancellation = true)]
    public void ConsumerOutsideRepo_BuildsAndRunsTensorOperation()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-consumer-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string mblmProject = Path.Combine(TestData.RepoRoot, "src", "Mblm", "Mblm.csproj");
            File.Copy(Path.Combine(TestData.RepoRoot, "NuGet.config"), Path.Combine(dir, "NuGet.config"));
            File.WriteAllText(Path.Combine(dir, "Consumer.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                  </PropertyGroup>
                  <ItemGroup>
                    <ProjectReference Include="{mblmProject}" />
                    <!-- the application chooses its libtorch -->
                    <PackageReference Include="libtorch-cpu-linux-x64" Version="2.10.0" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(dir, "Program.cs"), """
                using TorchSharp;
                Mblm.Native.TorchRuntime.EnsureLoadable();
                var t = torch.arange(6, dtype: torch.float32).view(2, 3);
                Console.WriteLine($"sum={t.sum().item<float>()}");
                Console.WriteLine($"patched={Mblm.Native.TorchRuntime.PatchedFiles.Count}");
                """);
            var build = Run("dotnet", $"build -c Release -o \"{Path.Combine(dir, "out")}\" -p:SkipLibTorchSharpPatch=true", dir);
            Assert.AreEqual(0, build.Code, "consumer build failed:\n" + build.Output);
            // The output's copy as TorchSharp ships it: a notebook host's runtime fallback may have patched the package
            // cache's copy already (then the build copied a patched file and nothing would be left to patch).
            PristineLibTorchSharp(Path.Combine(dir, "out"));
            var run = Run("dotnet", $"\"{Path.Combine(dir, "out", "Consumer.dll")}\"", dir);
            Assert.AreEqual(0, run.Code, "consumer run failed:\n" + run.Output);
            StringAssert.Contains(run.Output, "sum=15");
            StringAssert.Contains(run.Output, "patched=1", "the runtime fallback patched the consumer's own copy");
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// Overwrites every libLibTorchSharp.so under <paramref name="output"/> with the file as packed in TorchSharp's .nupkg
    /// (strong GLIBCXX_3.4.32 need); returns how many were written.
    /// </summary>
    internal static int PristineLibTorchSharp(string output)
    {
        string nupkg = Path.Combine(PackageCache, "torchsharp", "0.107.0", "torchsharp.0.107.0.nupkg");
        Assert.IsTrue(File.Exists(nupkg), $"TorchSharp's package {nupkg}");
        using var zip = System.IO.Compression.ZipFile.OpenRead(nupkg);
        var entry = zip.GetEntry("runtimes/linux-x64/native/libLibTorchSharp.so") ?? throw new AssertFailedException("no libLibTorchSharp.so in " + nupkg);
        int written = 0;
        foreach (string target in Directory.EnumerateFiles(output, "libLibTorchSharp.so", SearchOption.AllDirectories))
        {
            System.IO.Compression.ZipFileExtensions.ExtractToFile(entry, target, overwrite: true);
            written++;
        }
        Assert.IsTrue(written > 0, $"no libLibTorchSharp.so under {output}");
        return written;
    }

    /// <summary>Strong GLIBCXX_3.4.32 needs of the package cache's extracted libLibTorchSharp.so (0 once a host patched it).</summary>
    internal static int StrongNeedsInPackageCache()
    {
        string lib = Path.Combine(PackageCache, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        return Mblm.Native.ElfVersionNeeds.CountStrong(File.ReadAllBytes(lib), Mblm.Native.ElfVersionNeeds.TargetVersion);
    }

    private static string PackageCache => Environment.GetEnvironmentVariable("NUGET_PACKAGES")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    /// <summary>Runs a process to completion; exit code and stdout+stderr.</summary>
    internal static (int Code, string Output) Run(string file, string arguments, string workingDirectory)
    {
        var psi = new ProcessStartInfo(file, arguments)
        {
            WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
