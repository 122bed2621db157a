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
        CliPaths.InputFile("config", configPath);
        CliPaths.InputFile("weights", weightsPath);
        CliPaths.InputFile("input", inputPath);
        if (logitsOut is not null) logitsOut = CliPaths.OutputFile("logits-out", logitsOut);

        var config = CliModel.LoadConfig(configPath);
        using var scope = NewDisposeScope();
        var (ids, mask) = ReadInput(inputPath, config);
        var model = CliModel.Load(config, weightsPath, device);
        model.eval();
        stderr.WriteLine($"mblm forward: {ids.size(0)} x {ids.size(1)} ids on {device.type}, {config.NumStages} stages");
        using var noGrad = no_grad();
        var (loss, logits, _) = model.LossAndLogits(ids.to(device), mask?.to(device));
        if (logitsOut is not null) CliPaths.WriteAtomically(logitsOut, logits.cpu().contiguous().to_type(float32).bytes);
        float lossValue = loss.item<float>();
        if (!float.IsFinite(lossValue)) stderr.WriteLine($"mblm forward: warning: the loss is not finite ({lossValue}); printed as null");
        stdout.WriteLine("{\"loss\": " + CliJson.Number(lossValue) + ", \"shape\": [" + string.Join(", ", logits.shape) + "]}");
        return 0;
    }

    /// <summary>
    /// Reads the input JSON <c>{"ids": [[...]], "loss_mask": [[...]] | null}</c>, checking its structure, the id range and
    /// the mask values (finite float32, ≥ 0) with messages that name the file and the position.
    /// </summary>
    public static (Tensor Ids, Tensor? Mask) ReadInput(string path, MblmConfig config)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException e) { throw new InvalidInputException($"--input '{path}' is not valid JSON: {e.Message}", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new InvalidInputException($"--input '{path}' must be a JSON object {{\"ids\": [[...]], \"loss_mask\": [[...]] | null}}");
            if (!root.TryGetProperty("ids", out var idsNode) || idsNode.ValueKind != JsonValueKind.Array || idsNode.GetArrayLength() == 0)
                throw new InvalidInputException($"--input '{path}': \"ids\" must be a non-empty list of rows of token ids");
            var rows = Rows(idsNode, path, "ids", (x, at) =>
                x.ValueKind == JsonValueKind.Number && x.TryGetInt64(out long id)
                    ? id >= 0 && id < config.NumTokens ? id
                        : throw new InvalidInputException($"--input '{path}': {at} = {id} is outside [0, num_tokens) = [0, {config.NumTokens})")
                    : throw new InvalidInputException($"--input '{path}': {at} must be an integer token id, got {Show(x)}"));
            long b = rows.Length, l = rows[0].Length;
            if (l == 0 || rows.Any(r => r.Length != l))
                throw new InvalidInputException($"--input '{path}': every row of \"ids\" must have the same, non-zero length");
            var ids = tensor(rows.SelectMany(r => r).ToArray(), new[] { b, l });
            Tensor? mask = null;
            if (root.TryGetProperty("loss_mask", out var m) && m.ValueKind != JsonValueKind.Null)
            {
                if (m.ValueKind != JsonValueKind.Array)
                    throw new InvalidInputException($"--input '{path}': \"loss_mask\" must be a list of rows of numbers, or null; got {Show(m)}");
                var maskRows = Rows(m, path, "loss_mask", (x, at) =>
                {
                    if (x.ValueKind != JsonValueKind.Number || !x.TryGetDouble(out double w))
                        throw new InvalidInputException($"--input '{path}': {at} must be a number, got {Show(x)}");
                    float f = (float)w;
                    if (!float.IsFinite(f) || f < 0)
                        throw new InvalidInputException($"--input '{path}': {at} = {x.GetRawText()} must be a finite number >= 0 that fits a float32");
                    return f;
                });
                if (maskRows.Length != b || maskRows.Any(r => r.Length != l))
                    throw new InvalidInputException($"--input '{path}': \"loss_mask\" must have the shape of \"ids\" ({b} x {l})");
                mask = tensor(maskRows.SelectMany(r => r).ToArray(), new[] { b, l });
            }
            return (ids, mask);
        }
    }

    private static T[][] Rows<T>(JsonElement node, string path, string name, Func<JsonElement, string, T> item)
    {
        var rows = new List<T[]>();
        int i = 0;
        foreach (var row in node.EnumerateArray())
        {
            if (row.ValueKind != JsonValueKind.Array)
                throw new InvalidInputException($"--input '{path}': {name}[{i}] must be a list, got {Show(row)}");
            int j = 0;
            rows.Add(row.EnumerateArray().Select(x => item(x, $"{name}[{i}][{j++}]")).ToArray());
            i++;
        }
        return rows.ToArray();
    }

    private static string Show(JsonElement x)
    {
        string raw = x.GetRawText();
        return x.ValueKind switch
        {
            JsonValueKind.String => "a string " + (raw.Length > 40 ? raw[..40] + "…\"" : raw),
            JsonValueKind.Object => "an object",
            JsonValueKind.Array => "a list",
            _ => raw.Length > 40 ? raw[..40] + "…" : raw,
        };
    }
}

/// <summary>The model the commands run: built from the config, weights loaded strictly when given, moved to the device.</summary>
internal static class CliModel
{
    /// <summary>The config file (bare or training layout); any failure to read it is an invalid-file error naming it.</summary>
    public static MblmConfigFile LoadFile(string path) => Errors.Reading("config", path, () => ConfigReader.LoadFile(path));

    /// <summary>The model config of a config file.</summary>
    public static MblmConfig LoadConfig(string path) => LoadFile(path).Model;

    public static MblmModel Load(MblmConfig config, string? weightsPath, Device device)
    {
        var model = new MblmModel(config);
        if (weightsPath is not null) Errors.Reading("weights", weightsPath, () => { ModelWeights.Load(model, weightsPath); return 0; });
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
