using Mblm.Inference;
using Mblm.Model;

namespace Mblm.Training;

/// <summary>
/// Byte-weighted evaluation: Σ weight · cross-entropy over the scored bytes / their count, in nats and bits per byte,
/// through <see cref="SequenceScorer"/> (the path the ML.NET stages and document scoring use too).
/// </summary>
public static class Evaluator
{
    /// <summary>log₂ e: nats → bits.</summary>
    public const double Log2E = 1.4426950408889634;

    /// <summary>Result of an evaluation.</summary>
    /// <param name="Loss">Mean cross-entropy per scored byte (nats); NaN when no byte was scored.</param>
    /// <param name="Bytes">Number of scored bytes (loss-mask weight non-zero, target not pad).</param>
    public sealed record Result(double Loss, long Bytes)
    {
        /// <summary>Bits per byte = loss · log₂ e (NaN when no byte was scored).</summary>
        public double BitsPerByte => Loss * Log2E;

        /// <summary>The totals of <paramref name="scores"/>.</summary>
        public static Result Of(IEnumerable<SequenceScore> scores)
        {
            double nats = 0;
            long bytes = 0;
            foreach (var s in scores) { nats += s.Nats; bytes += s.Bytes; }
            return new Result(bytes > 0 ? nats / bytes : double.NaN, bytes);
        }
    }

    /// <summary>Evaluates the samples of <paramref name="source"/> (epoch 0), <paramref name="batchSize"/> at a time.</summary>
    public static Result Evaluate(MblmModel model, ISampleSource source, int batchSize, long? maxSamples = null)
    {
        long count = Math.Min(source.Count(0), maxSamples ?? long.MaxValue);
        var samples = LongRange(count).Select(i => source.Get(0, i));
        return Result.Of(SequenceScorer.Score(model, samples, batchSize));
    }

    /// <summary>
    /// Evaluates a whole file: consecutive windows of <paramref name="windowLength"/> bytes (the last one shorter), each
    /// scored from its first byte (predicted from the start token); every byte of the file counts once.
    /// </summary>
    public static Result EvaluateFile(MblmModel model, ByteFileDataset file, int windowLength, int batchSize)
    {
        var windows = file.Chunks(windowLength).Select(b => new ByteSample(b.Select(x => (long)x).ToArray(), Enumerable.Repeat(1f, b.Length).ToArray()));
        return Result.Of(SequenceScorer.Score(model, windows, batchSize));
    }

    private static IEnumerable<long> LongRange(long count)
    {
        for (long i = 0; i < count; i++) yield return i;
    }
}
