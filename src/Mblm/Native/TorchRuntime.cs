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
    /// The OpenMP settings for a shared machine: OpenMP threads that wait for work yield the core after a short spin instead
    /// of spinning for long, so training degrades gracefully when other processes take the cores (benchmarks'
    /// <c>contention</c>). On a machine the process has to itself they cost time (threads sleep between the many short
    /// parallel regions: 19-31 % per P1 training step in one measurement on a 2-core machine, 4-7 % in another), so they
    /// are applied only where the machine is shared (see
    /// <see cref="ThreadingDecision"/>), each only where the user has not set that variable.
    /// </summary>
    public static IReadOnlyDictionary<string, string> ThreadingDefaults { get; } = new Dictionary<string, string>
    {
        ["GOMP_SPINCOUNT"] = "2000",
    };

    /// <summary>The variables <see cref="ApplyThreadingDefaults"/> set in this process (the user's own settings are kept).</summary>
    public static IReadOnlyList<string> AppliedThreadingDefaults { get; private set; } = [];

    /// <summary>
    /// Why <see cref="ThreadingDefaults"/> were applied or not, decided once, before libtorch loads (its OpenMP runtime
    /// reads them then): by <c>MBLM_THREADING_DEFAULTS</c> — <c>auto</c> (unset), <c>shared</c> (always apply) or
    /// <c>0</c>/<c>off</c> (libtorch's own defaults) — and under <c>auto</c> by what the machine shows: a CPU quota of the
    /// process's cgroup below the CPUs it may run on, or other processes keeping at least half a core busy over 100 ms
    /// (<c>/proc/stat</c>, less this process's own time). Contention that starts later is not seen: set <c>shared</c> on
    /// machines that are shared.
    /// </summary>
    public static string ThreadingDecision { get; private set; } = "not decided (not Linux)";

    /// <summary>An unknown <c>MBLM_THREADING_DEFAULTS</c> value (then <c>auto</c> is used), for tools to report; else null.</summary>
    public static string? ThreadingProblem { get; private set; }

    private static int _threading;

    // .NET's Environment.SetEnvironmentVariable does not reach the native environment on Linux: libc's setenv does.
    private static void ApplyThreadingDefaults()
    {
        if (Interlocked.Exchange(ref _threading, 1) == 1 || !OperatingSystem.IsLinux()) return;
        string mode = Environment.GetEnvironmentVariable("MBLM_THREADING_DEFAULTS")?.Trim().ToLowerInvariant() ?? "auto";
        bool apply;
        switch (mode)
        {
            case "0" or "off" or "none" or "libtorch":
                ThreadingDecision = $"libtorch's defaults (MBLM_THREADING_DEFAULTS={mode})";
                return;
            case "1" or "shared" or "on":
                apply = true;
                ThreadingDecision = $"shared-machine settings (MBLM_THREADING_DEFAULTS={mode})";
                break;
            default:
                if (mode != "auto") ThreadingProblem = $"MBLM_THREADING_DEFAULTS must be auto, shared (1) or off (0), got '{mode}'";
                string? why = MachineLooksShared();
                apply = why is not null;
                ThreadingDecision = apply ? $"shared-machine settings (auto: {why})" : "libtorch's defaults (auto: no other load seen at start)";
                break;
        }
        if (!apply) return;
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

    /// <summary>
    /// Why the machine looks shared, or null when it does not (or cannot be read): only the CPUs this process may run on
    /// count (its affinity mask, per-CPU lines of <c>/proc/stat</c>), less this process's own time. Never throws (it runs
    /// in the module initializer).
    /// </summary>
    internal static string? MachineLooksShared(int windowMs = 100)
    {
        try
        {
            var cpus = AffinityCpus();
            int quota = Environment.ProcessorCount; // the affinity mask and the cgroup quota, rounded up, whichever is less
            if (cpus is not null && quota < cpus.Count) return $"a CPU quota of {quota} for {cpus.Count} CPUs";
            using var me = System.Diagnostics.Process.GetCurrentProcess();
            var before = ReadProcStat(cpus);
            var self0 = me.TotalProcessorTime;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            Thread.Sleep(windowMs);
            var after = ReadProcStat(cpus);
            me.Refresh();
            double self = (me.TotalProcessorTime - self0).TotalSeconds;
            double elapsed = clock.Elapsed.TotalSeconds;
            long total = after.Total - before.Total, idle = after.Idle - before.Idle;
            if (total <= 0 || elapsed <= 0 || after.Cpus == 0) return null;
            double busyCores = (double)(total - idle) / total * after.Cpus - self / elapsed;
            return busyCores >= 0.5 ? $"other processes kept {busyCores:F1} of its {after.Cpus} CPUs busy at start" : null;
        }
        catch (Exception)
        {
            return null; // nothing here may stop the library from loading
        }
    }

    // Ticks of the per-CPU lines of /proc/stat (only CPUs in `cpus` when given): their sum, idle + iowait, and how many.
    private static (long Total, long Idle, int Cpus) ReadProcStat(HashSet<int>? cpus)
    {
        long total = 0, idle = 0;
        int count = 0;
        foreach (string line in File.ReadLines("/proc/stat"))
        {
            if (!line.StartsWith("cpu", StringComparison.Ordinal) || line.Length < 4 || !char.IsAsciiDigit(line[3])) continue;
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (cpus is not null && !cpus.Contains(int.Parse(f[0].AsSpan(3), System.Globalization.CultureInfo.InvariantCulture))) continue;
            var ticks = f.Skip(1).Take(8).Select(x => long.Parse(x, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            if (ticks.Length < 5) continue;
            total += ticks.Sum();
            idle += ticks[3] + ticks[4];
            count++;
        }
        return (total, idle, count);
    }

    // The CPUs in this process's affinity mask (sched_getaffinity), or null when it cannot be read.
    private static HashSet<int>? AffinityCpus()
    {
        var mask = new ulong[16];
        try
        {
            if (sched_getaffinity(0, (nint)(mask.Length * sizeof(ulong)), mask) != 0) return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
        var set = new HashSet<int>();
        for (int w = 0; w < mask.Length; w++)
            for (int bit = 0; bit < 64; bit++)
                if ((mask[w] >> bit & 1) != 0) set.Add(w * 64 + bit);
        return set;
    }

    [DllImport("libc", EntryPoint = "sched_getaffinity")]
    private static extern int sched_getaffinity(int pid, nint size, [Out] ulong[] mask);

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int setenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    private static int _tuned; // (int)AllocatorTuning applied, 0 = none

    /// <summary>Whether <see cref="AllocatorTuning.KeepAll"/> is in force (freed memory is then kept on purpose: no trimming).</summary>
    internal static bool AllocatorKeepsAll => AppliedAllocatorTuning == AllocatorTuning.KeepAll;

    /// <summary>The allocator tuning in force in this process (<see cref="TuneAllocator"/>'s first successful call).</summary>
    public static AllocatorTuning AppliedAllocatorTuning => (AllocatorTuning)Volatile.Read(ref _tuned);

    /// <summary>
    /// The tuning the environment asks for through <c>MBLM_MALLOC_TUNING</c>: unset or <c>bounded</c> →
    /// <see cref="AllocatorTuning.Bounded"/>; <c>0</c>, <c>off</c> or <c>none</c> → <see cref="AllocatorTuning.None"/>;
    /// <c>1</c> or <c>keep-all</c> → <see cref="AllocatorTuning.KeepAll"/>. The <c>mblm</c> tool and the benchmarks apply it.
    /// </summary>
    public static AllocatorTuning RequestedAllocatorTuning =>
        Environment.GetEnvironmentVariable("MBLM_MALLOC_TUNING")?.Trim().ToLowerInvariant() switch
        {
            null or "" or "bounded" => AllocatorTuning.Bounded,
            "0" or "off" or "none" => AllocatorTuning.None,
            "1" or "keep-all" => AllocatorTuning.KeepAll,
            var other => throw new ArgumentException($"MBLM_MALLOC_TUNING must be bounded, off (0) or keep-all (1), got '{other}'"),
        };

    /// <summary>
    /// Sets how glibc's allocator (process-wide) keeps freed memory, instead of its default of returning the pages of every
    /// step's peak to the OS and faulting them in again at the next step (on P1 training about 5,700 page faults a step).
    /// <see cref="AllocatorTuning.Bounded"/> (the default here) serves blocks under 64 MiB from the heap and trims only
    /// above 256 MiB of free top: P1 steps fault 42 % less, a 1M-byte M3 step runs 5 % faster, for 40 MiB more peak RSS.
    /// <see cref="AllocatorTuning.KeepAll"/> never returns anything (no mmap-backed blocks, no trimming): fastest for long
    /// Mamba2 contexts (a stage at 16K: 13.0 s → 6.6 s), but peak address space grows without bound and heaps fragment.
    /// Applications choose by calling this; the <c>mblm</c> tool and the benchmarks apply <see cref="RequestedAllocatorTuning"/>.
    /// The first call wins. Returns true when the mode is in force (None: nothing changed).
    /// </summary>
    public static bool TuneAllocator(AllocatorTuning mode = AllocatorTuning.Bounded)
    {
        if (mode == AllocatorTuning.None || !OperatingSystem.IsLinux()) return false;
        int previous = Interlocked.CompareExchange(ref _tuned, (int)mode, 0);
        if (previous != 0) return previous == (int)mode;
        try
        {
            const int M_TRIM_THRESHOLD = -1, M_TOP_PAD = -2, M_MMAP_THRESHOLD = -3, M_MMAP_MAX = -4;
            bool ok;
            if (mode == AllocatorTuning.Bounded)
                ok = mallopt(M_MMAP_THRESHOLD, 64 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1;
            else
                ok = mallopt(M_MMAP_MAX, 0) == 1 // serve every block from the heap, where freed memory is reused
                     && mallopt(M_TRIM_THRESHOLD, int.MaxValue) == 1
                     && mallopt(M_TOP_PAD, 256 << 20) == 1;
            if (!ok) Volatile.Write(ref _tuned, 0);
            return ok;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Volatile.Write(ref _tuned, 0);
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

/// <summary>How <see cref="TorchRuntime.TuneAllocator"/> sets glibc's allocator.</summary>
public enum AllocatorTuning
{
    /// <summary>glibc's defaults (dynamic mmap threshold up to 32 MiB, trimming above twice that).</summary>
    None,

    /// <summary>Blocks under 64 MiB from the heap, trimming above 256 MiB of free top: fewer page faults, bounded slack.</summary>
    Bounded,

    /// <summary>Nothing is returned to the OS (no mmap-backed blocks, no trimming): fastest, unbounded growth.</summary>
    KeepAll,
}
