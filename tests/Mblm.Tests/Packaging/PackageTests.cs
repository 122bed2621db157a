using System.Diagnostics;
using System.IO.Compression;
using System.Text.RegularExpressions;

namespace Mblm.Tests;

/// <summary>
/// The packages as a user gets them: Mblm and Mblm.MLNet packed into a local folder feed, and the README's ML.NET
/// programs built outside the repository against them (no project references, none of our Directory.Build files) and run —
/// the first trains and saves, the second loads the file in a new process and predicts, the third classifies text.
/// </summary>
[TestClass]
public sealed class PackageTests
{
    [TestMethod]
    [Timeout(900_000, CooperativeCancellation = true)]
    public void ReadmePrograms_BuildAndRun_AgainstThePackedPackages()
    {
        string root = Path.Combine(Path.GetTempPath(), $"mblm-packages-{Guid.NewGuid():N}");
        string feed = Path.Combine(root, "feed"), app = Path.Combine(root, "app");
        Directory.CreateDirectory(feed);
        Directory.CreateDirectory(app);
        // A fresh version per run: the global package cache never serves a stale copy.
        string version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}{Random.Shared.Next(1000):D3}";
        try
        {
            foreach (var project in new[] { "src/Mblm/Mblm.csproj", "src/Mblm.MLNet/Mblm.MLNet.csproj" })
            {
                var pack = Run("dotnet", $"pack \"{Path.Combine(TestData.RepoRoot, project)}\" -c Release -o \"{feed}\" -p:Version={version} -p:NuGetAudit=false", TestData.RepoRoot);
                Assert.AreEqual(0, pack.Code, $"pack {project} failed:\n{pack.Output}");
            }
            using (var nupkg = ZipFile.OpenRead(Path.Combine(feed, $"Mblm.{version}.nupkg")))
            {
                var entries = nupkg.Entries.Select(e => e.FullName).ToList();
                CollectionAssert.Contains(entries, "buildTransitive/Mblm.targets");
                CollectionAssert.Contains(entries, "buildTransitive/GlibcxxWeakener.cs");
                CollectionAssert.Contains(entries, "lib/net10.0/Mblm.xml");
                // The pretrained base model travels in the package; its buildTransitive target copies it to the application's output
                // (MblmPretrained finds it there), also when the application references Mblm through Mblm.MLNet.
                foreach (string file in new[] { "config.json", "model.safetensors", "README.md" })
                    CollectionAssert.Contains(entries, $"models/mblm-base/{file}");
                var nuspec = new StreamReader(nupkg.Entries.Single(e => e.FullName.EndsWith(".nuspec")).Open()).ReadToEnd();
                // The application chooses the native libtorch: the library depends on TorchSharp only.
                StringAssert.Contains(nuspec, "id=\"TorchSharp\"");
                Assert.IsFalse(Regex.IsMatch(nuspec, "id=\"(libtorch-|TorchSharp-cpu|TorchSharp-cuda)", RegexOptions.IgnoreCase), "Mblm must not force a libtorch:\n" + nuspec);
            }
            foreach (var id in new[] { "Mblm", "Mblm.MLNet" })
                AssertMetadata(Path.Combine(feed, $"{id}.{version}.nupkg"));
            using (var nupkg = ZipFile.OpenRead(Path.Combine(feed, $"Mblm.MLNet.{version}.nupkg")))
            {
                var nuspec = new StreamReader(nupkg.Entries.Single(e => e.FullName.EndsWith(".nuspec")).Open()).ReadToEnd();
                StringAssert.Contains(nuspec, $"id=\"Mblm\" version=\"{version}\"");
                StringAssert.Contains(nuspec, "id=\"Microsoft.ML\"");
            }

            File.WriteAllText(Path.Combine(app, "NuGet.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <clear />
                    <add key="local" value="{feed}" />
                    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
                  </packageSources>
                </configuration>
                """);
            File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Mblm.MLNet" Version="{version}" />
                    <PackageReference Include="libtorch-cpu-linux-x64" Version="2.10.0" />
                  </ItemGroup>
                </Project>
                """);
            // A corpus for the README's first program: this repository's README, one row per line.
            File.Copy(Path.Combine(TestData.RepoRoot, "README.md"), Path.Combine(app, "corpus.txt"));
            string readme = File.ReadAllText(Path.Combine(TestData.RepoRoot, "README.md"));

            // Writes the README block as Program.cs, builds it against the packages and runs it; returns (build, run) output.
            (string Build, string Output) BuildAndRun(string block, string what)
            {
                File.WriteAllText(Path.Combine(app, "Program.cs"), ReadmeBlock(readme, block));
                var build = Run("dotnet", "build -c Release -o out", app);
                Assert.AreEqual(0, build.Code, $"build of the README's {what} failed:\n" + build.Output);
                var run = Run("dotnet", "out/App.dll", app);
                Assert.AreEqual(0, run.Code, $"the README's {what} failed:\n" + run.Output);
                return (build.Output, run.Output);
            }

            // The package's buildTransitive target patches the app's output copy of libLibTorchSharp.so. (The package cache's
            // copy may have been patched already by a notebook host's runtime fallback: then there is nothing left to patch,
            // and the check below is that the output's copy has no strong need.)
            var train = BuildAndRun("train", "first program");
            if (!train.Build.Contains("Weakened GLIBCXX_3.4.32 requirement", StringComparison.Ordinal))
                Assert.AreEqual(0, ConsumerProjectTests.StrongNeedsInPackageCache(), "the cache's copy needs patching, yet the build target did not patch the output:\n" + train.Build);
            Assert.IsTrue(File.Exists(Path.Combine(app, "out", "models", "mblm-base", "model.safetensors")), "the base model is in the application's output");
            var patchedOutput = Directory.EnumerateFiles(Path.Combine(app, "out"), "libLibTorchSharp.so", SearchOption.AllDirectories).ToList();
            Assert.IsTrue(patchedOutput.Count > 0);
            foreach (string lib in patchedOutput)
                Assert.AreEqual(0, Mblm.Native.ElfVersionNeeds.CountStrong(File.ReadAllBytes(lib), Mblm.Native.ElfVersionNeeds.TargetVersion), $"{lib} still needs GLIBCXX_3.4.32");
            var bpb = Regex.Match(train.Output, @"bits per byte (\d+\.\d+), perplexity");
            Assert.IsTrue(bpb.Success, train.Output);
            Assert.IsTrue(double.Parse(bpb.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) < 8, train.Output);
            StringAssert.Contains(train.Output, "step ", "Fit logged its progress to MLContext.Log");
            Assert.IsTrue(File.Exists(Path.Combine(app, "model.zip")));

            var predict = BuildAndRun("predict", "second program");
            StringAssert.Matches(predict.Output, new Regex(@"\d+\.\d+ bits per byte, 64 features, continues: "));

            // The third: the text classifier — cross-validate, train, evaluate, save, load and predict.
            var classify = BuildAndRun("classify", "text-classification program");
            StringAssert.Matches(classify.Output, new Regex(@"cross-validated accuracy \d\.\d\d"));
            var trained = Regex.Match(classify.Output, @"training accuracy (\d\.\d\d), log-loss");
            Assert.IsTrue(trained.Success && double.Parse(trained.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 0.8, classify.Output);
            StringAssert.Matches(classify.Output, new Regex(@"'merci et à bientôt' is (en|fr|de) \(probability 0\.\d\d\)"));
            Assert.IsTrue(File.Exists(Path.Combine(app, "classifier.zip")));
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>A package's metadata: license, readme, icon, repository, tags, description.</summary>
    internal static void AssertMetadata(string nupkgPath)
    {
        using var nupkg = ZipFile.OpenRead(nupkgPath);
        var entries = nupkg.Entries.Select(e => e.FullName).ToList();
        string nuspec = new StreamReader(nupkg.Entries.Single(e => e.FullName.EndsWith(".nuspec")).Open()).ReadToEnd();
        string name = Path.GetFileName(nupkgPath);
        StringAssert.Contains(nuspec, "<license type=\"expression\">MIT</license>", name);
        StringAssert.Contains(nuspec, "<readme>PACKAGE.md</readme>", name);
        StringAssert.Contains(nuspec, "<icon>icon.png</icon>", name);
        StringAssert.Matches(nuspec, new Regex("<repository type=\"git\" url=\"https://"), name);
        StringAssert.Matches(nuspec, new Regex("<tags>[^<]*mblm[^<]*</tags>"), name);
        StringAssert.Matches(nuspec, new Regex("<description>.{40,}</description>", RegexOptions.Singleline), name);
        CollectionAssert.Contains(entries, "PACKAGE.md", name);
        CollectionAssert.Contains(entries, "icon.png", name);
    }

    [TestMethod]
    [Timeout(900_000, CooperativeCancellation = true)]
    public void Tool_InstallsFromALocalFeed_AndTrains()
    {
        // `dotnet tool install` of the mblm tool packed into a folder feed; the installed tool carries its CPU libtorch.
        string root = Path.Combine(Path.GetTempPath(), $"mblm-tool-{Guid.NewGuid():N}");
        string feed = Path.Combine(root, "feed"), tools = Path.Combine(root, "tools"), work = Path.Combine(root, "work");
        Directory.CreateDirectory(work);
        string version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}{Random.Shared.Next(1000):D3}";
        try
        {
            var pack = Run("dotnet", $"pack \"{Path.Combine(TestData.RepoRoot, "src/Mblm.Cli/Mblm.Cli.csproj")}\" -c Release -o \"{feed}\" -p:Version={version} -p:NuGetAudit=false",
                TestData.RepoRoot);
            Assert.AreEqual(0, pack.Code, $"pack Mblm.Cli failed:\n{pack.Output}");
            AssertMetadata(Path.Combine(feed, $"Mblm.Cli.{version}.nupkg"));
            var install = Run("dotnet", $"tool install Mblm.Cli --version {version} --tool-path \"{tools}\" --add-source \"{feed}\"", work);
            Assert.AreEqual(0, install.Code, $"dotnet tool install failed:\n{install.Output}");
            string mblm = Path.Combine(tools, "mblm");
            Assert.IsTrue(File.Exists(mblm), install.Output);

            var info = Run(mblm, "info", work);
            Assert.AreEqual(0, info.Code, info.Output);
            StringAssert.Contains(info.Output, "\"libtorch_source\":\"app folder\"");

            File.WriteAllText(Path.Combine(work, "data.txt"), string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog. ", 200)));
            string config = Path.Combine(TestData.RepoRoot, "examples/configs/tiny-2d-st.json");
            var train = Run(mblm, $"train --config \"{config}\" --data data.txt --steps 2 --batch 2 --lr 1e-3 --out run", work);
            Assert.AreEqual(0, train.Code, train.Output);
            Assert.IsTrue(File.Exists(Path.Combine(work, "run", "weights.safetensors")), train.Output);
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>The C# block after the <c>&lt;!-- readme:NAME --&gt;</c> marker.</summary>
    internal static string ReadmeBlock(string readme, string name)
    {
        var m = Regex.Match(readme, $@"<!-- readme:{name} -->\s*```csharp\n(.*?)```", RegexOptions.Singleline);
        Assert.IsTrue(m.Success, $"README has no block marked readme:{name}");
        return m.Groups[1].Value;
    }

    private static (int Code, string Output) Run(string file, string arguments, string workingDirectory) =>
        ConsumerProjectTests.Run(file, arguments, workingDirectory);
}
