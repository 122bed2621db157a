using System.Globalization;
using System.Text;
using System.Text.Json;
using Mblm.Config;
using Mblm.Generation;
using Mblm.Model;
using Mblm.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Cli;

/// <summary>
/// <c>mblm generate</c>: cached generation, streamed to standard output as UTF-8 text (multi-byte characters are never
/// split; ids ≥ 256 print nothing). <c>--prompt-ids</c>/<c>--ids-out</c> work with raw token ids of any vocabulary.
/// </summary>
internal static class GenerateCommand
{
    // SamplingOptions' parameter names → the flags that set them.
    private static readonly Dictionary<string, string> FlagOf = new()
    {
        [nameof(SamplingOptions.MaxNewTokens)] = "max-bytes", [nameof(SamplingOptions.Temperature)] = "temperature",
        [nameof(SamplingOptions.TopK)] = "top-k", [nameof(SamplingOptions.TopP)] = "top-p", [nameof(SamplingOptions.StopSequences)] = "stop/--stop-ids",
    };

    public static async Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        var (configPath, weights) = CliPaths.ModelFiles(args);
        string weightsPath = weights!;
        string? promptText = args.Optional("prompt"), promptFile = args.Optional("prompt-file"), promptIds = args.Optional("prompt-ids");
        string? idsOut = args.Optional("ids-out"), stopText = args.Optional("stop"), stopIds = args.Optional("stop-ids");
        int maxBytes = args.Int("max-bytes", 0) ?? throw new UsageException("--max-bytes is required");
        string? temperatureText = args.Optional("temperature");
        double temperature = 1.0;
        // The library's rule (SamplingOptions.IsValidTemperature), checked here to name the flag and the range.
        if (temperatureText is not null && !(double.TryParse(temperatureText, NumberStyles.Float, CultureInfo.InvariantCulture, out temperature)
                                              && SamplingOptions.IsValidTemperature(temperature)))
            throw new UsageException(string.Create(CultureInfo.InvariantCulture,
                $"--temperature must be 0 (greedy) or a number in [{SamplingOptions.MinTemperature}, {SamplingOptions.MaxTemperature}], got '{temperatureText}'"));
        var options = new SamplingOptions
        {
            MaxNewTokens = maxBytes,
            Temperature = temperature,
            TopK = args.Int("top-k", 1),
            TopP = args.Double("top-p", 0, 1, minExclusive: true),
            Seed = args.Long("seed"),
            Overflow = args.Switch("sliding-window") ? ContextOverflow.SlidingWindow : ContextOverflow.Stop,
        };
        var device = DeviceOption.Parse(args.Optional("device"));
        args.RejectUnknown("generate");
        if (new[] { promptText, promptFile, promptIds }.Count(p => p is not null) > 1)
            throw new UsageException("give one of --prompt, --prompt-file, --prompt-ids");
        if (stopText is { Length: 0 }) throw new UsageException("--stop must not be empty");
        long[]? stopIdList = stopIds is null ? null : ParseIdList(stopIds);
        if (promptFile is not null) CliPaths.InputFile("prompt-file", promptFile);
        if (promptIds is not null) CliPaths.InputFile("prompt-ids", promptIds);
        if (idsOut is not null) idsOut = CliPaths.OutputFile("ids-out", idsOut);

        var config = CliModel.LoadConfig(configPath);
        // A byte model's prompt is bytes: a prompt file is read as raw bytes (no text decoding, BOMs and invalid UTF-8 kept).
        long[] prompt = promptIds is not null ? ReadIds(promptIds, config)
            : (promptFile is not null ? File.ReadAllBytes(promptFile) : Encoding.UTF8.GetBytes(promptText ?? "")).Select(b => (long)b).ToArray();
        if (promptIds is null && prompt.FirstOrDefault(id => id >= config.NumTokens, -1) is var big and >= 0)
        {
            string what = $"byte {big} of the prompt is outside the vocabulary [0, {config.NumTokens})";
            throw promptFile is not null ? new InvalidInputException($"--prompt-file '{promptFile}': {what}") : new UsageException($"--prompt: {what}");
        }
        var stops = new List<long[]>();
        if (stopText is not null) stops.Add(Encoding.UTF8.GetBytes(stopText).Select(b => (long)b).ToArray());
        if (stopIdList is not null)
        {
            if (stopIdList.FirstOrDefault(id => id >= config.NumTokens, -1) is var bad and >= 0)
                throw new UsageException($"--stop-ids: id {bad} is outside [0, num_tokens) = [0, {config.NumTokens})");
            stops.Add(stopIdList);
        }
        options = options with { StopSequences = stops };
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException($"--{(e.ParamName is { } n && FlagOf.TryGetValue(n, out var f) ? f : "sampling")}: {e.Message}"); }

        var model = CliModel.Load(config, weightsPath, device);
        stderr.WriteLine($"mblm generate: prompt {prompt.Length} tokens, up to {maxBytes} new, device {device.type}");

        var generated = new List<long>();
        var decoder = new UTF8Encoding(false, false).GetDecoder();
        var chars = new char[8];
        var generator = new MblmGenerator(model);
        bool interrupted = false;
        using (Interrupt.Listen())
        {
            try
            {
                await foreach (long id in generator.StreamTokens(prompt, options, Interrupt.Token))
                {
                    generated.Add(id);
                    if (id is < 0 or > 255) continue;
                    int n = decoder.GetChars(new[] { (byte)id }, 0, 1, chars, 0, flush: false);
                    if (n > 0) { stdout.Write(chars, 0, n); stdout.Flush(); }
                }
            }
            catch (OperationCanceledException) when (Interrupt.Token.IsCancellationRequested)
            {
                interrupted = true; // Ctrl+C: what was generated so far is kept and written
            }
        }
        int rest = decoder.GetChars(Array.Empty<byte>(), 0, 0, chars, 0, flush: true);
        if (rest > 0) stdout.Write(chars, 0, rest);
        stdout.WriteLine();
        if (idsOut is not null) CliPaths.WriteAtomically(idsOut, JsonSerializer.SerializeToUtf8Bytes(generated));
        if (interrupted)
        {
            stderr.WriteLine($"mblm generate: interrupted after {generated.Count} tokens");
            return ExitCodes.Interrupted;
        }
        stderr.WriteLine($"mblm generate: {generated.Count} tokens");
        return 0;
    }

    // "a,b,c": non-negative integer ids; anything else is a usage error naming the flag.
    private static long[] ParseIdList(string text)
    {
        var parts = text.Split(',');
        var ids = new long[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            string p = parts[i].Trim();
            if (!long.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]))
                throw new UsageException($"--stop-ids must be a comma-separated list of non-negative integer token ids (e.g. 10,256), got '{text}' ('{p}' is not one)");
        }
        return ids;
    }

    private static long[] ReadIds(string path, MblmConfig config)
    {
        long[] ids;
        try { ids = JsonSerializer.Deserialize<long[]>(File.ReadAllBytes(path)) ?? []; }
        catch (JsonException e) { throw new InvalidInputException($"--prompt-ids '{path}' must be a JSON array of integers: {e.Message}", e); }
        var bad = ids.Where(i => i < 0 || i >= config.NumTokens).Take(1).ToList();
        if (bad.Count > 0) throw new InvalidInputException($"--prompt-ids '{path}': id {bad[0]} is outside [0, num_tokens) = [0, {config.NumTokens})");
        return ids;
    }
}
