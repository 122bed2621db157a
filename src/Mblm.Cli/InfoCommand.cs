using System.Globalization;
using System.Text.Json;
using Mblm.Config;
using Mblm.Native;

namespace Mblm.Cli;

/// <summary>
/// <c>mblm info [--config C]</c>: the libtorch this process runs on (path, version, how it was found) and, with a config,
/// the hierarchy's stages, shapes and parameter counts, computed without allocating weights.
/// </summary>
internal static class InfoCommand
{
    public static int Run(CliArgs args, TextWriter stdout)
    {
        string? path = args.Optional("config");
        args.RejectUnknown("info");
        var torch = LibTorchLocation.Describe();
        stdout.WriteLine($"libtorch: {torch.CpuLibrary ?? "?"} (version {torch.Version ?? "unknown"}; from {torch.Source})" +
                         (torch.CudaLibrary is { } cuda ? $"; CUDA: {cuda}" : ""));
        if (torch.VersionUntested)
            stdout.WriteLine($"libtorch: warning: TorchSharp's native glue was built for libtorch {LibTorchInfo.GlueBuiltFor}; {torch.Version} is untested (no C++ ABI promise across minor versions)");
        if (torch.Problem is { } problem) throw new InvalidInputException($"libtorch: {problem}");
        string allocator = TorchRuntime.AppliedAllocatorTuning switch
        {
            AllocatorTuning.Bounded => "bounded", AllocatorTuning.KeepAll => "keep-all", _ => "none",
        };
        stdout.WriteLine($"allocator tuning: {allocator} (MBLM_MALLOC_TUNING: bounded by default, off or keep-all)");
        string threading = TorchRuntime.AppliedThreadingDefaults.Count > 0 ? string.Join(" ", TorchRuntime.AppliedThreadingDefaults) : "libtorch";
        stdout.WriteLine($"threading: {threading}: {TorchRuntime.ThreadingDecision} (MBLM_THREADING_DEFAULTS: auto by default, shared or off)");
        if (path is null)
        {
            stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["libtorch"] = torch.CpuLibrary, ["libtorch_version"] = torch.Version, ["libtorch_source"] = torch.Source,
                ["allocator_tuning"] = allocator, ["threading"] = threading,
            }));
            return 0;
        }
        CliPaths.InputFile("config", path);
        var file = CliModel.LoadFile(path);
        var c = file.Model;
        var parts = c.CountParametersByPart();
        stdout.WriteLine($"config: {path}");
        stdout.WriteLine($"vocabulary: {c.NumTokens} tokens, pad id {c.PadTokenId}; max context {c.MaxContext:N0} bytes" +
                         (file.InputSeqLen is long l ? $"; input_seq_len {l:N0}" : ""));
        // Stage i runs rows of (1 + S_i) positions: S_0 = K ≤ P_1 top-level patches per sample, S_i = P_i after that;
        // its row count is B·K·P_2·…·P_i (one row per unit of the stage above).
        string rows = "B";
        long unitBytes = c.PatchSize;
        for (int i = 0; i < c.NumStages; i++)
        {
            var b = c.Blocks[i];
            string block = b.Describe(c.HiddenDims[i]);
            string seq = i == 0 ? $"K<={c.SeqLens[0]}" : c.SeqLens[i].ToString(CultureInfo.InvariantCulture);
            stdout.WriteLine($"stage {i} ({(i == c.NumStages - 1 ? "local" : "global")}): {block}; pos_emb {StageBlockConfig.PosEmbName(b.PosEmbType)}; " +
                             $"{c.NumLayers[i]} layers, dim {c.HiddenDims[i]}; units of {unitBytes:N0} bytes; " +
                             $"input ({rows}, 1+{seq}, {c.HiddenDims[i]}); {parts[$"stage_models.{i}"]:N0} parameters" +
                             (i > 0 && c.TrainCheckpointChunks is { } ch ? $"; training checkpoint chunks {ch[i - 1]}" : ""));
            rows += i == 0 ? "·K" : $"·{c.SeqLens[i]}";
            if (i + 1 < c.NumStages) unitBytes /= c.SeqLens[i + 1];
        }
        foreach (var (name, count) in parts.Where(p => !p.Key.StartsWith("stage_models", StringComparison.Ordinal)))
            stdout.WriteLine($"{name}: {count:N0} parameters");
        long total = c.CountParameters();
        stdout.WriteLine($"total: {total:N0} parameters ({(total / 1e6).ToString("F2", CultureInfo.InvariantCulture)} M)");
        stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["parameters"] = total, ["stages"] = c.NumStages, ["max_context"] = c.MaxContext,
            ["block_types"] = c.Blocks.Select(b => b.BlockType).ToArray(),
            ["libtorch"] = torch.CpuLibrary!, ["libtorch_version"] = torch.Version!, ["libtorch_source"] = torch.Source,
        }));
        return 0;
    }
}
