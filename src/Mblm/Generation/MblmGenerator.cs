using System.Runtime.CompilerServices;
using System.Text;
using Mblm.Config;
using Mblm.Model;
using static TorchSharp.torch;

namespace Mblm.Generation;

/// <summary>Why generation of a row ended.</summary>
public enum StopReason
{
    /// <summary><see cref="SamplingOptions.MaxNewTokens"/> reached.</summary>
    MaxTokens,
    /// <summary>A stop sequence was generated.</summary>
    StopSequence,
    /// <summary>The model's maximum context was reached with <see cref="ContextOverflow.Stop"/>.</summary>
    ContextFull,
}

/// <summary>Generated tokens of one row and why they ended.</summary>
public sealed record GenerationResult(long[] Tokens, StopReason StopReason);

/// <summary>
/// Text generation with <see cref="IncrementalDecoder"/> (cached; the default) or by recomputing the full forward for every
/// token (the reference's method; for comparison).
/// </summary>
public sealed class MblmGenerator(MblmModel model)
{
    /// <summary>Generates for every row of <paramref name="prompt"/> (B, L); returns the new tokens per row.</summary>
    public long[][] Generate(Tensor prompt, SamplingOptions options) =>
        GenerateDetailed(prompt, options).Select(r => r.Tokens).ToArray();

    /// <summary>Generates for every row of <paramref name="prompt"/> (B, L), with each row's stop reason.</summary>
    public GenerationResult[] GenerateDetailed(Tensor prompt, SamplingOptions options, CancellationToken cancellationToken = default)
    {
        long batch = prompt.size(0);
        var rows = Enumerable.Range(0, (int)batch).Select(_ => new List<long>()).ToArray();
        var reasons = new StopReason?[batch];
        foreach (var step in Steps(prompt, options, cancellationToken))
        {
            for (int b = 0; b < batch; b++)
            {
                if (reasons[b] is not null) continue;
                if (step.Tokens is null) { reasons[b] = step.Reason; continue; }
                rows[b].Add(step.Tokens[b]);
                if (EndsWithStop(rows[b], options.StopSequences)) reasons[b] = StopReason.StopSequence;
            }
            if (reasons.All(r => r is not null)) break;
        }
        return rows.Select((r, b) => new GenerationResult(r.ToArray(), reasons[b] ?? StopReason.MaxTokens)).ToArray();
    }

    /// <summary>
    /// Generates for prompts of different lengths: rows of equal length are decoded together in lockstep, groups one after
    /// another; results come back in the prompts' order.
    /// </summary>
    public GenerationResult[] Generate(IReadOnlyList<long[]> prompts, SamplingOptions options, CancellationToken cancellationToken = default)
    {
        var results = new GenerationResult[prompts.Count];
        foreach (var group in Enumerable.Range(0, prompts.Count).GroupBy(i => prompts[i].Length))
        {
            var rows = group.ToArray();
            using var batch = tensor(rows.SelectMany(i => prompts[i]).ToArray(), new long[] { rows.Length, group.Key });
            var generated = GenerateDetailed(batch, options, cancellationToken);
            for (int r = 0; r < rows.Length; r++) results[rows[r]] = generated[r];
        }
        return results;
    }

    /// <summary>Streams the new tokens of a single prompt (1-D ids) as they are produced.</summary>
    public async IAsyncEnumerable<long> StreamTokens(long[] prompt, SamplingOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var generated = new List<long>();
        using var promptTensor = tensor(prompt, new long[] { 1, prompt.Length });
        foreach (var step in Steps(promptTensor, options, cancellationToken))
        {
            if (step.Tokens is null) yield break;
            generated.Add(step.Tokens[0]);
            yield return step.Tokens[0];
            if (EndsWithStop(generated, options.StopSequences)) yield break;
            await Task.Yield();
        }
    }

    /// <summary>
    /// Streams generated text: bytes (ids 0–255) go through an incremental UTF-8 decoder that never splits a multi-byte
    /// character; ids ≥ 256 (pad and special tokens) produce no text.
    /// </summary>
    public async IAsyncEnumerable<string> StreamText(string prompt, SamplingOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var decoder = new UTF8Encoding(false, false).GetDecoder();
        var chars = new char[8];
        var ids = Encoding.UTF8.GetBytes(prompt).Select(b => (long)b).ToArray();
        await foreach (long id in StreamTokens(ids, options, cancellationToken))
        {
            if (id is < 0 or > 255) continue;
            int n = decoder.GetChars(new[] { (byte)id }, 0, 1, chars, 0, flush: false);
            if (n > 0) yield return new string(chars, 0, n);
        }
        int rest = decoder.GetChars(Array.Empty<byte>(), 0, 0, chars, 0, flush: true);
        if (rest > 0) yield return new string(chars, 0, rest);
    }

    /// <summary>Greedy or sampled generation by re-running the full forward over the whole sequence for every token.</summary>
    public long[][] GenerateRecompute(Tensor prompt, SamplingOptions options)
    {
        options.Validate();
        using var sampler = new Sampler(options);
        var sequence = prompt.to(int64, model.Device);
        var outputs = new List<Tensor>();
        using var evalMode = model.EvalMode();
        using var noGrad = no_grad();
        for (int i = 0; i < options.MaxNewTokens && sequence.size(1) < model.Config.MaxContext; i++)
        {
            using var scope = NewDisposeScope();
            var logits = sequence.size(1) == 0 ? model.Logits(zeros(prompt.size(0), 1, dtype: int64)).StartLogits : model.forward(sequence)[.., -1, ..];
            var next = sampler.Next(logits).DetachFromDisposeScope();
            outputs.Add(next);
            sequence = cat(new[] { sequence, next.unsqueeze(1) }, 1).DetachFromDisposeScope();
        }
        return Enumerable.Range(0, (int)prompt.size(0)).Select(b => outputs.Select(o => o[b].item<long>()).ToArray()).ToArray();
    }

    private readonly record struct Step(long[]? Tokens, StopReason Reason);

    // Lockstep decoding of all rows; yields each step's tokens, or a null-token step with the reason generation ended.
    private IEnumerable<Step> Steps(Tensor prompt, SamplingOptions options, CancellationToken cancellationToken)
    {
        options.Validate();
        if (prompt.dim() != 2) throw new ArgumentException("prompt must have shape (batch, length)", nameof(prompt));
        var config = model.Config;
        long max = config.Blocks[0].PosEmbType == PosEmbType.Fixed ? config.MaxContext : long.MaxValue;
        if (prompt.size(1) > max) throw new ArgumentException($"the prompt has {prompt.size(1)} tokens; the model's maximum context is {max}", nameof(prompt));
        using var sampler = new Sampler(options);
        Tensor history;
        using (NewDisposeScope()) history = prompt.to(int64, CPU).clone().MoveToOuterDisposeScope(); // owned here: replaced as it grows
        try
        {
            using var decoder = new IncrementalDecoder(model, prompt.size(0));
            decoder.Start(prompt);
            for (int i = 0; i < options.MaxNewTokens; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (decoder.Length >= max)
                {
                    // The sequence fills the model's context: one more token would not fit.
                    if (options.Overflow == ContextOverflow.Stop) { yield return new Step(null, StopReason.ContextFull); yield break; }
                    // Sliding window: keep the newest whole top-level patches, about half the context, and re-prefill.
                    long unit = config.PatchSize;
                    long keep = Math.Max(unit, max / 2 / unit * unit);
                    using (var window = history[.., (int)(history.size(1) - keep)..]) decoder.Start(window);
                }
                long[] tokens;
                using (var scope = NewDisposeScope())
                {
                    var next = sampler.Next(decoder.NextLogits);
                    tokens = next.cpu().data<long>().ToArray();
                    var longer = cat(new[] { history, next.cpu().unsqueeze(1) }, 1).DetachFromDisposeScope();
                    history.Dispose();
                    history = longer;
                }
                yield return new Step(tokens, StopReason.MaxTokens);
                if (i + 1 < options.MaxNewTokens)
                    using (var t = tensor(tokens)) decoder.Append(t);
            }
        }
        finally
        {
            history.Dispose();
        }
    }

    private static bool EndsWithStop(List<long> tokens, IReadOnlyList<long[]> stops)
    {
        foreach (var stop in stops)
        {
            if (tokens.Count < stop.Length) continue;
            bool match = true;
            for (int i = 0; i < stop.Length && match; i++) match = tokens[tokens.Count - stop.Length + i] == stop[i];
            if (match) return true;
        }
        return false;
    }
}
