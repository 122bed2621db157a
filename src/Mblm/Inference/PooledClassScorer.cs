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
        Run(model, head, rows, batchSize, features: false).Probabilities!;

    /// <summary>The pooled feature vectors (<see cref="MblmModel.PooledWidth"/> per row) of each row, without the head.</summary>
    public static float[][] Features(MblmModel model, IReadOnlyList<long[]> rows, int batchSize) =>
        Run(model, null, rows, batchSize, features: true).Features!;

    /// <summary>Probabilities and pooled features of each row from the same forward passes.</summary>
    public static (float[][] Probabilities, float[][] Features) ProbabilitiesAndFeatures(MblmModel model, PooledClassifierHead head, IReadOnlyList<long[]> rows,
        int batchSize)
    {
        var (p, f) = Run(model, head, rows, batchSize, features: true);
        return (p!, f!);
    }

    private static (float[][]? Probabilities, float[][]? Features) Run(MblmModel model, PooledClassifierHead? head, IReadOnlyList<long[]> rows, int batchSize,
        bool features)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be positive");
        var probabilities = head is null ? null : new float[rows.Count][];
        var pooledRows = features ? new float[rows.Count][] : null;
        if (rows.Count == 0) return (probabilities, pooledRows);
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
                var pooled = model.PooledFeaturesOf(tensor(ids, new long[] { chunk.Length, length }).to(model.Device), lengths);
                var parts = new List<Tensor>();
                if (head is not null) parts.Add(nn.functional.softmax(head.forward(pooled).to_type(float32), 1));
                if (features) parts.Add(pooled.to_type(float32));
                var host = cat(parts, 1).cpu().data<float>().ToArray();     // one host copy per batch
                int width = host.Length / chunk.Length, k = head is null ? 0 : (int)head.Classes;
                for (int b = 0; b < chunk.Length; b++)
                {
                    var row = host.AsSpan(b * width, width);
                    if (probabilities is not null) probabilities[chunk[b]] = row[..k].ToArray();
                    if (pooledRows is not null) pooledRows[chunk[b]] = row[k..].ToArray();
                }
            }
        }
        finally
        {
            if (headTraining) head!.train();
        }
        return (probabilities, pooledRows);
    }
}
