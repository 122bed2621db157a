using Mblm.Config;
using Mblm.Model;
using static TorchSharp.torch;

namespace Mblm.Benchmarks;

/// <summary>
/// Mamba2 stage vs a Transformer stage of (nearly) equal parameter count, forward+backward on (1, L, 256); then the chunked
/// SSD scan against the sequential recurrence and across chunk sizes.
/// </summary>
internal static class MambaBenchmark
{
    public static void Run(Options o)
    {
        var lengths = o.Longs("lengths", "1024,4096,16384");
        int reps = o.Int("reps", 3);
        const int dim = 256;
        var mambaBlock = new Mamba2BlockConfig { DState = 64, DConv = 4, Expand = 2, Headdim = 32 };
        var attnBlock = new TransformerBlockConfig { AttnHeadDims = 64, AttnNumHeads = 4, AttnUseRotEmbs = true };
        int mambaLayers = 6, attnLayers = 5;
        manual_seed(0);
        var mamba = new Mamba2Stage(mambaBlock, dim, mambaLayers);
        var attn = new TransformerStage(attnBlock, dim, attnLayers);
        Console.WriteLine($"Stage forward+backward, batch 1, dim {dim}: Mamba2 {mambaLayers} layers ({mamba.parameters().Sum(p => p.NumberOfElements):N0} params, " +
                          $"d_state 64, headdim 32, chunk {mamba.ChunkSize}) vs Transformer {attnLayers} layers ({attn.parameters().Sum(p => p.NumberOfElements):N0} params, 4x64 heads, SDPA)");
        Console.WriteLine("| L | Mamba2 chunked ms | Mamba2 sequential ms | Transformer ms | Transformer / Mamba2 |");
        Console.WriteLine("| --- | --- | --- | --- | --- |");
        foreach (long l in lengths)
        {
            var x = randn(1, l, dim);
            double m = Time(mamba, x, reps);
            mamba.ScanMode = Mamba2ScanMode.Sequential;
            double ms = l <= 4096 ? Time(mamba, x, 1) : double.NaN; // the loop is slow; skip at 16K
            mamba.ScanMode = Mamba2ScanMode.Chunked;
            double t = Time(attn, x, reps);
            Console.WriteLine($"| {l:N0} | {m:F0} | {(double.IsNaN(ms) ? "skipped" : ms.ToString("F0"))} | {t:F0} | {t / m:F2} |");
        }

        Console.WriteLine();
        Console.WriteLine("Scan only (b 1, h 16, p 32, n 64), forward+backward ms by chunk size; sequential = per-step recurrence");
        int[] chunks = [16, 32, 64, 128, 256];
        Console.WriteLine($"| L | {string.Join(" | ", chunks.Select(c => $"K={c}"))} | sequential |");
        Console.WriteLine($"| --- |{string.Concat(chunks.Select(_ => " --- |"))} --- |");
        foreach (long l in lengths)
        {
            manual_seed(1);
            var x = randn(1, l, 16, 32).requires_grad_();
            var dt = nn.functional.softplus(randn(1, l, 16) - 3).requires_grad_();
            var a = (-rand(16) * 15 - 1).requires_grad_();
            var b = randn(1, l, 64).requires_grad_();
            var c = randn(1, l, 64).requires_grad_();
            var row = chunks.Select(k => Median(reps, () => Mamba2Scan.Chunked(x, dt, a, b, c, k).square().sum().backward())).ToList();
            double seq = l <= 4096 ? Median(1, () => Mamba2Scan.Sequential(x, dt, a, b, c).square().sum().backward()) : double.NaN;
            Console.WriteLine($"| {l:N0} | {string.Join(" | ", row.Select(v => v.ToString("F0")))} | {(double.IsNaN(seq) ? "skipped" : seq.ToString("F0"))} |");
        }
    }

    private static double Time(nn.Module<Tensor, Tensor> stage, Tensor x, int reps) =>
        Median(reps, () =>
        {
            stage.zero_grad();
            stage.forward(x).square().mean().backward();
        });

    private static double Median(int reps, Action a)
    {
        using (NewDisposeScope()) a(); // warm-up
        return Stats.Median(Enumerable.Range(0, reps).Select(_ =>
        {
            using var scope = NewDisposeScope();
            return Stats.TimeMs(a);
        }));
    }
}
