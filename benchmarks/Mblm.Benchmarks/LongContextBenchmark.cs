using System.Diagnostics;
using Mblm.Config;
using Mblm.Model;
using static TorchSharp.torch;

namespace Mblm.Benchmarks;

/// <summary>
/// One training step (batch 1, Adam) at a long context with the reference's M3 model (reference-perf.md §6: hidden 128 per
/// stage, layers [2, 1, 1], 4×32 heads, seq_lens [⌈ctx/64⌉, 8, 8], checkpoint chunks [4, 8]), or with a 1-/2-stage
/// Transformer of the same width (--stages 1|2) for the memory-per-stage comparison. Run one context per process: peak
/// RSS is the process's high-water mark.
/// </summary>
internal static class LongContextBenchmark
{
    public static void Run(Options o)
    {
        long ctx = o.Longs("context", "1048576")[0];
        if (ctx < 64) throw new ArgumentOutOfRangeException("context", $"--context must be at least 64 bytes, got {ctx}");
        // Contexts that are not a multiple of the patch grid are padded by the model; seq_lens cover them (rounded up).
        int Grid(long unit) => checked((int)((ctx + unit - 1) / unit));
        int stages = o.Int("stages", 3);
        string chunks = o.Str("chunks", "4,8");
        var attn = new TransformerBlockConfig { AttnHeadDims = 32, AttnNumHeads = 4, AttnUseRotEmbs = true, PosEmbType = PosEmbType.Fixed };
        var config = stages switch
        {
            1 => new MblmConfig { NumTokens = 257, PadTokenId = 256, HiddenDims = [128], NumLayers = [4], SeqLens = [Grid(1)], Blocks = [attn] },
            2 => new MblmConfig { NumTokens = 257, PadTokenId = 256, HiddenDims = [128, 128], NumLayers = [2, 2], SeqLens = [Grid(8), 8], Blocks = [attn, attn] },
            _ => new MblmConfig
            {
                NumTokens = 257, PadTokenId = 256, HiddenDims = [128, 128, 128], NumLayers = [2, 1, 1], SeqLens = [Grid(64), 8, 8],
                Blocks = [attn, attn, attn], TrainCheckpointChunks = chunks == "none" ? null : chunks.Split(',').Select(int.Parse).ToArray(),
            },
        };
        config.Validate();
        manual_seed(0);
        var model = new MblmModel(config);
        model.train();
        var optimizer = optim.Adam(model.parameters(), lr: 1e-3, beta1: 0.9, beta2: 0.95);
        var ids = randint(0, 256, new long[] { 1, ctx }, generator: new Generator(1234));
        using var phases = o.Has("breakdown") ? new MemoryPhases(ctx) : null;
        phases?.At("model + ids", ids);
        double baseRss = Stats.PeakRssMiB();
        var sw = Stopwatch.StartNew();
        var loss = model.Loss(ids);
        double fwd = sw.Elapsed.TotalSeconds;
        double afterForward = Stats.PeakRssMiB() - baseRss;
        phases?.At("loss (forward done)", loss);
        loss.backward();
        double bwd = sw.Elapsed.TotalSeconds - fwd;
        phases?.At("backward done (parameter gradients)");
        optimizer.step();
        double total = sw.Elapsed.TotalSeconds;
        phases?.At("optimizer step (Adam state)");
        double peak = phases?.Peak ?? Stats.PeakRssMiB();
        if (phases is not null) Console.WriteLine();
        Console.WriteLine($"| {stages} | {ctx:N0} | [{string.Join(", ", config.SeqLens)}] | {(stages == 3 ? chunks : "none")} | {config.CountParameters():N0} | " +
                          $"{peak:F0} | {peak - baseRss:F0} (forward peak {afterForward:F0}) | {total:F1} ({fwd:F1} / {bwd:F1}) | loss {loss.item<float>():F3} |");
    }
}
