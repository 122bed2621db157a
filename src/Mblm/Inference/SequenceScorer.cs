using Mblm.Model;
using Mblm.Training;
using static TorchSharp.torch;

namespace Mblm.Inference;

/// <summary>Score of one sequence.</summary>
/// <param name="Nats">Σ weight · cross-entropy over the counted positions (nats).</param>
/// <param name="Bytes">Counted positions: loss weight ≠ 0 and target ≠ pad.</param>
/// <param name="FeatureSum">Σ of the last stage's final hidden states over positions with weight ≠ 0, when asked for.</param>
public sealed record SequenceScore(double Nats, long Bytes, double[]? FeatureSum);

/// <summary>
/// The one batch-scoring path (evaluation, document scoring, candidate scoring, the CLI's <c>eval</c> and the ML.NET
/// stages): samples are right-padded into batches (<see cref="Batching.Collate"/>), run through the model in eval mode
/// without gradients, and reduced on the device to per-sample sums; one host copy per batch. Position t of a sample is
/// predicted from positions &lt; t (t = 0 from the start token), so padding never changes a real position's score.
/// </summary>
public static class SequenceScorer
{
    /// <summary>Scores <paramref name="samples"/>, <paramref name="batchSize"/> at a time, in order (lazily).</summary>
    public static IEnumerable<SequenceScore> Score(MblmModel model, IEnumerable<ByteSample> samples, int batchSize, bool features = false)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be positive");
        foreach (var batch in samples.Chunk(batchSize))
            foreach (var score in ScoreBatch(model, batch, features))
                yield return score;
    }

    /// <summary>Scores one batch of samples (any lengths ≥ 1; padded to the longest).</summary>
    public static SequenceScore[] ScoreBatch(MblmModel model, IReadOnlyList<ByteSample> batch, bool features = false)
    {
        if (batch.Count == 0) return [];
        long pad = model.Config.PadTokenId;
        using var evalMode = model.EvalMode();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (ids, weights) = Batching.Collate(batch, pad, model.Device);
        var (hidden, start) = model.HiddenStates(ids);
        var ce = MblmModel.TokenLosses(model.Head(hidden), model.Head(start), ids, pad);
        var weighted = weights.ne(0);
        var parts = new List<Tensor>
        {
            (ce * weights).sum(1, keepdim: true).to_type(float64),
            (weighted & ids.ne(pad)).sum(1, keepdim: true).to_type(float64),
        };
        if (features) parts.Add((hidden.to_type(float64) * weighted.unsqueeze(-1)).sum(1));
        var host = cat(parts, 1).cpu().data<double>().ToArray(); // (B, 2 [+ D])
        int width = (int)(host.Length / batch.Count);
        var result = new SequenceScore[batch.Count];
        for (int b = 0; b < batch.Count; b++)
            result[b] = new SequenceScore(host[b * width], (long)host[b * width + 1], features ? host.AsSpan(b * width + 2, width - 2).ToArray() : null);
        return result;
    }
}
