using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Mblm.Native;

/// <summary>
/// Runtime fallback of the libLibTorchSharp.so fix (see buildTransitive/GlibcxxWeakener.cs): before any torch call made
/// through this library, every copy of libLibTorchSharp.so that the process could load is checked and, where it still
/// declares a strong GLIBCXX_3.4.32 need, patched in place (atomically). This covers projects that reference Mblm from
/// outside this repository without our build target. Code that calls <c>TorchSharp.torch</c> before touching any Mblm
/// type should call <see cref="EnsureLoadable"/> first.
/// </summary>
public static class TorchRuntime
{
    private static int _done;

    /// <summary>Files that were patched by this process (for diagnostics and tests).</summary>
    public static IReadOnlyList<string> PatchedFiles { get; private set; } = Array.Empty<string>();

    /// <summary>Problems met while patching (read-only folders and the like); empty when all went well.</summary>
    public static IReadOnlyList<string> Warnings { get; private set; } = Array.Empty<string>();

    // A library module initializer on purpose: the native glue must be patched before TorchSharp first loads it, and no
    // application code can be relied on to call us first (ML.NET hosts, notebooks, tests).
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "must run before TorchSharp loads its native library, whoever the host is")]
    [ModuleInitializer]
    internal static void OnModuleLoad()
    {
        ApplyThreadingDefaults();
        EnsureLoadable();
        LibTorchLocation.Install();
    }

    /// <summary>
    /// The OpenMP settings this library puts in the process environment before libtorch loads (its OpenMP runtime reads
    /// them once, when it loads), each only where the user has not set that variable: OpenMP threads that wait for work
    /// yield the core after a short spin instead of spinning for long, so training degrades gracefully when other processes
    /// take the cores (see benchmarks' <c>contention</c>). <c>MBLM_THREADING_DEFAULTS=0</c> turns this off.
    /// </summary>
    public static IReadOnlyDictionary<string, string> ThreadingDefaults { get; } = new Dictionary<string, string>
    {
        ["GOMP_SPINCOUNT"] = "2000",
    };

    /// <summary>The variables <see cref="ApplyThreadingDefaults"/> set in this process (the user's own settings are kept).</summary>
    public static IReadOnlyList<string> AppliedThreadingDefaults { get; private set; } = [];

    private static int _threading;

    // .NET's Environment.SetEnvironmentVariable does not reach the native environment on Linux: libc's setenv does.
    private static void ApplyThreadingDefaults()
    {
        if (Interlocked.Exchange(ref _threading, 1) == 1 || !OperatingSystem.IsLinux()) return;
        if (Environment.GetEnvironmentVariable("MBLM_THREADING_DEFAULTS") == "0") return;
        var applied = new List<string>();
        try
        {
            foreach (var (name, value) in ThreadingDefaults)
                if (Environment.GetEnvironmentVariable(name) is null && setenv(name, value, 0) == 0)
                {
                    Environment.SetEnvironmentVariable(name, value); // keep the managed view in step
                    applied.Add($"{name}={value}");
                }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc: leave the environment alone
        }
        AppliedThreadingDefaults = applied;
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int setenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    private static int _tuned;

    /// <summary>Whether <see cref="TuneAllocator"/> has been called in this process (freed memory is then kept on purpose).</summary>
    internal static bool AllocatorTuned => Volatile.Read(ref _tuned) == 1;

    /// <summary>True when the environment asks for <see cref="TuneAllocator"/> (<c>MBLM_MALLOC_TUNING=1</c>).</summary>
    public static bool AllocatorTuningRequested => Environment.GetEnvironmentVariable("MBLM_MALLOC_TUNING") == "1";

    /// <summary>
    /// Keeps freed memory in the process (glibc <c>mallopt</c>: no mmap-backed blocks, no trimming, large heap growth steps)
    /// instead of returning every large tensor's pages to the OS and faulting them in again on the next step; this halves
    /// the time of long-context steps on CPU. Peak memory is unchanged; memory is not returned to the OS after a peak.
    /// The cost: freed memory is never returned and the heap fragments, so peak address space grows — at million-byte
    /// contexts this can exhaust memory (an M3 step at 1M bytes peaks at 8.1 GiB without it and failed under a 21 GiB
    /// address-space cap with it).
    /// The change is process-wide, so it is opt-in: applications call this; the <c>mblm</c> tool and the benchmarks call it
    /// when <c>MBLM_MALLOC_TUNING=1</c>. Returns true when applied.
    /// </summary>
    public static bool TuneAllocator()
    {
        if (!OperatingSystem.IsLinux()) return false;
        if (Interlocked.Exchange(ref _tuned, 1) == 1) return true;
        try
        {
            const int M_TRIM_THRESHOLD = -1, M_TOP_PAD = -2, M_MMAP_MAX = -4;
            bool ok = mallopt(M_MMAP_MAX, 0) == 1; // serve every block from the heap, where freed memory is reused
            ok &= mallopt(M_TRIM_THRESHOLD, int.MaxValue) == 1;
            ok &= mallopt(M_TOP_PAD, 256 << 20) == 1;
            return ok;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false; // not glibc (e.g. musl): nothing to tune
        }
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int param, int value);

    /// <summary>Makes the TorchSharp native shim loadable on this machine; idempotent and cheap after the first call.</summary>
    public static void EnsureLoadable()
    {
        if (Interlocked.Exchange(ref _done, 1) == 1 || !OperatingSystem.IsLinux()) return;
        var patched = new List<string>();
        var warnings = new List<string>();
        foreach (string path in CandidatePaths())
        {
            try
            {
                if (ElfVersionNeeds.WeakenFile(path)) patched.Add(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                warnings.Add($"could not patch {path}: {e.Message}");
            }
        }
        PatchedFiles = patched;
        Warnings = warnings;
        foreach (string w in warnings)
            Console.Error.WriteLine("Mblm: " + w + " (TorchSharp may fail to load on systems older than GCC 13's libstdc++)");
    }

    private static IEnumerable<string> CandidatePaths()
    {
        const string lib = "libLibTorchSharp.so";
        var dirs = new List<string> { AppContext.BaseDirectory };
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string searchDirs)
            dirs.AddRange(searchDirs.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        string? torchSharpDir = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location);
        if (!string.IsNullOrEmpty(torchSharpDir))
        {
            dirs.Add(torchSharpDir);
            // TorchSharp's own fallback (hosts without our native assets, e.g. notebooks) copies natives next to itself.
            dirs.Add(Path.Combine(torchSharpDir, "cpu"));
            dirs.Add(Path.GetFullPath(Path.Combine(torchSharpDir, "..", "..", "runtimes", "linux-x64", "native")));
        }
        var seen = new HashSet<string>();
        foreach (string dir in dirs)
        {
            foreach (string candidate in new[] { Path.Combine(dir, lib), Path.Combine(dir, "runtimes", "linux-x64", "native", lib) })
            {
                string full = Path.GetFullPath(candidate);
                if (seen.Add(full) && File.Exists(full)) yield return full;
            }
        }
    }
}
