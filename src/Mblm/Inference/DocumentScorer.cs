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
/// <remarks>
/// Windows are sorted by length, longest first, and cut into forwards of at most <c>batchSize</c> windows and at most
/// <see cref="TokensPerForward"/> padded positions. Each forward is padded only to its own longest window. Many documents
/// scored together therefore pack short windows into large forwards, and long windows into small ones. Without this
/// packing, the forwards were cut by count alone, which cost twice over. First, a forward of 64 windows was padded to the
/// longest of 64, and a forward of 16 only to the longest of 16. Second, a forward of 64 full windows (32K positions)
/// is slower per position than one of 16: its activations no longer stay in cache. On the same 256 rows (mean 494
/// bytes, 64 per call), packing gave 129 rows/s against 105 for count-only forwards (`benchmarks … mlnet
/// --scoring-only`).
/// </remarks>
public sealed class DocumentScorer
{
    private readonly MblmModel _model;
    private readonly int _batchSize;

    /// <summary>
    /// Creates a scorer. At most <paramref name="batchSize"/> windows, and at most <paramref name="tokensPerForward"/>
    /// padded positions, go through the model at a time. The default position cap is 16 full windows, and a single
    /// window always fits.
    /// </summary>
    public DocumentScorer(MblmModel model, int batchSize = 16, long? tokensPerForward = null)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be positive");
        if (tokensPerForward is <= 0) throw new ArgumentOutOfRangeException(nameof(tokensPerForward), tokensPerForward, "must be positive");
        if (model.Config.NumTokens < 256) throw new ArgumentException($"the model has {model.Config.NumTokens} tokens; scoring bytes needs at least 256", nameof(model));
        _model = model;
        _batchSize = batchSize;
        TokensPerForward = Math.Max(tokensPerForward ?? 16L * WindowLength, WindowLength);
    }

    /// <summary>The most padded positions (windows × their longest length) one forward holds.</summary>
    public long TokensPerForward { get; }

    /// <summary>Window length: the model's maximum context (Π seq_lens).</summary>
    public int WindowLength => (int)Math.Min(_model.Config.MaxContext, int.MaxValue);

    /// <summary>Scores every document; <paramref name="features"/> also returns the mean hidden state per document.</summary>
    public DocumentScore[] Score(IReadOnlyList<byte[]> documents, bool features)
    {
        int dim = _model.Config.HiddenDims[^1];
        var windows = DocumentSource.Windows(documents, WindowLength);
        windows.Sort((a, b) => b.Length.CompareTo(a.Length)); // similar lengths together: less padding
        var nats = new double[documents.Count];
        var sums = features ? new double[documents.Count][] : null;
        int i = 0;
        foreach (var score in Forwards(windows).SelectMany(chunk => SequenceScorer.ScoreBatch(_model,
                     chunk.Select(w => new ByteSample(Ids(documents[w.Doc], w.Offset, w.Length), Ones(w.Length))).ToList(), features)))
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

    /// <summary>Consecutive runs of the (longest-first) windows: at most the batch size, at most the position budget.</summary>
    private IEnumerable<List<(int Doc, int Offset, int Length)>> Forwards(List<(int Doc, int Offset, int Length)> sorted)
    {
        var chunk = new List<(int Doc, int Offset, int Length)>();
        foreach (var w in sorted)
        {
            // Sorted longest first: the chunk's first window is its longest, so it sets the padded length.
            if (chunk.Count > 0 && (chunk.Count == _batchSize || (long)(chunk.Count + 1) * chunk[0].Length > TokensPerForward))
            {
                yield return chunk;
                chunk = [];
            }
            chunk.Add(w);
        }
        if (chunk.Count > 0) yield return chunk;
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
