using Mblm.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Training;

/// <summary>Byte-weighted evaluation: Σ cross-entropy over all scored bytes / their count, in nats and bits per byte.</summary>
public static class Evaluator
{
    /// <summary>log₂ e: nats → bits.</summary>
    public const double Log2E = 1.4426950408889634;

    /// <summary>Result of an evaluation.</summary>
    /// <param name="Loss">Mean cross-entropy per scored byte (nats).</param>
    /// <param name="Bytes">Number of scored bytes (loss-mask weight non-zero, target not pad).</param>
    public sealed record Result(double Loss, long Bytes)
    {
        /// <summary>Bits per byte = loss · log₂ e.</summary>
        public double BitsPerByte => Loss * Log2E;
    }

    /// <summary>Evaluates the samples of <paramref name="source"/> (epoch 0), <paramref name="batchSize"/> at a time.</summary>
    public static Result Evaluate(MblmModel model, ISampleSource source, int batchSize, long? maxSamples = null)
    {
        long count = Math.Min(source.Count(0), maxSamples ?? long.MaxValue);
        var batches = new List<ByteSample[]>();
        for (long i = 0; i < count; i += batchSize)
            batches.Add(Enumerable.Range(0, (int)Math.Min(batchSize, count - i)).Select(j => source.Get(0, i + j)).ToArray());
        return Evaluate(model, batches);
    }

    /// <summary>
    /// Evaluates a whole file: consecutive windows of the model's context (the last one shorter), each scored from its
    /// first byte (predicted from the start token); every byte of the file counts once.
    /// </summary>
    public static Result EvaluateFile(MblmModel model, ByteFileDataset file, int windowLength, int batchSize)
    {
        var windows = file.Chunks(windowLength).Select(b => new ByteSample(b.Select(x => (long)x).ToArray(), Enumerable.Repeat(1f, b.Length).ToArray()));
        return Evaluate(model, windows.Chunk(batchSize));
    }

    private static Result Evaluate(MblmModel model, IEnumerable<ByteSample[]> batches)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            // Totals stay on the model's device; one host copy at the end.
            using var totals = zeros(2, dtype: float64, device: model.Device); // [Σ weighted ce, count]
            foreach (var batch in batches)
            {
                using var scope = NewDisposeScope();
                var (ids, mask) = Batching.Collate(batch, model.Config.PadTokenId, model.Device);
                var (logits, start) = model.Logits(ids);
                var weighted = MblmModel.TokenLosses(logits, start, ids, model.Config.PadTokenId) * mask;
                totals.add_(stack(new[] { weighted.sum(), weighted.ne(0).sum() }).to_type(float64));
            }
            var host = totals.cpu().data<double>().ToArray();
            double sum = host[0], n = host[1];
            return new Result(n > 0 ? sum / n : 0, (long)n);
        }
        finally
        {
            model.train(wasTraining);
        }
    }
}

/// <summary>Turns samples into padded batch tensors.</summary>
public static class Batching
{
    /// <summary>Right-pads samples to the longest with <paramref name="padId"/> (mask 0 there): ids (B, L) int64, mask (B, L) float32.</summary>
    public static (Tensor Ids, Tensor Mask) Collate(IReadOnlyList<ByteSample> samples, long padId, Device device)
    {
        int length = samples.Max(s => s.Ids.Length);
        var ids = new long[samples.Count * length];
        var mask = new float[samples.Count * length];
        Array.Fill(ids, padId);
        for (int b = 0; b < samples.Count; b++)
        {
            if (samples[b].LossMask.Length != samples[b].Ids.Length)
                throw new ArgumentException($"sample {b}: loss mask length {samples[b].LossMask.Length} differs from its {samples[b].Ids.Length} ids");
            Array.Copy(samples[b].Ids, 0, ids, b * length, samples[b].Ids.Length);
            Array.Copy(samples[b].LossMask, 0, mask, b * length, samples[b].LossMask.Length);
        }
        return (tensor(ids, new long[] { samples.Count, length }).to(device), tensor(mask, new long[] { samples.Count, length }).to(device));
    }
}
