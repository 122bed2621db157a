using System.Text.Json;
using Mblm.Native;

namespace Mblm.Tests;

/// <summary>
/// Running on a libtorch from outside the app (an installed PyTorch's torch/lib): the CLI, copied without any libtorch
/// (what <c>-p:MblmTorchBackend=external</c> builds), runs with <c>MBLM_LIBTORCH_DIR</c> naming a folder elsewhere.
/// Here the NuGet cache's libtorch 2.10 stands in for that folder. Each case runs in a fresh process, because
/// libtorch loads once per process.
/// </summary>
[TestClass]
public sealed class LibTorchLocationTests
{
    private static string _app = "";
    private static string _libtorch = "";

    [ClassInitialize]
    public static void MakeAppWithoutLibTorch(TestContext _)
    {
        _libtorch = NuGetLibTorchFolder();
        string source = AppContext.BaseDirectory;
        _app = Path.Combine(Path.GetTempPath(), $"mblm-external-app-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_app);
        foreach (string file in Directory.GetFiles(source))
        {
            string name = Path.GetFileName(file);
            if (name.StartsWith("libtorch", StringComparison.Ordinal) || name.StartsWith("libc10", StringComparison.Ordinal) ||
                name.StartsWith("libgomp", StringComparison.Ordinal)) continue;
            File.Copy(file, Path.Combine(_app, name));
        }
        // The glue only (patched for Debian 12 by the build); no libtorch beside it.
        string native = Path.Combine(_app, "runtimes", "linux-x64", "native");
        Directory.CreateDirectory(native);
        File.Copy(Path.Combine(source, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"), Path.Combine(native, "libLibTorchSharp.so"));
    }

    [ClassCleanup]
    public static void RemoveApp()
    {
        if (_app.Length > 0 && Directory.Exists(_app)) Directory.Delete(_app, recursive: true);
    }

    [TestMethod]
    public void Info_ReportsTheLibTorchOfTheRequestedFolder()
    {
        var (code, stdout, stderr) = Cli(_app, _libtorch, "info");
        Assert.AreEqual(0, code, stderr + stdout);
        using var json = JsonDocument.Parse(stdout.Trim().Split('\n')[^1]);
        Assert.AreEqual(LibTorchLocation.DirectoryVariable, json.RootElement.GetProperty("libtorch_source").GetString());
        Assert.AreEqual(Path.Combine(_libtorch, "libtorch_cpu.so"), json.RootElement.GetProperty("libtorch").GetString());
        Assert.AreEqual("2.10.0", json.RootElement.GetProperty("libtorch_version").GetString());
    }

    [TestMethod]
    public void Forward_OnTheOutsideLibTorch_ReproducesTheGoldenLoss()
    {
        string dir = TestData.Golden("v1_t2");
        var (code, stdout, stderr) = Cli(_app, _libtorch, "forward", "--config", Path.Combine(dir, "config.json"),
            "--weights", Path.Combine(dir, "weights.safetensors"), "--input", Path.Combine(dir, "input.json"));
        Assert.AreEqual(0, code, stderr);
        using var result = JsonDocument.Parse(stdout.Trim().Split('\n')[^1]);
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        double loss = result.RootElement.GetProperty("loss").GetDouble(), want = expected.RootElement.GetProperty("loss").GetDouble();
        Assert.IsTrue(Math.Abs(loss - want) <= 1e-5 * want, $"loss {loss} vs {want}");
    }

    [TestMethod]
    public void FolderWithoutLibTorch_IsAnErrorNamingIt_AndNothingIsCopiedFromTheNuGetCache()
    {
        string empty = Path.Combine(Path.GetTempPath(), $"mblm-no-libtorch-{Guid.NewGuid():N}");
        Directory.CreateDirectory(empty);
        try
        {
            var (code, _, stderr) = Cli(_app, empty, "info");
            Assert.AreEqual(2, code, stderr);
            StringAssert.Contains(stderr, $"{LibTorchLocation.DirectoryVariable}={empty}: the folder lacks libc10.so, libtorch_cpu.so, libtorch.so");
            Assert.IsFalse(Directory.Exists(Path.Combine(_app, "cpu")), "TorchSharp's NuGet fallback copied libtorch into the app");
        }
        finally { Directory.Delete(empty, recursive: true); }
    }

    [TestMethod]
    public void AppCarryingItsOwnLibTorch_RefusesTheRequestedFolder()
    {
        // The test's own output folder carries libtorch (the default build): loading a second one would abort the process.
        var (code, _, stderr) = Cli(AppContext.BaseDirectory, _libtorch, "info");
        Assert.AreEqual(2, code, stderr);
        StringAssert.Contains(stderr, "this app carries its own libtorch");
        StringAssert.Contains(stderr, "-p:MblmTorchBackend=external");
    }

    [TestMethod]
    public void VersionOf_ReadsPyTorchVersionFile()
    {
        string torch = Path.Combine(Path.GetTempPath(), $"mblm-fake-torch-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path.Combine(torch, "lib"));
        try
        {
            File.WriteAllText(Path.Combine(torch, "version.py"), "from typing import Optional\n__version__ = '2.11.0+cu130'\ncuda: Optional[str] = '13.0'\n");
            Assert.AreEqual("2.11.0+cu130", LibTorchLocation.VersionOf(Path.Combine(torch, "lib")));
            Assert.IsTrue(new LibTorchInfo("x", null, "2.11.0+cu130", "MBLM_LIBTORCH_DIR", null).VersionUntested);
            Assert.IsFalse(new LibTorchInfo("x", null, "2.10.0", "app folder", null).VersionUntested);
        }
        finally { Directory.Delete(torch, recursive: true); }
    }

    /// <summary>The NuGet cache's libtorch-cpu-linux-x64 native folder (restored by every build of this repository).</summary>
    private static string NuGetLibTorchFolder()
    {
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
            ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string dir = Path.Combine(packages, "libtorch-cpu-linux-x64", "2.10.0", "runtimes", "linux-x64", "native");
        if (!File.Exists(Path.Combine(dir, "libtorch_cpu.so")))
            Assert.Fail($"the restored libtorch-cpu-linux-x64 2.10.0 package was not found at {dir} (set NUGET_PACKAGES to the package cache used by the build)");
        return dir;
    }

    private static (int Code, string Stdout, string Stderr) Cli(string appDir, string libtorchDir, params string[] args) =>
        CliTests.MblmProcess(appDir, new Dictionary<string, string?> { [LibTorchLocation.DirectoryVariable] = libtorchDir, ["LD_LIBRARY_PATH"] = null }, args);
}
