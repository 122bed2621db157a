using Mblm.Training;
using Mblm.Model;
using static TorchSharp.torch;

namespace Mblm.Inference;

/// <summary>
/// Log-likelihoods of candidate continuations of one prompt: Σ log p(continuation token | prompt, earlier continuation tokens).
/// The cached path decodes the prompt once with <see cref="IncrementalDecoder"/>, repeats its state once per candidate and
/// steps through the candidates together (cost ≈ one prompt + K × longest continuation); the recompute path runs the full
/// forward over every prompt+candidate sequence (the oracle; K × (prompt + continuation)). Both give the same numbers.
/// </summary>
public static class ContinuationScorer
{
    /// <summary>Log-likelihood (nats) of each candidate after <paramref name="prompt"/>.</summary>
    public static double[] LogLikelihoods(MblmModel model, long[] prompt, IReadOnlyList<long[]> candidates, bool cached = true)
    {
        if (candidates.Count == 0) return [];
        if (candidates.Any(c => c.Length == 0)) throw new ArgumentException("candidates must not be empty", nameof(candidates));
        return cached ? Cached(model, prompt, candidates) : Recompute(model, prompt, candidates);
    }

    private static double[] Cached(MblmModel model, long[] prompt, IReadOnlyList<long[]> candidates)
    {
        int k = candidates.Count, longest = candidates.Max(c => c.Length);
        long pad = model.Config.PadTokenId;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var decoder = model.NewDecoder(1);
        decoder.Start(tensor(prompt, new long[] { 1, prompt.Length }));
        decoder.RepeatRows(k);
        var total = zeros(k, dtype: float64, device: model.Device);
        for (int i = 0; i < longest; i++)
        {
            var ids = candidates.Select(c => i < c.Length ? c[i] : pad).ToArray();
            var weight = candidates.Select(c => i < c.Length ? 1.0 : 0.0).ToArray();
            var idsT = tensor(ids).to(model.Device);
            var logp = decoder.NextLogits.to_type(float64).log_softmax(1).gather(1, idsT.view(k, 1)).view(k);
            total = total + logp * tensor(weight).to(model.Device);
            if (i + 1 < longest) decoder.Append(idsT);
        }
        return total.cpu().data<double>().ToArray();
    }

    private static double[] Recompute(MblmModel model, long[] prompt, IReadOnlyList<long[]> candidates)
    {
        var samples = candidates.Select(c =>
        {
            var mask = new float[prompt.Length + c.Length];
            Array.Fill(mask, 1f, prompt.Length, c.Length);
            return new ByteSample([.. prompt, .. c], mask);
        }).ToArray();
        return SequenceScorer.ScoreBatch(model, samples).Select(s => -s.Nats).ToArray();
    }
}
