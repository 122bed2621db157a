using System.Globalization;
using System.Text.Json;
using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Cli;

/// <summary>
/// <c>mblm forward</c>: one forward pass over <c>{"ids": [[...]], "loss_mask": [[...]] | null}</c>; prints
/// <c>{"loss": x, "shape": [B, L, V]}</c> (loss round-trip exact) and writes the logits as raw little-endian float32.
/// </summary>
internal static class ForwardCommand
{
    public static int Run(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string configPath = args.Required("config"), weightsPath = args.Required("weights"), inputPath = args.Required("input");
        string? logitsOut = args.Optional("logits-out");
        var device = DeviceOption.Parse(args.Optional("device"));
        args.RejectUnknown("forward");

        var config = ConfigReader.LoadModel(configPath);
        var (ids, mask) = ReadInput(inputPath, config);
        using var scope = NewDisposeScope();
        var model = CliModel.Load(config, weightsPath, device);
        model.eval();
        stderr.WriteLine($"mblm forward: {ids.size(0)} x {ids.size(1)} ids on {device.type}, {config.NumStages} stages");
        using var noGrad = no_grad();
        var (loss, logits, _) = model.LossAndLogits(ids.to(device), mask?.to(device));
        if (logitsOut is not null) WriteLogits(logits, logitsOut);
        float lossValue = loss.item<float>();
        stdout.WriteLine("{\"loss\": " + lossValue.ToString("R", CultureInfo.InvariantCulture) +
                         ", \"shape\": [" + string.Join(", ", logits.shape) + "]}");
        return 0;
    }

    /// <summary>Reads the input JSON, checking shapes and id range with messages that name the file and field.</summary>
    public static (Tensor Ids, Tensor? Mask) ReadInput(string path, MblmConfig config)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"input file '{path}' does not exist", path);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        if (!doc.RootElement.TryGetProperty("ids", out var idsNode) || idsNode.ValueKind != JsonValueKind.Array || idsNode.GetArrayLength() == 0)
            throw new InvalidDataException($"'{path}': \"ids\" must be a non-empty list of rows of token ids");
        var rows = idsNode.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();
        if (rows.Any(r => r.Length != rows[0].Length || r.Length == 0))
            throw new InvalidDataException($"'{path}': every row of \"ids\" must have the same, non-zero length");
        var bad = rows.SelectMany(r => r).Where(x => x < 0 || x >= config.NumTokens).Take(1).ToList();
        if (bad.Count > 0)
            throw new InvalidDataException($"'{path}': id {bad[0]} is outside [0, num_tokens) = [0, {config.NumTokens})");
        long b = rows.Length, l = rows[0].Length;
        var ids = tensor(rows.SelectMany(r => r).ToArray(), new[] { b, l });
        Tensor? mask = null;
        if (doc.RootElement.TryGetProperty("loss_mask", out var m) && m.ValueKind == JsonValueKind.Array)
        {
            var maskRows = m.EnumerateArray().Select(r => r.EnumerateArray().Select(x => (float)x.GetDouble()).ToArray()).ToArray();
            if (maskRows.Length != b || maskRows.Any(r => r.Length != l))
                throw new InvalidDataException($"'{path}': \"loss_mask\" must have the shape of \"ids\" ({b} x {l})");
            mask = tensor(maskRows.SelectMany(r => r).ToArray(), new[] { b, l });
        }
        return (ids, mask);
    }

    private static void WriteLogits(Tensor logits, string path)
    {
        var data = logits.cpu().contiguous().to_type(float32);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + ".tmp";
        File.WriteAllBytes(temp, data.bytes.ToArray());
        File.Move(temp, full, overwrite: true);
    }
}

/// <summary>The model the commands run: built from the config, weights loaded strictly when given, moved to the device.</summary>
internal static class CliModel
{
    public static MblmModel Load(MblmConfig config, string? weightsPath, Device device)
    {
        var model = new MblmModel(config);
        if (weightsPath is not null) ModelWeights.Load(model, weightsPath);
        model.to(device);
        return model;
    }
}

/// <summary>The <c>--device</c> option: cpu, cuda[:N], or auto (CUDA when available).</summary>
internal static class DeviceOption
{
    public static Device Parse(string? value)
    {
        switch (value)
        {
            case null or "auto":
                return cuda.is_available() ? CUDA : CPU;
            case "cpu":
                return CPU;
            default:
                if (!value.StartsWith("cuda", StringComparison.Ordinal)) throw new UsageException($"--device must be cpu, cuda, cuda:N or auto, got '{value}'");
                if (!cuda.is_available()) throw new UsageException($"--device {value}: CUDA is not available (this build uses the CPU libtorch; see README, GPU)");
                return new Device(value);
        }
    }
}
