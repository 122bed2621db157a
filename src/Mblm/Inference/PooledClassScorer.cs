using Mblm.Model;
using static TorchSharp.torch;

namespace Mblm.Inference;

/// <summary>
/// Class probabilities from a model and a <see cref="PooledClassifierHead"/>: one forward per batch, in eval mode without
/// gradients. Rows are batched by length (shortest first, so a batch pads little) and returned in input order; one host
/// copy per batch. A row's probabilities do not depend on the other rows of its batch.
/// </summary>
public static class PooledClassScorer
{
    /// <summary>Softmax probabilities (K per row) for each row of token ids (each 1 ≤ length ≤ the model's context).</summary>
    public static float[][] Probabilities(MblmModel model, PooledClassifierHead head, IReadOnlyList<long[]> rows, int batchSize) =>
        Run(model, head, rows, batchSize, features: false);

    /// <summary>The pooled feature vectors (<see cref="MblmModel.PooledWidth"/> per row) of each row, without the head.</summary>
    public static float[][] Features(MblmModel model, IReadOnlyList<long[]> rows, int batchSize) =>
        Run(model, null, rows, batchSize, features: true);

    private static float[][] Run(MblmModel model, PooledClassifierHead? head, IReadOnlyList<long[]> rows, int batchSize, bool features)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be positive");
        var result = new float[rows.Count][];
        if (rows.Count == 0) return result;
        var order = Enumerable.Range(0, rows.Count).OrderBy(i => rows[i].Length).ToArray();
        long pad = model.Config.PadTokenId;
        using var evalModel = model.EvalMode();
        bool headTraining = head?.training ?? false;
        head?.eval();
        try
        {
            using var noGrad = no_grad();
            foreach (var chunk in order.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                int length = chunk.Max(i => rows[i].Length);
                if (chunk.Any(i => rows[i].Length == 0)) throw new ArgumentException("a row to classify has no tokens", nameof(rows));
                var ids = new long[chunk.Length * length];
                Array.Fill(ids, pad);
                var lengths = new long[chunk.Length];
                for (int b = 0; b < chunk.Length; b++)
                {
                    Array.Copy(rows[chunk[b]], 0, ids, b * length, rows[chunk[b]].Length);
                    lengths[b] = rows[chunk[b]].Length;
                }
                var pooled = model.PooledFeatures(tensor(ids, new long[] { chunk.Length, length }).to(model.Device), tensor(lengths).to(model.Device));
                var output = features ? pooled.to_type(float32) : nn.functional.softmax(head!.forward(pooled).to_type(float32), 1);
                var host = output.cpu().data<float>().ToArray();
                int width = host.Length / chunk.Length;
                for (int b = 0; b < chunk.Length; b++) result[chunk[b]] = host.AsSpan(b * width, width).ToArray();
            }
        }
        finally
        {
            if (headTraining) head!.train();
        }
        return result;
    }
}
