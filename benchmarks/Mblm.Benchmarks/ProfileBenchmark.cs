using System.Diagnostics;
using Mblm.Config;
using Mblm.Model;
using static TorchSharp.torch;

namespace Mblm.Benchmarks;

/// <summary>
/// Per-region profile of the train-step benchmark's step (reference-perf.md §3's step: zero_grad → loss → backward → Adam):
/// forward and backward wall time of every region the model marks (<see cref="StepProfile"/>), grouped by stage and kind,
/// with the matmul FLOPs of the GEMM regions and their achieved rate, next to the 2048² matmul rate measured in the same run
/// and the fixed per-step cost of the same op graph on a tiny input (dispatch, autograd, interop).
/// </summary>
internal static class ProfileBenchmark
{
    public static void Run(Options o)
    {
        var (path, config, model, optimizer, ids) = TrainStepBenchmark.Setup(o);
        long batch = ids.size(0), length = ids.size(1);
        int steps = o.Int("steps", 9), warmup = o.Int("warmup", 2);
        var tiny = randint(0, 256, new long[] { 1, config.PatchSize }, generator: new Generator(1234));

        var plain = new List<double>(); var profiled = new List<double>(); var floor = new List<double>();
        var fwd = new List<Dictionary<string, double>>(); var bwd = new List<Dictionary<string, double>>();
        var phases = new List<Dictionary<string, double>>();
        for (int s = 0; s < warmup + steps; s++)
        {
            // Alternate: a plain step, a profiled step, a tiny-input step (same graph, negligible arithmetic).
            double tPlain = Step(model, optimizer, ids, null, out _);
            double tTiny = Step(model, optimizer, tiny, null, out _);
            var rec = StepProfile.Start("s0.prepare");
            double tProf;
            Dictionary<string, double> ph;
            try { tProf = Step(model, optimizer, ids, rec, out ph); }
            finally { StepProfile.Stop(); }
            if (s < warmup) continue;
            plain.Add(tPlain); floor.Add(tTiny); profiled.Add(tProf);
            fwd.Add(rec.ForwardMs); bwd.Add(rec.BackwardMs); phases.Add(ph);
        }

        double matmul = TrainStepBenchmark.MatmulGflops();
        double plainMs = Stats.Median(plain), profMs = Stats.Median(profiled), floorMs = Stats.Median(floor);
        Console.WriteLine($"config {Path.GetFileNameWithoutExtension(path)}: {config.CountParameters():N0} params, batch {batch} x {length} bytes, " +
                          $"{steps} steps after {warmup} warm-up; medians");
        Console.WriteLine($"step: plain {plainMs:F1} ms, profiled {profMs:F1} ms (marks add {profMs - plainMs:F1} ms), " +
                          $"same graph on {config.PatchSize} bytes {floorMs:F1} ms (per-step fixed cost: dispatch, autograd, interop)");
        Console.WriteLine($"2048² fp32 matmul in this run: {matmul:F0} GFLOP/s; load avg now {Stats.LoadAverage():F2}");
        Console.WriteLine();

        var regions = fwd.SelectMany(d => d.Keys).Concat(bwd.SelectMany(d => d.Keys)).Distinct().ToList();
        regions.Sort((a, b) => Order(a).CompareTo(Order(b)));
        var flops = RegionFlops(config, batch, length);
        Console.WriteLine("| region | fwd ms | bwd ms | total ms | % of profiled step | matmul GFLOP (fwd+bwd) | GFLOP/s |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
        double sum = 0;
        foreach (string r in regions)
        {
            double f = Stats.Median(fwd.Select(d => d.GetValueOrDefault(r))), b = Stats.Median(bwd.Select(d => d.GetValueOrDefault(r)));
            sum += f + b;
            string gf = flops.TryGetValue(r, out double g) ? $"{g / 1e9:F2}" : "";
            string rate = flops.TryGetValue(r, out g) && f + b > 0 ? $"{g / 1e9 / ((f + b) / 1000):F0}" : "";
            Console.WriteLine($"| {r} | {f:F1} | {b:F1} | {f + b:F1} | {(f + b) / profMs:P1} | {gf} | {rate} |");
        }
        foreach (string p in new[] { "zero_grad", "optimizer (Adam)", "dispose scope", "loss.item" })
        {
            double t = Stats.Median(phases.Select(d => d.GetValueOrDefault(p)));
            sum += t;
            Console.WriteLine($"| {p} | | | {t:F1} | {t / profMs:P1} | | |");
        }
        Console.WriteLine($"| unattributed (step − regions) | | | {profMs - sum:F1} | {(profMs - sum) / profMs:P1} | | |");
        Console.WriteLine();

        // By kind, summed over stages and layers.
        Console.WriteLine("| kind (all stages) | fwd ms | bwd ms | total ms | % | matmul GFLOP | GFLOP/s |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
        foreach (var kind in regions.GroupBy(Kind).OrderByDescending(g => g.Sum(r => Stats.Median(fwd.Select(d => d.GetValueOrDefault(r))) + Stats.Median(bwd.Select(d => d.GetValueOrDefault(r))))))
        {
            double f = kind.Sum(r => Stats.Median(fwd.Select(d => d.GetValueOrDefault(r))));
            double b = kind.Sum(r => Stats.Median(bwd.Select(d => d.GetValueOrDefault(r))));
            double g = kind.Sum(r => flops.GetValueOrDefault(r));
            Console.WriteLine($"| {kind.Key} | {f:F1} | {b:F1} | {f + b:F1} | {(f + b) / profMs:P1} | {(g > 0 ? $"{g / 1e9:F2}" : "")} | " +
                              $"{(g > 0 ? $"{g / 1e9 / ((f + b) / 1000):F0}" : "")} |");
        }
        Console.WriteLine();
        Console.WriteLine("| stage | fwd ms | bwd ms | total ms | % | matmul GFLOP |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
        foreach (var stage in regions.GroupBy(r => Order(r).Item1).OrderBy(g => g.Key))
        {
            double f = stage.Sum(r => Stats.Median(fwd.Select(d => d.GetValueOrDefault(r))));
            double b = stage.Sum(r => Stats.Median(bwd.Select(d => d.GetValueOrDefault(r))));
            double g = stage.Sum(r => flops.GetValueOrDefault(r));
            Console.WriteLine($"| {(stage.Key == 99 ? "head and loss" : $"stage {stage.Key}")} | {f:F1} | {b:F1} | {f + b:F1} | {(f + b) / profMs:P1} | {g / 1e9:F2} |");
        }
        double total = TrainStepBenchmark.StepFlops(config, batch, length);
        Console.WriteLine($"model matmul FLOPs per step {total / 1e9:F1} G → {total / 1e9 / (plainMs / 1000):F1} GFLOP/s on the plain step " +
                          $"= {total / 1e9 / (plainMs / 1000) / matmul:P1} of the 2048² matmul rate");
    }

    // One step; with a recorder, also the phase times outside the model's regions.
    private static double Step(MblmModel model, optim.Optimizer optimizer, Tensor ids, StepProfile.Recorder? rec, out Dictionary<string, double> phases)
    {
        phases = new Dictionary<string, double>();
        var sw = Stopwatch.StartNew();
        var scope = NewDisposeScope();
        optimizer.zero_grad();
        double t0 = sw.Elapsed.TotalMilliseconds;
        rec?.Forward("s0.prepare");   // restart the forward clock after zero_grad
        var loss = model.Loss(ids);
        rec?.Forward("(end of forward)");
        rec?.BeginBackward();
        loss.backward();
        rec?.EndBackward("s0.input");
        double t1 = sw.Elapsed.TotalMilliseconds;
        optimizer.step();
        double t2 = sw.Elapsed.TotalMilliseconds;
        loss.item<float>();
        double t3 = sw.Elapsed.TotalMilliseconds;
        scope.Dispose();
        double t4 = sw.Elapsed.TotalMilliseconds;
        phases["zero_grad"] = t0;
        phases["optimizer (Adam)"] = t2 - t1;
        phases["loss.item"] = t3 - t2;
        phases["dispose scope"] = t4 - t3;
        return t4;
    }

    private static readonly string[] KindOrder =
    {
        "prepare", "input", "attn.shift", "attn.norm", "attn.qkv-proj", "attn.rope", "attn.sdpa", "attn.out-proj", "attn.residual",
        "ffn.shift", "ffn.norm", "ffn.up", "ffn.gelu", "ffn.down", "ffn.residual", "final-norm", "next-stage-proj", "head", "loss",
    };

    private static string Kind(string region) => region.StartsWith('s') && region.IndexOf('.') is int i and > 0 && char.IsDigit(region[1]) ? region[(i + 1)..] : region;

    private static (int, int) Order(string region)
    {
        int stage = region.StartsWith('s') && char.IsDigit(region[1]) ? region[1] - '0' : 99;
        int k = Array.IndexOf(KindOrder, Kind(region));
        return (stage, k < 0 ? 98 : k);
    }

    // Matmul FLOPs (forward + backward = 3 × forward) of the GEMM regions, Transformer stages only.
    private static Dictionary<string, double> RegionFlops(MblmConfig c, long batch, long length)
    {
        var d = new Dictionary<string, double>();
        int n = c.NumStages;
        for (int s = 0; s < n; s++)
        {
            var (unit, units, seq, rows, positions) = TrainStepBenchmark.StageShape(c, s, batch, length);
            long dim = c.HiddenDims[s];
            if (c.Blocks[s] is TransformerBlockConfig t)
            {
                long inner = t.AttnHeadDims * t.AttnNumHeads, layers = c.NumLayers[s];
                d[$"s{s}.attn.qkv-proj"] = 3 * 2.0 * positions * dim * 3 * inner * layers;
                d[$"s{s}.attn.out-proj"] = 3 * 2.0 * positions * inner * dim * layers;
                d[$"s{s}.attn.sdpa"] = 3 * 2.0 * (seq + 1) * (seq + 1) * inner * rows * layers;
                d[$"s{s}.ffn.up"] = 3 * 2.0 * positions * dim * t.FfMultiplier * dim * layers;
                d[$"s{s}.ffn.down"] = 3 * 2.0 * positions * dim * t.FfMultiplier * dim * layers;
            }
            if (s < n - 1) d[$"s{s}.input"] = 3 * 2.0 * unit * c.HiddenDims[n - 1] * dim * units;   // patch embedder projection
            if (s < n - 1) d[$"s{s}.next-stage-proj"] = 3 * 2.0 * dim * c.SeqLens[s + 1] * c.HiddenDims[s + 1] * units;
        }
        d["head"] = 3 * 2.0 * c.HiddenDims[n - 1] * c.NumTokens * batch * TrainStepBenchmark.Padded(c, length);
        return d;
    }
}
