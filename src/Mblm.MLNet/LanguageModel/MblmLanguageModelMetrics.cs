using Mblm.Inference;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.LanguageModel;

/// <summary>Language-model metrics over a scored data set (see <see cref="MblmCatalog.Evaluate"/>).</summary>
/// <param name="BitsPerByte">Byte-weighted mean bits per byte over all rows.</param>
/// <param name="Perplexity">Per-byte perplexity, 2^BitsPerByte.</param>
/// <param name="RowCount">Rows read.</param>
/// <param name="ByteCount">Bytes scored (the sum of the rows' lengths).</param>
public sealed record MblmLanguageModelMetrics(double BitsPerByte, double Perplexity, long RowCount, long ByteCount)
{
    internal static MblmLanguageModelMetrics Compute(IDataView data, string inputColumnName, string bitsPerByteColumnName)
    {
        ArgumentNullException.ThrowIfNull(data);
        var input = ByteColumn.Check(data.Schema, inputColumnName);
        var bpbColumn = data.Schema.GetColumnOrNull(bitsPerByteColumnName)
            ?? throw SchemaChecks.NotFound("score", bitsPerByteColumnName, "data", "transform the data with the language model first");
        if (bpbColumn.Type != NumberDataViewType.Single)
            throw SchemaChecks.Mismatch("score", bitsPerByteColumnName, "Single", bpbColumn.Type.ToString()!, "data");
        using var cursor = data.GetRowCursor(new[] { input, bpbColumn });
        var read = ByteColumn.Reader(cursor, input);
        var bpbGetter = cursor.GetGetter<float>(bpbColumn);
        // Each row's bits per byte came from the model's one scoring path (SequenceScorer); the totals are the CLI eval's
        // (Evaluator.Result: Σ nats / Σ bytes), so both report the same figure for the same bytes.
        long rows = 0;
        var scores = new List<SequenceScore>();
        float bpb = 0;
        while (cursor.MoveNext())
        {
            rows++;
            int n = read().Length;
            if (n == 0) continue;
            bpbGetter(ref bpb);
            scores.Add(new SequenceScore(bpb * (double)n / Evaluator.Log2E, n, null));
        }
        var total = Evaluator.Result.Of(scores);
        return new MblmLanguageModelMetrics(total.BitsPerByte, Math.Pow(2, total.BitsPerByte), rows, total.Bytes);
    }
}
