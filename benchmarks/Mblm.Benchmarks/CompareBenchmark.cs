using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Mblm.Benchmarks;

/// <summary>
/// Ours and the Python reference, side by side, on this machine, in one run. Each repetition alternates fresh processes
/// (ours first on even repetitions, the reference first on odd ones): our <c>train-step</c>, and the harness's
/// <c>trainstep.py</c> (through its <c>run.sh</c>, at its defaults: 2 threads, OpenMP OpenBLAS), for P1, P3 and P2, then
/// G2 generation (<c>generate.py</c> against our end-to-end cached and our recompute time per byte).
/// </summary>
/// <remarks>
/// Disturbed runs are discarded, by the harness's own rule. A run is disturbed when the 1-minute load was above 1.5 at
/// its start, or when the process got less than 1.7 of the 2 cores (CPU time / wall time over the timed steps). Before
/// each run, this command waits up to <c>--max-wait-s</c> for the load to drop. Without a set-up harness it stops at
/// once and says how to set one up. P2's reference uses the harness's Mamba2 stand-in: a sequential, pure-PyTorch
/// per-time-step scan, not the CUDA kernel. Its ratio is labelled as such.
/// </remarks>
internal static class CompareBenchmark
{
    private static readonly Dictionary<string, string> OurConfigs = new()
    {
        ["P1"] = "examples/configs/p1-2d-tt.yaml", ["P2"] = "examples/configs/p2-2d-st.yaml", ["P3"] = "examples/configs/p3-3d-ttt.yaml",
    };

    private sealed record Sample(double Value, bool Disturbed, string Note);

    public static int Run(Options o)
    {
        string harness = Path.GetFullPath(o.Str("harness", Environment.GetEnvironmentVariable("MBLM_REFERENCE_HARNESS") ?? "../shared/reference-harness"));
        if (HarnessProblem(harness) is { } problem)
        {
            Console.Error.WriteLine($"compare: {problem}");
            Console.Error.WriteLine($"compare: set it up once (see {Path.Combine(harness, "README.md")}): fetch the snapshots of ai4sd/multiscale-byte-lm, " +
                                    "lucidrains/MEGABYTE-pytorch and arogozhnikov/einops into one folder, then `MIRROR_ROOT=<that folder> ./setup.sh` " +
                                    "in the harness folder; or pass --harness DIR");
            return 2;
        }
        var configs = o.Str("configs", "P1,P3,P2").Split(',', StringSplitOptions.RemoveEmptyEntries);
        var gens = o.Str("gen", "1024,8192").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray();
        int reps = o.Int("reps", 3), steps = o.Int("steps", 15), warmup = o.Int("warmup", 2), maxWait = o.Int("max-wait-s", 300);
        foreach (string c in configs)
            if (!OurConfigs.ContainsKey(c)) { Console.Error.WriteLine($"compare: --configs: unknown config '{c}' (P1, P2, P3)"); return 2; }
        string self = typeof(CompareBenchmark).Assembly.Location;
        Console.WriteLine($"harness: {harness}; {reps} repetitions, alternating fresh processes; training: batch 4 × 2048, {steps} timed steps after {warmup}");

        var ours = new Dictionary<string, List<Sample>>();
        var theirs = new Dictionary<string, List<Sample>>();
        void Add(Dictionary<string, List<Sample>> d, string key, Sample r) { if (!d.TryGetValue(key, out var l)) d[key] = l = []; l.Add(r); }

        for (int rep = 0; rep < reps; rep++)
        {
            foreach (string c in configs)
            {
                foreach (bool oursFirst in rep % 2 == 0 ? new[] { true, false } : [false, true])
                {
                    WaitForQuiet(maxWait);
                    if (oursFirst) Add(ours, c, OurTrainStep(self, OurConfigs[c], steps, warmup));
                    else Add(theirs, c, ReferenceRun(harness, ["trainstep.py", "--config", c, "--steps", $"{steps}", "--warmup", $"{warmup}", "--quiet"], "ms_per_step_median"));
                    Console.WriteLine($"  rep {rep + 1} {c} {(oursFirst ? "ours" : "reference")}: {Last(oursFirst ? ours[c] : theirs[c])}");
                }
            }
            foreach (long len in gens)
            {
                string key = $"G2@{len}";
                foreach (bool oursFirst in rep % 2 == 0 ? new[] { true, false } : [false, true])
                {
                    WaitForQuiet(maxWait);
                    if (oursFirst)
                    {
                        var (e2e, recompute) = OurGeneration(self, len);
                        Add(ours, key, e2e);
                        Add(ours, key + " recompute", recompute);
                    }
                    else Add(theirs, key, ReferenceRun(harness, ["generate.py", "--prompt-len", $"{len}", "--new", "16", "--quiet"], "ms_per_byte_median"));
                    Console.WriteLine($"  rep {rep + 1} {key} {(oursFirst ? "ours" : "reference")}: {Last(oursFirst ? ours[key] : theirs[key])}");
                }
            }
        }

        Console.WriteLine();
        Console.WriteLine("| what | ours (median of undisturbed runs) | reference, same machine | reference / ours | runs kept (ours, reference) |");
        Console.WriteLine("| --- | --- | --- | --- | --- |");
        foreach (string c in configs)
            Row(c + (c == "P2" ? " (reference: sequential Mamba2 stand-in)" : "") + ", ms/step", ours[c], theirs[c]);
        foreach (long len in gens)
        {
            string key = $"G2@{len}";
            Row($"G2 generation, {len:N0}-byte prompt: ours end to end (prefill + 16 bytes) vs reference, ms/byte", ours[key], theirs[key]);
            Row($"G2 generation, {len:N0}-byte prompt: ours recomputing (the reference's method) vs reference, ms/byte", ours[key + " recompute"], theirs[key]);
        }
        Console.WriteLine("(a ratio above 1 means ours is faster; medians over runs that were not disturbed — all runs, marked *, when none was clean)");
        return 0;
    }

    private static string Last(List<Sample> runs) => runs[^1] is var r && double.IsNaN(r.Value) ? $"failed: {r.Note}" : $"{r.Value:F1}{(r.Disturbed ? $" (disturbed: {r.Note})" : "")}";

    private static void Row(string what, List<Sample> ours, List<Sample> theirs)
    {
        var (a, aAll) = Median(ours);
        var (b, bAll) = Median(theirs);
        string Fmt(double v, bool all) => double.IsNaN(v) ? "n/a" : $"{v:F1}{(all ? "*" : "")}";
        string ratio = double.IsNaN(a) || double.IsNaN(b) ? "n/a" : $"{b / a:F2}x";
        Console.WriteLine($"| {what} | {Fmt(a, aAll)} | {Fmt(b, bAll)} | {ratio} | {ours.Count(r => !r.Disturbed && !double.IsNaN(r.Value))}/{ours.Count}, " +
                          $"{theirs.Count(r => !r.Disturbed && !double.IsNaN(r.Value))}/{theirs.Count} |");
    }

    private static (double Median, bool FromDisturbed) Median(List<Sample> runs)
    {
        var ok = runs.Where(r => !double.IsNaN(r.Value)).ToList();
        var clean = ok.Where(r => !r.Disturbed).Select(r => r.Value).ToList();
        if (clean.Count > 0) return (Stats.Median(clean), false);
        return ok.Count > 0 ? (Stats.Median(ok.Select(r => r.Value)), true) : (double.NaN, false);
    }

    private static string? HarnessProblem(string harness)
    {
        string runSh = Path.Combine(harness, "run.sh");
        if (!File.Exists(runSh)) return $"no reference harness at {harness} (run.sh not found)";
        var (code, output) = Exec("bash", [runSh, "-c", "import refenv, mblm; print('ok', mblm.__file__)"], TimeSpan.FromMinutes(2));
        return code == 0 && output.Contains("ok", StringComparison.Ordinal)
            ? null
            : $"the reference harness at {harness} is not set up (run.sh could not import torch and mblm: {Tail(output)})";
    }

    private static Sample OurTrainStep(string self, string config, int steps, int warmup)
    {
        var (code, output) = Exec("dotnet", [self, "train-step", "--config", config, "--steps", $"{steps}", "--warmup", $"{warmup}", "--no-mfu", "1"], TimeSpan.FromMinutes(15));
        var median = Regex.Match(output, @"median_ms=([0-9.Ee+-]+)");
        var util = Regex.Match(output, @"cpu_util=([0-9.]+) load_start=([0-9.]+)");
        if (code != 0 || !median.Success || !util.Success) return new Sample(double.NaN, true, $"exit {code}: {Tail(output)}");
        return Judge(Parse(median.Groups[1].Value), Parse(util.Groups[2].Value), Parse(util.Groups[1].Value));
    }

    private static (Sample EndToEnd, Sample Recompute) OurGeneration(string self, long promptLength)
    {
        double load = Stats.LoadAverage();
        var (code, output) = Exec("dotnet", [self, "generation", "--models", "t", "--contexts", $"{promptLength}", "--bytes", "16", "--recompute-max", $"{promptLength}"], TimeSpan.FromMinutes(15));
        var m = Regex.Match(output, @"gen model=t ctx=\d+ prefill_s=\S+ cached_ms=\S+ e2e_ms=(\S+) recompute_ms=(\S+)");
        if (code != 0 || !m.Success)
        {
            var failed = new Sample(double.NaN, true, $"exit {code}: {Tail(output)}");
            return (failed, failed);
        }
        // The generation benchmark runs single calls; its disturbance is judged by the load at its start only.
        bool disturbed = load > 1.5;
        string note = disturbed ? $"1-min load {load:F2} > 1.5 at start" : "";
        return (new Sample(Parse(m.Groups[1].Value), disturbed, note), new Sample(Parse(m.Groups[2].Value), disturbed, note));
    }

    private static Sample ReferenceRun(string harness, string[] script, string field)
    {
        var env = new Dictionary<string, string> { ["LOAD_GATE"] = "0" };   // this command gates the load itself
        var (code, output) = Exec("bash", [Path.Combine(harness, "run.sh"), .. script], TimeSpan.FromMinutes(20), env, harness);
        string? json = output.Split('\n').LastOrDefault(l => l.TrimStart().StartsWith('{'));
        if (code != 0 || json is null) return new Sample(double.NaN, true, $"exit {code}: {Tail(output)}");
        using var doc = JsonDocument.Parse(json);
        double value = doc.RootElement.GetProperty(field).GetDouble();
        var notes = doc.RootElement.TryGetProperty("disturbed", out var d) ? d.EnumerateArray().Select(x => x.GetString()).ToList() : [];
        return new Sample(value, notes.Count > 0, string.Join("; ", notes));
    }

    private static Sample Judge(double value, double loadAtStart, double cpuUtil)
    {
        var notes = new List<string>();
        if (loadAtStart > 1.5) notes.Add($"1-min load {loadAtStart:F2} > 1.5 at start");
        if (cpuUtil < 1.7) notes.Add($"cpu_util {cpuUtil:F2} < 1.7");
        return new Sample(value, notes.Count > 0, string.Join("; ", notes));
    }

    private static void WaitForQuiet(int maxSeconds)
    {
        var clock = Stopwatch.StartNew();
        while (Stats.LoadAverage() > 1.5 && clock.Elapsed.TotalSeconds < maxSeconds) Thread.Sleep(5000);
    }

    private static double Parse(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    private static string Tail(string s)
    {
        var lines = s.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return string.Join(" / ", lines.TakeLast(2)).Trim();
    }

    private static (int Code, string Output) Exec(string file, string[] args, TimeSpan limit, Dictionary<string, string>? env = null, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory };
        foreach (string a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? []) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(limit)) { p.Kill(true); return (-1, stdout + "\n(timed out)"); }
        return (p.ExitCode, stdout + "\n" + stderr.Result);
    }
}
