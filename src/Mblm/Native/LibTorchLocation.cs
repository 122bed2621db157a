using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Mblm.Native;

/// <summary>
/// Where libtorch comes from, and which one a process actually loaded.
/// </summary>
/// <remarks>
/// <para>By default libtorch comes from the app folder (the <c>libtorch-cpu-linux-x64</c> package copies it there).
/// A machine that already has PyTorch (say with CUDA) holds a libtorch in its <c>torch/lib</c> folder. Build the app
/// with <c>-p:MblmTorchBackend=external</c> (no libtorch in its folder) and set <c>MBLM_LIBTORCH_DIR</c> to such a
/// folder: its libraries are loaded from there, by full path, before TorchSharp loads its glue, and TorchSharp's own
/// search then finds them already loaded (the NuGet cache is never consulted).</para>
/// <para>TorchSharp 0.107's glue was built against libtorch 2.10. Any other version is a binary gamble: PyTorch promises
/// no C++ ABI across minor versions. <see cref="Describe"/> reports the version it finds, and the CLI's <c>info</c>
/// prints it.</para>
/// <para>The other route is an app built with <c>-p:MblmTorchBackend=external</c> (no libtorch in its folder) and
/// <c>LD_LIBRARY_PATH</c> naming the libtorch folder. There, when nothing is found, TorchSharp may quietly copy the
/// libtorch of the NuGet cache next to itself. <see cref="Describe"/> detects that case and reports it.</para>
/// </remarks>
public static class LibTorchLocation
{
    /// <summary>The environment variable naming a folder holding <c>libtorch_cpu.so</c>, <c>libc10.so</c> and <c>libtorch.so</c>.</summary>
    public const string DirectoryVariable = "MBLM_LIBTORCH_DIR";

    // Loaded by full path, dependencies first. Each library also finds its own dependencies through its RUNPATH ($ORIGIN).
    private static readonly string[] Libraries = ["libc10.so", "libtorch_cpu.so", "libtorch.so"];

    private static string? _requested;

    /// <summary>The folder named by <c>MBLM_LIBTORCH_DIR</c> when this library loaded (full path), or null.</summary>
    public static string? RequestedDirectory => _requested;

    /// <summary>Why the requested folder's libtorch was not loaded (null when it was, or when none was requested).</summary>
    public static string? LoadError { get; private set; }

    /// <summary>
    /// Called once, from the library's module initializer, before TorchSharp loads anything. When
    /// <c>MBLM_LIBTORCH_DIR</c> is set, it loads that folder's libtorch by full path. TorchSharp then finds it already
    /// loaded under its soname: TorchSharp first looks in the app folder, then falls back to a plain <c>dlopen</c>, and
    /// that <c>dlopen</c> matches the already-loaded copy. For this to work, the app folder must hold no libtorch of its
    /// own. A second copy would abort the process, because libtorch registers its operators once per process. When the
    /// app folder does hold one, nothing is preloaded, and <see cref="LoadError"/> says why.
    /// </summary>
    internal static void Install()
    {
        if (!OperatingSystem.IsLinux()) return;
        string? dir = Environment.GetEnvironmentVariable(DirectoryVariable);
        if (BuildBackend == "external" || !string.IsNullOrWhiteSpace(dir))
            BlockNuGetFallback();
        if (string.IsNullOrWhiteSpace(dir)) return;
        _requested = Path.GetFullPath(dir);
        var missing = Libraries.Where(f => !File.Exists(Path.Combine(_requested, f))).ToList();
        string? own = AppLocalLibTorch();
        if (!Directory.Exists(_requested))
            LoadError = $"{DirectoryVariable}={dir}: no such folder";
        else if (missing.Count > 0)
            LoadError = $"{DirectoryVariable}={dir}: the folder lacks {string.Join(", ", missing)} (expected a libtorch folder such as a PyTorch installation's torch/lib)";
        else if (own is not null)
            LoadError = $"{DirectoryVariable} is set, but this app carries its own libtorch ({own}), which TorchSharp loads first; " +
                        "build the app with -p:MblmTorchBackend=external (or remove libtorch*.so and libc10*.so from its folder)";
        if (LoadError is not null) return;
        try
        {
            foreach (string lib in Libraries) NativeLibrary.Load(Path.Combine(_requested, lib));
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            LoadError = $"{DirectoryVariable}={dir}: {e.Message}";
        }
    }

    /// <summary>
    /// The libtorch this library was built to carry: "cpu" (the default, libtorch in the app folder), "cuda", or
    /// "external" (none: it comes from <c>MBLM_LIBTORCH_DIR</c> or <c>LD_LIBRARY_PATH</c>).
    /// </summary>
    public static string BuildBackend { get; } = typeof(LibTorchLocation).Assembly
        .GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
        .OfType<System.Reflection.AssemblyMetadataAttribute>()
        .FirstOrDefault(a => a.Key == "MblmTorchBackend")?.Value ?? "cpu";

    /// <summary>
    /// When TorchSharp cannot load libtorch, it looks for the NuGet cache (<c>NUGET_PACKAGES</c>, else
    /// <c>~/.nuget/packages</c>). If it finds one, it copies that cache's libtorch, about 480 MB, next to itself and
    /// loads it: a silent mix of versions. Pointing <c>NUGET_PACKAGES</c> at a folder that does not exist, in this
    /// process only, makes it stop with its "could not locate" error instead. This applies only when libtorch is meant
    /// to come from elsewhere.
    /// </summary>
    private static void BlockNuGetFallback() =>
        Environment.SetEnvironmentVariable("NUGET_PACKAGES", "/nonexistent/mblm-libtorch-comes-from-" + DirectoryVariable);

    /// <summary>The app folder's own <c>libtorch_cpu.so</c> (where TorchSharp looks first), or null.</summary>
    private static string? AppLocalLibTorch()
    {
        string app = AppContext.BaseDirectory;
        return new[] { Path.Combine(app, "libtorch_cpu.so"), Path.Combine(app, "runtimes", "linux-x64", "native", "libtorch_cpu.so") }
            .FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// Which libtorch this process has mapped: the path of <c>libtorch_cpu.so</c> (and <c>libtorch_cuda.so</c>), the
    /// version where the folder reveals it, and how it was found. Loads libtorch if nothing has yet.
    /// </summary>
    public static LibTorchInfo Describe()
    {
        TorchRuntime.EnsureLoadable();
        _ = TorchSharp.torch.get_num_threads(); // forces TorchSharp's native load
        var mapped = MappedLibraries();
        mapped.TryGetValue("libtorch_cpu.so", out string? cpu);
        mapped.TryGetValue("libtorch_cuda.so", out string? cuda);
        string? folder = cpu is null ? null : Path.GetDirectoryName(cpu);
        string source;
        string? problem = LoadError;
        string appDir = Path.GetFullPath(AppContext.BaseDirectory).TrimEnd('/');
        string? torchSharpDir = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location);
        if (folder is null) source = "unknown (no libtorch_cpu.so mapped; not Linux?)";
        else if (_requested is not null && SameFolder(folder, _requested)) source = DirectoryVariable;
        else if (torchSharpDir is not null && SameFolder(folder, Path.Combine(torchSharpDir, "cpu")))
        {
            source = "TorchSharp's fallback copy of the NuGet cache's libtorch";
            problem ??= "libtorch was not found where expected, and TorchSharp copied the NuGet cache's libtorch next to itself; set " +
                        $"{DirectoryVariable} or LD_LIBRARY_PATH to the libtorch you mean to use";
        }
        else if (SameFolder(folder, appDir) || SameFolder(folder, Path.Combine(appDir, "runtimes", "linux-x64", "native"))) source = "app folder";
        else source = "library search path (LD_LIBRARY_PATH or the system)";
        if (_requested is not null && source != DirectoryVariable)
            problem ??= $"{DirectoryVariable}={_requested} was requested, but libtorch was loaded from {folder ?? "nowhere"}";
        return new LibTorchInfo(cpu, cuda, folder is null ? null : VersionOf(folder), source, problem);
    }

    private static bool SameFolder(string a, string b)
    {
        static string Real(string p)
        {
            try { return new DirectoryInfo(p).ResolveLinkTarget(true)?.FullName ?? Path.GetFullPath(p); }
            catch (IOException) { return Path.GetFullPath(p); }
        }
        return string.Equals(Real(a).TrimEnd('/'), Real(b).TrimEnd('/'), StringComparison.Ordinal);
    }

    /// <summary>File name → path of the mapped torch and c10 libraries, from <c>/proc/self/maps</c>.</summary>
    private static Dictionary<string, string> MappedLibraries()
    {
        var found = new Dictionary<string, string>(StringComparer.Ordinal);
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps)) return found;
        foreach (string line in File.ReadLines(maps))
        {
            int slash = line.IndexOf('/');
            if (slash < 0) continue;
            string path = line[slash..];
            string file = Path.GetFileName(path);
            if ((file.StartsWith("libtorch", StringComparison.Ordinal) || file.StartsWith("libc10", StringComparison.Ordinal)) && !found.ContainsKey(file))
                found[file] = path;
        }
        return found;
    }

    /// <summary>
    /// The libtorch version a folder reveals: a PyTorch installation's <c>torch/version.py</c> beside <c>torch/lib</c>, or
    /// the NuGet package folder's version; null when neither.
    /// </summary>
    public static string? VersionOf(string libFolder)
    {
        string versionPy = Path.Combine(libFolder, "..", "version.py");
        if (File.Exists(versionPy) && new FileInfo(versionPy).Length < 64 * 1024)
        {
            var m = Regex.Match(File.ReadAllText(versionPy), @"^__version__\s*=\s*['""]([^'""\r\n]{1,64})['""]", RegexOptions.Multiline);
            if (m.Success) return m.Groups[1].Value;
        }
        var nuget = Regex.Match(libFolder.Replace('\\', '/'), @"/libtorch-[a-z0-9.\-]+/(\d+\.\d+\.\d+)/runtimes/");
        return nuget.Success ? nuget.Groups[1].Value : null;
    }
}

/// <summary>What <see cref="LibTorchLocation.Describe"/> found.</summary>
/// <param name="CpuLibrary">Path of the mapped <c>libtorch_cpu.so</c>, or null.</param>
/// <param name="CudaLibrary">Path of the mapped <c>libtorch_cuda.so</c>, or null when CUDA is not loaded.</param>
/// <param name="Version">The libtorch version where the folder reveals it (PyTorch's <c>version.py</c>, the NuGet package folder), or null.</param>
/// <param name="Source">How it was found: "app folder", "MBLM_LIBTORCH_DIR", "library search path …", or TorchSharp's fallback copy.</param>
/// <param name="Problem">Null when all is as requested; otherwise what went wrong (a requested folder not used, a silent fallback).</param>
public sealed record LibTorchInfo(string? CpuLibrary, string? CudaLibrary, string? Version, string Source, string? Problem)
{
    /// <summary>The libtorch version TorchSharp 0.107's native glue was built against.</summary>
    public const string GlueBuiltFor = "2.10";

    /// <summary>True when <see cref="Version"/> is known and is not the 2.10 series the glue was built for.</summary>
    public bool VersionUntested => Version is not null && !Version.StartsWith(GlueBuiltFor + ".", StringComparison.Ordinal);
}
