using static TorchSharp.torch;

namespace Mblm.Generation;

/// <summary>What to do when a sequence reaches the model's maximum context (Π seq_lens with a fixed stage-0 embedding).</summary>
public enum ContextOverflow
{
    /// <summary>Stop generating; the result says why (<see cref="GenerationResult.StopReason"/>).</summary>
    Stop,
    /// <summary>Keep the most recent half of the context (whole top-level patches) and continue from there.</summary>
    SlidingWindow,
}

/// <summary>Sampling settings. Greedy when <see cref="TopK"/> is 1 or <see cref="Temperature"/> is 0.</summary>
public sealed record SamplingOptions
{
    /// <summary>Tokens to generate at most.</summary>
    public int MaxNewTokens { get; init; } = 256;
    /// <summary>Smallest non-zero <see cref="Temperature"/>: below it, logits divided by it overflow float32 (and sampling is greedy in all but name).</summary>
    public const double MinTemperature = 1e-4;
    /// <summary>Largest <see cref="Temperature"/> (above it sampling is uniform in all but name).</summary>
    public const double MaxTemperature = 1e4;

    /// <summary>Softmax temperature: 0 (greedy) or in [<see cref="MinTemperature"/>, <see cref="MaxTemperature"/>].</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep only the k most likely tokens (null = all).</summary>
    public int? TopK { get; init; }
    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p (null = all).</summary>
    public double? TopP { get; init; }
    /// <summary>Seed of the sampling generator (null = nondeterministic).</summary>
    public long? Seed { get; init; }
    /// <summary>Stop after any of these token sequences (they are included in the output). Pad and special ids never stop generation unless listed.</summary>
    public IReadOnlyList<long[]> StopSequences { get; init; } = [];
    /// <summary>Policy at the maximum context.</summary>
    public ContextOverflow Overflow { get; init; } = ContextOverflow.Stop;

    /// <summary>Checks the options; throws <see cref="ArgumentException"/> naming the option.</summary>
    public SamplingOptions Validate()
    {
        if (MaxNewTokens < 0) throw new ArgumentException($"MaxNewTokens must be >= 0, got {MaxNewTokens}", nameof(MaxNewTokens));
        if (!IsValidTemperature(Temperature))
            throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"Temperature must be 0 (greedy) or in [{MinTemperature}, {MaxTemperature}], got {Temperature}"), nameof(Temperature));
        if (TopK is <= 0) throw new ArgumentException($"TopK must be positive, got {TopK}", nameof(TopK));
        if (TopP is double p && !(p > 0 && p <= 1)) throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"TopP must be in (0, 1], got {p}"), nameof(TopP));
        if (StopSequences.Any(s => s.Length == 0)) throw new ArgumentException("stop sequences must not be empty", nameof(StopSequences));
        return this;
    }

    /// <summary>The rule <see cref="Validate"/> applies to <see cref="Temperature"/>: 0, or a finite number in [<see cref="MinTemperature"/>, <see cref="MaxTemperature"/>].</summary>
    public static bool IsValidTemperature(double temperature) => temperature == 0 || temperature is >= MinTemperature and <= MaxTemperature;

    internal bool Greedy => TopK == 1 || Temperature == 0;
}

/// <summary>Picks next tokens from logits (B, V) by greedy, temperature, top-k and top-p sampling.</summary>
public sealed class Sampler(SamplingOptions options) : IDisposable
{
    private readonly TorchSharp.torch.Generator? _generator = options.Seed is long seed ? new TorchSharp.torch.Generator((ulong)seed) : null;

    /// <summary>Next token per row (B) int64.</summary>
    public Tensor Next(Tensor logits)
    {
        using var scope = NewDisposeScope();
        if (options.Greedy) return logits.argmax(-1).MoveToOuterDisposeScope();
        var scaled = logits.to_type(float32) / options.Temperature;
        if (options.TopK is int k && k < scaled.size(-1))
        {
            var kth = scaled.topk(k).values[.., ^1..];
            scaled = scaled.masked_fill(scaled < kth, double.NegativeInfinity);
        }
        if (options.TopP is double p && p < 1)
        {
            var (sorted, order) = scaled.sort(-1, descending: true);
            var sortedProbabilities = sorted.softmax(-1);
            var drop = (sortedProbabilities.cumsum(-1) - sortedProbabilities) >= p; // keep tokens until the mass before them reaches p
            var dropOriginal = zeros_like(drop).scatter(-1, order, drop);
            scaled = scaled.masked_fill(dropOriginal, double.NegativeInfinity);
        }
        // A seeded generator is a CPU generator: sample on the CPU (one (B, V) row per token), then return to the device.
        var probabilities = _generator is null ? scaled.softmax(-1) : scaled.softmax(-1).cpu();
        return multinomial(probabilities, 1, generator: _generator).squeeze(-1).to(logits.device).MoveToOuterDisposeScope();
    }

    /// <summary>Frees the seeded generator.</summary>
    public void Dispose() => _generator?.Dispose();
}
