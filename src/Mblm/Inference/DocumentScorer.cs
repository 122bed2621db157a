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
/// the start token), so every byte counts once. Windows of several documents are batched together (right-padded; the model
/// is causal, so padding never changes a real position's output). One host copy per batch.
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
        int window = WindowLength, dim = _model.Config.HiddenDims[^1];
        var windows = DocumentSource.Windows(documents, window);
        // Similar lengths together: less padding.
        windows.Sort((a, b) => b.Length.CompareTo(a.Length));

        var nats = new double[documents.Count];
        var sums = features ? new double[documents.Count, dim] : null;
        bool wasTraining = _model.training;
        _model.eval();
        try
        {
            using var noGrad = no_grad();
            foreach (var batch in windows.Chunk(_batchSize))
            {
                using var scope = NewDisposeScope();
                int length = batch[0].Length;
                var ids = new long[batch.Length * length];
                Array.Fill(ids, _model.Config.PadTokenId);
                var mask = new float[batch.Length * length];
                for (int b = 0; b < batch.Length; b++)
                {
                    var (doc, off, len) = batch[b];
                    var src = documents[doc];
                    for (int i = 0; i < len; i++) { ids[b * length + i] = src[off + i]; mask[b * length + i] = 1; }
                }
                var idsT = tensor(ids, new long[] { batch.Length, length }).to(_model.Device);
                var (hidden, startHidden) = _model.HiddenStates(idsT);
                var ce = MblmModel.TokenLosses(_model.Head.forward(hidden), _model.Head.forward(startHidden), idsT, _model.Config.PadTokenId);
                var parts = new List<Tensor> { ce.sum(1, keepdim: true).to_type(float32) };
                if (features)
                {
                    var m = tensor(mask, new long[] { batch.Length, length, 1 }).to(_model.Device);
                    parts.Add((hidden.to_type(float32) * m).sum(1));
                }
                var host = cat(parts, 1).cpu().data<float>().ToArray(); // (B, 1 [+ D])
                int width = features ? 1 + dim : 1;
                for (int b = 0; b < batch.Length; b++)
                {
                    int doc = batch[b].Doc;
                    nats[doc] += host[b * width];
                    if (sums is not null)
                        for (int j = 0; j < dim; j++) sums[doc, j] += host[b * width + 1 + j];
                }
            }
        }
        finally
        {
            _model.train(wasTraining);
        }
        var result = new DocumentScore[documents.Count];
        for (int d = 0; d < documents.Count; d++)
        {
            float[]? f = null;
            if (sums is not null)
            {
                f = new float[dim];
                int n = documents[d].Length;
                if (n > 0) for (int j = 0; j < dim; j++) f[j] = (float)(sums[d, j] / n);
            }
            result[d] = new DocumentScore(nats[d], documents[d].Length, f);
        }
        return result;
    }
}
