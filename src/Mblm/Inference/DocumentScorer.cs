using Mblm.Model;
using Mblm.Training;
using static TorchSharp.torch;

namespace Mblm.Inference;

/// <summary>Score of one document.</summary>
/// <param name="Nats">Σ cross-entropy of every byte of the document (nats).</param>
/// <param name="Bytes">Number of bytes scored (the document's length).</param>
/// <param name="Features">Mean of the last stage's final hidden states over every byte (zeros for an empty document), when asked for.</param>
public sealed record DocumentScore(double Nats, long Bytes, float[]? Features)
{
    /// <summary>Bits per byte = Nats / Bytes · log₂ e (NaN for an empty document).</summary>
    public double BitsPerByte => Bytes > 0 ? Nats / Bytes * Evaluator.Log2E : double.NaN;
}

/// <summary>
/// Scores whole documents of any length with a trained model (eval mode, no gradients): a document longer than the
/// model's context is cut into consecutive windows of the context length, each scored from its first byte (predicted from
/// the start token), so every byte counts once. Windows of several documents are batched together through
/// <see cref="SequenceScorer"/> (right-padded; the model is causal, so padding never changes a real position's output).
/// </summary>
public sealed class DocumentScorer
{
    private readonly MblmModel _model;
    private readonly int _batchSize;

    /// <summary>Creates a scorer; <paramref name="batchSize"/> windows go through the model at a time.</summary>
    public DocumentScorer(MblmModel model, int batchSize = 16)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be positive");
        if (model.Config.NumTokens < 256) throw new ArgumentException($"the model has {model.Config.NumTokens} tokens; scoring bytes needs at least 256", nameof(model));
        _model = model;
        _batchSize = batchSize;
    }

    /// <summary>Window length: the model's maximum context (Π seq_lens).</summary>
    public int WindowLength => (int)Math.Min(_model.Config.MaxContext, int.MaxValue);

    /// <summary>Scores every document; <paramref name="features"/> also returns the mean hidden state per document.</summary>
    public DocumentScore[] Score(IReadOnlyList<byte[]> documents, bool features)
    {
        int dim = _model.Config.HiddenDims[^1];
        var windows = DocumentSource.Windows(documents, WindowLength);
        windows.Sort((a, b) => b.Length.CompareTo(a.Length)); // similar lengths together: less padding
        var samples = windows.Select(w => new ByteSample(Ids(documents[w.Doc], w.Offset, w.Length), Ones(w.Length)));

        var nats = new double[documents.Count];
        var sums = features ? new double[documents.Count][] : null;
        int i = 0;
        foreach (var score in SequenceScorer.Score(_model, samples, _batchSize, features))
        {
            int doc = windows[i++].Doc;
            nats[doc] += score.Nats;
            if (sums is not null)
            {
                var acc = sums[doc] ??= new double[dim];
                for (int j = 0; j < dim; j++) acc[j] += score.FeatureSum![j];
            }
        }
        var result = new DocumentScore[documents.Count];
        for (int d = 0; d < documents.Count; d++)
        {
            float[]? f = null;
            if (sums is not null)
            {
                f = new float[dim];
                int n = documents[d].Length;
                if (n > 0) for (int j = 0; j < dim; j++) f[j] = (float)(sums[d][j] / n);
            }
            result[d] = new DocumentScore(nats[d], documents[d].Length, f);
        }
        return result;
    }

    private static long[] Ids(byte[] source, int offset, int length)
    {
        var ids = new long[length];
        for (int i = 0; i < length; i++) ids[i] = source[offset + i];
        return ids;
    }

    private static float[] Ones(int n)
    {
        var a = new float[n];
        Array.Fill(a, 1f);
        return a;
    }
}
