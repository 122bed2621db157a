using System.Globalization;
using System.Text.Json.Nodes;
using Mblm.Config;

namespace Mblm.Training;

/// <summary>One setting that differs between a checkpoint's run and the run that wants to resume from it.</summary>
/// <param name="Setting">Dotted name, e.g. <c>trainer.learning_rate</c> or <c>model.hidden_dims</c>.</param>
/// <param name="Checkpoint">The checkpoint's value as JSON text (<c>(absent)</c> when it has none).</param>
/// <param name="Current">This run's value as JSON text (<c>(absent)</c> when it has none).</param>
public sealed record FingerprintDifference(string Setting, string Checkpoint, string Current);

/// <summary>
/// What makes a training run the same run: the model config (<see cref="ConfigWriter.ToJson(MblmConfig)"/>) and the trainer options that
/// shape the trajectory (steps, batch, accumulation, learning rate and schedule, optimiser, clipping, seed, shuffle, bf16),
/// and the data's identity when <see cref="TrainerOptions.Data"/> is set.
/// Where the run writes, how often it checkpoints or validates, and validation limits are not part of it.
/// </summary>
internal static class RunFingerprint
{
    public static JsonObject Of(MblmConfig model, TrainerOptions o)
    {
        var trainer = new JsonObject
        {
            ["steps"] = o.Steps,
            ["batch_size"] = o.BatchSize,
            ["gradient_accumulation"] = o.GradientAccumulation,
            ["learning_rate"] = o.LearningRate,
            ["warmup_fraction"] = o.WarmupFraction,
            ["optimizer"] = o.AdamW ? "adamw" : "adam",
            ["beta1"] = o.Beta1,
            ["beta2"] = o.Beta2,
            ["gradient_clipping"] = o.GradientClipping is double c ? JsonValue.Create(c) : null,
            ["seed"] = o.Seed,
            ["shuffle"] = o.Shuffle,
            ["bf16"] = o.Bf16,
        };
        if (o.AdamW) trainer["weight_decay"] = o.WeightDecay; // Adam ignores it
        if (o.WarmupSteps is long warmupSteps) trainer["warmup_steps"] = warmupSteps;
        if (o.Schedule == LearningRateScheduleKind.WarmupStableDecay)
        {
            // The warm-up in steps (a fraction would differ between runs of different lengths) and the decay.
            trainer.Remove("warmup_fraction");
            trainer["warmup_steps"] = o.LearningRates.WarmupSteps;
            trainer["schedule"] = "warmup_stable_decay";
            trainer["decay_fraction"] = o.DecayFraction;
        }
        var fingerprint = new JsonObject { ["model"] = JsonNode.Parse(ConfigWriter.ToJson(model)), ["trainer"] = trainer };
        if (o.Data is { } data)
            fingerprint["data"] = new JsonObject { ["samples"] = data.Samples, ["tokens"] = data.Tokens, ["sha256"] = data.Sha256 };
        return fingerprint;
    }

    /// <summary>
    /// <see cref="Differences(JsonNode?, JsonNode)"/> for a checkpoint of step <paramref name="step"/>, where under
    /// warm-up–stable–decay (in both) another step count is not a difference when the step comes before the decay of both
    /// runs: the longer run then continues the shorter one exactly.
    /// </summary>
    public static List<FingerprintDifference> Differences(JsonNode? checkpoint, JsonNode current, long step)
    {
        var differences = Differences(checkpoint, current);
        if (differences.Count == 0 || !differences.Any(d => d.Setting == "trainer.steps")) return differences;
        if (DecayStartOf(checkpoint) is long a && DecayStartOf(current) is long b && step <= Math.Min(a, b))
            differences.RemoveAll(d => d.Setting == "trainer.steps");
        return differences;
    }

    private static long? DecayStartOf(JsonNode? fingerprint)
    {
        if (fingerprint?["trainer"] is not JsonObject t || t["schedule"]?.GetValueKind() != System.Text.Json.JsonValueKind.String
            || (string?)t["schedule"] != "warmup_stable_decay") return null;
        try
        {
            long steps = (long)t["steps"]!;
            double fraction = (double)t["decay_fraction"]!;
            return steps > 0 && fraction is > 0 and <= 1 ? LearningRateSchedule.DecayStartOf(steps, fraction) : null;
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or OverflowException)
        {
            return null; // a damaged value: no exception to the rule
        }
    }

    /// <summary>Every leaf (arrays count as leaves) that differs, in a stable order.</summary>
    public static List<FingerprintDifference> Differences(JsonNode? checkpoint, JsonNode current)
    {
        var saved = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var now = new SortedDictionary<string, string>(StringComparer.Ordinal);
        Flatten(checkpoint, "", saved);
        Flatten(current, "", now);
        var result = new List<FingerprintDifference>();
        foreach (string key in saved.Keys.Union(now.Keys).OrderBy(k => k, StringComparer.Ordinal))
        {
            string a = saved.GetValueOrDefault(key, "(absent)"), b = now.GetValueOrDefault(key, "(absent)");
            if (a != b) result.Add(new FingerprintDifference(key, a, b));
        }
        return result;
    }

    private static void Flatten(JsonNode? node, string path, IDictionary<string, string> into)
    {
        if (node is JsonObject obj)
        {
            foreach (var (key, value) in obj) Flatten(value, path.Length == 0 ? key : path + "." + key, into);
            return;
        }
        if (node is JsonArray array && array.Any(x => x is JsonObject))
        {
            for (int i = 0; i < array.Count; i++) Flatten(array[i], string.Create(CultureInfo.InvariantCulture, $"{path}[{i}]"), into);
            into[path + ".length"] = array.Count.ToString(CultureInfo.InvariantCulture);
            return;
        }
        into[path] = node?.ToJsonString() ?? "null";
    }
}
