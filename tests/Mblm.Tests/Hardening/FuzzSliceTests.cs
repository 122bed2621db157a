using System.Diagnostics;
using Mblm.Fuzz.Core;

namespace Mblm.Tests;

/// <summary>
/// The fast slice of the fuzzer (<c>tools/Mblm.Fuzz</c>, whose mutators are compiled in here from
/// tools/Mblm.Fuzz/Core): the first <see cref="PerFormat"/> mutations of seed <see cref="Seed"/> of each format,
/// run in this process through the public loaders with a 1 GiB memory budget. Every attempt must load or fail with a
/// documented, typed error (<see cref="FuzzFormats.IsClean"/>), within 30 s, without raising the process's peak RSS by
/// more than the budget plus 512 MiB. Failures list each attempt with its exception, its mutation and the command that
/// reruns it in the harness, where a crash is contained in a child process.
/// </summary>
/// <remarks>
/// In-process means an attempt that aborts the process (a native exception, a stack overflow) aborts the test host: such
/// a run reports "test host process crashed". The harness names the attempt; <c>--filter TestCategory!=FuzzSlice</c>
/// runs the rest of the suite meanwhile.
/// </remarks>
[TestClass]
[TestCategory("FuzzSlice")]
public sealed class FuzzSliceTests
{
    private const long Seed = 1;
    private const int PerFormat = 40;
    private const long Budget = 1L << 30;
    private const long Overhead = 512L << 20;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static FuzzContext? _context;
    private static string _work = "";

    [ClassInitialize]
    public static void Init(TestContext _)
    {
        _context = new FuzzContext(FuzzSeeds.Ensure(FuzzSeeds.DefaultDir));
        _work = Path.Combine(Path.GetTempPath(), $"mblm-fuzz-slice-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_work);
    }

    [ClassCleanup]
    public static void Cleanup()
    {
        _context?.Dispose();
        try { Directory.Delete(_work, recursive: true); } catch (IOException) { }
    }

    [TestMethod]
    [DataRow("pipeline", 4242L, 868L, "declared as F32")]  // 3 tensors of 1 TiB declared inside a zip entry (hours to compress)
    [DataRow("pipeline", 20261204L, 2618L, "inflates to")] // an inner zip's 3.75 GiB entry read into memory ("Stream was too long")
    [DataRow("pipeline", 20261204L, 5945L, "20000 entries")] // 20,000 entries named with 60,000 characters (8 GiB)
    [DataRow("pth", 20261204L, 9727L, "20000 entries")]
    public void MakingAMutatedInput_StaysBoundedInTimeAndMemory(string format, long seed, long index, string mutation)
    {
        // Attempts where the fuzzer itself hung or ran out of memory making the input, not the loader.
        string dir = Path.Combine(_work, $"{format}-{seed}-{index}");
        ProcessMemory.Release();
        double before = ProcessMemory.MiB("VmRSS");
        ProcessMemory.ResetPeak();
        var clock = Stopwatch.StartNew();
        var attempt = FuzzFormats.Prepare(_context!, format, seed, index, dir);
        Assert.IsTrue(clock.Elapsed < TimeSpan.FromSeconds(60), $"making the input took {clock.Elapsed}: {attempt.Mutation}");
        StringAssert.Contains(attempt.Mutation, mutation);
        Assert.IsTrue(new FileInfo(attempt.Path).Length < 128L << 20, $"{new FileInfo(attempt.Path).Length:N0} bytes");
        double grew = ProcessMemory.MiB("VmHWM") - before;
        Assert.IsTrue(grew < 1024, $"making the input took {grew:F0} MiB");
        Directory.Delete(dir, recursive: true);
    }

    [TestMethod]
    [DataRow("safetensors")]
    [DataRow("config-json")]
    [DataRow("config-yaml")]
    [DataRow("pipeline")]
    [DataRow("checkpoint")]
    [DataRow("pth")]
    public void Mutations_LoadOrFailWithADocumentedTypedError(string format)
    {
        var ctx = _context!;
        long saved = Limits.MemoryBudgetBytes;
        Limits.MemoryBudgetBytes = Budget;
        var failures = new List<string>();
        var clock = Stopwatch.StartNew();
        int ok = 0, clean = 0;
        try
        {
            for (int i = 0; i < PerFormat; i++)
            {
                string dir = Path.Combine(_work, $"{format}-{i}");
                var attempt = FuzzFormats.Prepare(ctx, format, Seed, i, dir);
                ProcessMemory.Release();
                double before = ProcessMemory.MiB("VmRSS");
                ProcessMemory.ResetPeak();
                var run = Task.Factory.StartNew(() => FuzzFormats.Attempt(ctx, attempt), TaskCreationOptions.LongRunning);
                string where = $"#{i}: mutation: {attempt.Mutation}\n      reproduce: {FuzzFormats.Reproduce(format, Seed, i)}";
                if (!run.Wait(Timeout))
                {
                    failures.Add($"hang (> {Timeout.TotalSeconds} s) {where}");
                    continue; // the attempt's thread is left running; the next attempts go on
                }
                var r = run.Result;
                double grew = ProcessMemory.MiB("VmHWM") - before;
                if (r.Outcome == Outcome.Ok) ok++;
                else if (r.Outcome == Outcome.Clean) clean++;
                else failures.Add($"{r.ExceptionType}: {Short(r.Message)} {where}");
                if (grew * (1 << 20) > Budget + Overhead)
                    failures.Add($"over budget: the peak RSS grew by {grew:F0} MiB ({r.Outcome}{(r.ExceptionType is null ? "" : ", " + r.ExceptionType)}) {where}");
                try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
        }
        finally
        {
            Limits.MemoryBudgetBytes = saved;
        }
        Console.WriteLine($"{format}: {PerFormat} attempts in {clock.Elapsed.TotalSeconds:F1} s: {ok} ok, {clean} clean typed errors, {failures.Count} failures");
        if (failures.Count > 0)
            Assert.Fail($"{format}: {failures.Count} of {PerFormat} attempts (seed {Seed}) neither loaded nor failed with a documented typed error within the budget:\n  " +
                        string.Join("\n  ", failures));
    }

    private static string Short(string? s) => s is null ? "" : (s.Length <= 300 ? s : s[..300] + "…").Replace("\n", " ⏎ ");
}
