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
    public static async Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string configPath = args.Required("config"), weightsPath = args.Required("weights");
        string? promptText = args.Optional("prompt"), promptFile = args.Optional("prompt-file"), promptIds = args.Optional("prompt-ids");
        string? idsOut = args.Optional("ids-out"), stopText = args.Optional("stop"), stopIds = args.Optional("stop-ids");
        long maxBytes = args.Long("max-bytes") ?? throw new UsageException("--max-bytes is required");
        var options = new SamplingOptions
        {
            MaxNewTokens = checked((int)maxBytes),
            Temperature = args.Double("temperature") ?? 1.0,
            TopK = args.Long("top-k") is long k ? checked((int)k) : null,
            TopP = args.Double("top-p"),
            Seed = args.Long("seed"),
            Overflow = args.Switch("sliding-window") ? ContextOverflow.SlidingWindow : ContextOverflow.Stop,
        };
        var device = DeviceOption.Parse(args.Optional("device"));
        args.RejectUnknown("generate");
        if (new[] { promptText, promptFile, promptIds }.Count(p => p is not null) > 1)
            throw new UsageException("give one of --prompt, --prompt-file, --prompt-ids");

        var config = ConfigReader.LoadModel(configPath);
        long[] prompt = promptIds is not null ? ReadIds(promptIds, config)
            : Encoding.UTF8.GetBytes(promptFile is not null ? File.ReadAllText(promptFile) : promptText ?? "").Select(b => (long)b).ToArray();
        var stops = new List<long[]>();
        if (stopText is not null) stops.Add(Encoding.UTF8.GetBytes(stopText).Select(b => (long)b).ToArray());
        if (stopIds is not null) stops.Add(stopIds.Split(',').Select(s => long.Parse(s.Trim())).ToArray());
        options = options with { StopSequences = stops };
        try { options.Validate(); } catch (ArgumentException e) { throw new UsageException(e.Message); }

        var model = CliModel.Load(config, weightsPath, device);
        stderr.WriteLine($"mblm generate: prompt {prompt.Length} tokens, up to {maxBytes} new, device {device.type}");

        var generated = new List<long>();
        var decoder = new UTF8Encoding(false, false).GetDecoder();
        var chars = new char[8];
        var generator = new MblmGenerator(model);
        await foreach (long id in generator.StreamTokens(prompt, options))
        {
            generated.Add(id);
            if (id is < 0 or > 255) continue;
            int n = decoder.GetChars(new[] { (byte)id }, 0, 1, chars, 0, flush: false);
            if (n > 0) { stdout.Write(chars, 0, n); stdout.Flush(); }
        }
        int rest = decoder.GetChars(Array.Empty<byte>(), 0, 0, chars, 0, flush: true);
        if (rest > 0) stdout.Write(chars, 0, rest);
        stdout.WriteLine();
        if (idsOut is not null) File.WriteAllText(idsOut, JsonSerializer.Serialize(generated));
        stderr.WriteLine($"mblm generate: {generated.Count} tokens");
        return 0;
    }

    private static long[] ReadIds(string path, MblmConfig config)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--prompt-ids file '{path}' does not exist", path);
        long[] ids;
        try { ids = JsonSerializer.Deserialize<long[]>(File.ReadAllText(path)) ?? []; }
        catch (JsonException e) { throw new InvalidDataException($"--prompt-ids '{path}' must be a JSON array of integers: {e.Message}"); }
        var bad = ids.Where(i => i < 0 || i >= config.NumTokens).Take(1).ToList();
        if (bad.Count > 0) throw new InvalidDataException($"--prompt-ids '{path}': id {bad[0]} is outside [0, num_tokens) = [0, {config.NumTokens})");
        return ids;
    }
}
