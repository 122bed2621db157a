using System.Diagnostics;
using Mblm.Config;
using Mblm.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Benchmarks;

/// <summary>
/// One training step as reference-perf.md §3 measures it: zero_grad → loss forward → backward → Adam(1e-3, β 0.9/0.95) step,
/// on uniform random bytes (seed 1234), model seed 0; median over timed steps after warm-up.
/// </summary>
internal static class TrainStepBenchmark
{
    // Reference (Python mblm 0.4.0, OpenMP OpenBLAS, same machine) medians from reference-perf.md §3, ms per step.
    private static readonly Dictionary<string, double> ReferenceMs = new() { ["p1-2d-tt"] = 491, ["p2-2d-st"] = 1064, ["p3-3d-ttt"] = 347 };

    public static void Run(Options o)
    {
        var (path, config, model, optimizer, ids) = Setup(o);
        long batch = ids.size(0), length = ids.size(1);
        int steps = o.Int("steps", 15), warmup = o.Int("warmup", 2);
        // --forward-only 1: batched scoring instead of a training step (eval mode, no grad: the loss forward only).
        bool scoring = o.Int("forward-only", 0) == 1;
        if (scoring) model.eval();
        var fwd = new List<double>(); var bwd = new List<double>(); var opt = new List<double>(); var total = new List<double>();
        var losses = new List<float>();
        double loadAtStart = Stats.LoadAverage();
        TimeSpan cpu0 = TimeSpan.Zero;
        var wall = new Stopwatch();
        for (int s = 0; s < warmup + steps; s++)
        {
            if (s == warmup) { cpu0 = Process.GetCurrentProcess().TotalProcessorTime; wall.Start(); }
            using var scope = NewDisposeScope();
            var sw = Stopwatch.StartNew();
            Tensor loss;
            double tf, tb, tt;
            if (scoring)
            {
                using (no_grad()) loss = model.Loss(ids);
                tf = tb = tt = sw.Elapsed.TotalMilliseconds;
            }
            else
            {
                optimizer.zero_grad();
                loss = model.Loss(ids);
                tf = sw.Elapsed.TotalMilliseconds;
                loss.backward();
                tb = sw.Elapsed.TotalMilliseconds;
                optimizer.step();
                tt = sw.Elapsed.TotalMilliseconds;
            }
            losses.Add(loss.item<float>());
            if (s >= warmup) { fwd.Add(tf); bwd.Add(tb - tf); opt.Add(tt - tb); total.Add(tt); }
        }
        double cpuUtil = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds / wall.Elapsed.TotalSeconds;
        string name = Path.GetFileNameWithoutExtension(path);
        double median = Stats.Median(total);
        Console.WriteLine($"config {name}: {config.CountParameters():N0} params, batch {batch} x {length} bytes, {steps} timed steps after {warmup} warm-up");
        Console.WriteLine($"| config | ms/step (median) | min-max | fwd+loss / bwd / Adam ms | bytes/s | peak RSS MiB | reference on another machine, ms/step | ratio |");
        Console.WriteLine($"| --- | --- | --- | --- | --- | --- | --- | --- |");
        string reference = ReferenceMs.TryGetValue(name, out var r) && batch == 4 && length == 2048 ? $"{r:F0}" : "n/a";
        string ratio = reference == "n/a" ? "n/a" : $"{r / median:F2}x";
        Console.WriteLine($"| {name} | {median:F0} | {total.Min():F0}-{total.Max():F0} | {Stats.Median(fwd):F0} / {Stats.Median(bwd):F0} / {Stats.Median(opt):F1} | " +
                          $"{batch * length / median * 1000:N0} | {Stats.PeakRssMiB():F0} | {reference} | {ratio} |");
        Console.WriteLine($"losses: {string.Join(" ", losses.Select(l => l.ToString("F3")))}");
        Console.WriteLine($"(reference figures: reference-perf.md, measured on another CPU — context only; `compare` times both here, side by side)");
        Console.WriteLine($"median_ms={median.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}");
        Console.WriteLine($"cpu_util={cpuUtil:F2} load_start={loadAtStart:F2}");
        if (o.Int("no-mfu", 0) == 1) return;
        double flops = StepFlops(config, batch, length);
        double peak = MatmulGflops();
        double achieved = flops / (median / 1000) / 1e9;
        Console.WriteLine($"model FLOPs per step {flops / 1e9:F1} G (fwd+bwd ≈ 3 × forward matmuls); achieved {achieved:F1} GFLOP/s; " +
                          $"2048² fp32 matmul on this machine {peak:F0} GFLOP/s → model FLOP utilisation {achieved / peak:P1}");
    }

    /// <summary>Matmul FLOPs of one training step (3 × forward): stage layers, attention scores, embedders, projections, head.</summary>
    public static double StepFlops(MblmConfig c, long batch, long length)
    {
        int n = c.NumStages;
        double forward = 0;
        for (int s = 0; s < n; s++)
        {
            var (unit, units, seq, rows, positions) = StageShape(c, s, batch, length);
            long dim = c.HiddenDims[s];
            long layerParams = c.Blocks[s].CountParameters(dim, c.NumLayers[s]);
            forward += 2.0 * layerParams * positions;
            if (c.Blocks[s] is TransformerBlockConfig t)              // causal q·kᵀ and p·v: 2 × 2·S²·inner / 2 per row and layer
                forward += 2.0 * (seq + 1) * (seq + 1) * t.AttnHeadDims * t.AttnNumHeads * rows * c.NumLayers[s];
            if (s < n - 1)
            {
                forward += 2.0 * unit * c.HiddenDims[n - 1] * dim * units;                  // patch embedder projection
                forward += 2.0 * dim * c.SeqLens[s + 1] * c.HiddenDims[s + 1] * units;     // next-stage projection
            }
        }
        forward += 2.0 * c.HiddenDims[n - 1] * c.NumTokens * batch * Padded(c, length);     // LM head
        return 3 * forward;
    }

    /// <summary>The input length rounded up to whole top-level patches.</summary>
    internal static long Padded(MblmConfig c, long length) => (length + c.PatchSize - 1) / c.PatchSize * c.PatchSize;

    /// <summary>
    /// Stage <paramref name="s"/>'s shape for a batch: bytes per unit, units (positions without start tokens), row length,
    /// rows, and positions including one start token per row.
    /// </summary>
    internal static (long Unit, long Units, long Seq, long Rows, long Positions) StageShape(MblmConfig c, int s, long batch, long length)
    {
        long padded = Padded(c, length);
        long unit = c.SeqLens.Skip(s + 1).Aggregate(1L, (a, p) => a * p);
        long units = batch * padded / unit;
        long seq = s == 0 ? padded / unit : c.SeqLens[s];
        long rows = units / seq;
        return (unit, units, seq, rows, units + rows);
    }

    /// <summary>
    /// reference-perf.md §3's set-up: the config (<c>--config</c>, P1 by default), the model seeded with 0 in training mode,
    /// Adam(1e-3, β 0.9/0.95), and uniform random bytes (<c>--batch</c> × <c>--length</c>, generator seed 1234).
    /// </summary>
    internal static (string Path, MblmConfig Config, MblmModel Model, optim.Optimizer Optimizer, Tensor Ids) Setup(Options o)
    {
        string path = o.Str("config", "examples/configs/p1-2d-tt.yaml");
        int batch = o.Int("batch", 4), length = o.Int("length", 2048);
        var config = ConfigReader.LoadModel(path);
        manual_seed(0);
        var model = new MblmModel(config);
        model.train();
        var optimizer = optim.Adam(model.parameters(), lr: 1e-3, beta1: 0.9, beta2: 0.95);
        var ids = randint(0, 256, new long[] { batch, length }, generator: new Generator(1234));
        return (path, config, model, optimizer, ids);
    }

    /// <summary>GFLOP/s of a 2048² fp32 matmul on this machine now (median of 5 after one warm-up).</summary>
    internal static double MatmulGflops()
    {
        using var scope = NewDisposeScope();
        var a = randn(2048, 2048);
        var b = randn(2048, 2048);
        matmul(a, b);
        var times = Enumerable.Range(0, 5).Select(_ => Stats.TimeMs(() => matmul(a, b).Dispose())).ToList();
        return 2.0 * 2048 * 2048 * 2048 / (Stats.Median(times) / 1000) / 1e9;
    }
}
