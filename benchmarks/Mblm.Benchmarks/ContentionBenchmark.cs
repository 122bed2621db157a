using System.Diagnostics;
using System.Globalization;

namespace Mblm.Benchmarks;

/// <summary>
/// Training under CPU contention: the P1 training step quiet and with competitors (one single-threaded busy loop per core,
/// separate processes), for several OpenMP settings. Every measurement is a fresh process (the OpenMP runtime reads its
/// settings once, when libtorch loads), alternating settings within each repetition.
/// </summary>
internal static class ContentionBenchmark
{
    public static void Run(Options o)
    {
        string config = o.Str("config", "examples/configs/p1-2d-tt.yaml");
        int steps = o.Int("steps", 6), warmup = o.Int("warmup", 2), reps = o.Int("reps", 5);
        int competitors = o.Int("competitors", Environment.ProcessorCount);
        var workloads = o.Str("workloads", "train,score").Split(',', StringSplitOptions.RemoveEmptyEntries);
        var clean = new Dictionary<string, string?> { ["GOMP_SPINCOUNT"] = null, ["OMP_WAIT_POLICY"] = null };
        Dictionary<string, string?> With(params (string, string?)[] kv)
        {
            var env = new Dictionary<string, string?>(clean);
            foreach (var (k, v) in kv) env[k] = v;
            return env;
        }
        string shared = string.Join(", ", Mblm.Native.TorchRuntime.ThreadingDefaults.Select(kv => $"{kv.Key}={kv.Value}"));
        var settings = new List<(string Name, Dictionary<string, string?> Env)>
        {
            ("libtorch default (MBLM_THREADING_DEFAULTS=off)", With(("MBLM_THREADING_DEFAULTS", "off"))),
            ("ours: auto (the default)", With(("MBLM_THREADING_DEFAULTS", null))),
            ($"shared ({shared}; MBLM_THREADING_DEFAULTS=shared)", With(("MBLM_THREADING_DEFAULTS", "shared"))),
        };
        foreach (string extra in o.Str("extra", "").Split(';', StringSplitOptions.RemoveEmptyEntries))
            settings.Add((extra, With(extra.Split(',').Select(kv => (kv.Split('=')[0], (string?)kv.Split('=')[1])).Append(("MBLM_THREADING_DEFAULTS", "off")).ToArray())));
        Console.WriteLine($"{Path.GetFileName(config)}: {steps} timed steps after {warmup} warm-up per process, {reps} repetitions, " +
                          $"{competitors} competitor busy loops in the contended runs; workloads: {string.Join(", ", workloads)} (score = eval-mode forward, no grad)");
        foreach (string workload in workloads)
        {
            var quiet = settings.ToDictionary(s => s.Name, _ => new List<double>());
            var loaded = settings.ToDictionary(s => s.Name, _ => new List<double>());
            for (int r = 0; r < reps; r++)
                foreach (var (name, env) in settings)
                {
                    quiet[name].Add(Step(config, workload, steps, warmup, env, 0));
                    loaded[name].Add(Step(config, workload, steps, warmup, env, competitors));
                }
            Console.WriteLine();
            Console.WriteLine($"workload: {(workload == "score" ? "batched scoring (forward, no grad)" : "training step")}");
            Console.WriteLine("| OpenMP setting | quiet ms/step | contended ms/step | contended / quiet |");
            Console.WriteLine("| --- | --- | --- | --- |");
            double baseQuiet = Stats.Median(quiet[settings[0].Name]);
            foreach (var (name, _) in settings)
            {
                double q = Stats.Median(quiet[name]), c = Stats.Median(loaded[name]);
                Console.WriteLine($"| {name} | {q:F0} ({q / baseQuiet:F2}x default) | {c:F0} | {c / q:F2} |");
            }
        }
        Console.WriteLine("(medians over repetitions of each process's median step; settings alternate within each repetition; ratios from one run)");
    }

    // One fresh process of `train-step`; returns its median ms per step.
    private static double Step(string config, string workload, int steps, int warmup, Dictionary<string, string?> env, int competitors)
    {
        var busy = Enumerable.Range(0, competitors).Select(_ => Process.Start(new ProcessStartInfo("sh", "-c \"while :; do :; done\"") { UseShellExecute = false })!).ToList();
        try
        {
            var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            string self = typeof(ContentionBenchmark).Assembly.Location;
            if (!Path.GetFileName(Environment.ProcessPath!).StartsWith("Mblm.Benchmarks", StringComparison.Ordinal)) psi.ArgumentList.Add(self);
            foreach (string a in new[] { "train-step", "--config", config, "--steps", steps.ToString(CultureInfo.InvariantCulture), "--warmup",
                warmup.ToString(CultureInfo.InvariantCulture), "--no-mfu", "1",
                "--forward-only", workload == "score" ? "1" : "0" })
                psi.ArgumentList.Add(a);
            foreach (var (k, v) in env)
                if (v is null) psi.Environment.Remove(k); else psi.Environment[k] = v;
            using var p = Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd();
            string error = p.StandardError.ReadToEnd();
            p.WaitForExit();
            var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("median_ms=", StringComparison.Ordinal))
                ?? throw new InvalidOperationException($"train-step printed no median (exit {p.ExitCode}): {output}{error}");
            return double.Parse(line["median_ms=".Length..], CultureInfo.InvariantCulture);
        }
        finally
        {
            foreach (var b in busy) { try { b.Kill(); b.WaitForExit(); } catch (InvalidOperationException) { } b.Dispose(); }
        }
    }
}
