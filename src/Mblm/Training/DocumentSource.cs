namespace Mblm.Training;

/// <summary>
/// In-memory documents as training samples: each document is cut into consecutive windows of at most
/// <see cref="WindowLength"/> bytes (the last one shorter), with the loss on every byte. Every epoch sees the same windows
/// (the trainer's shuffle changes their order). Used by the ML.NET stages, where each row is one document.
/// </summary>
public sealed class DocumentSource : ISampleSource
{
    private readonly List<(byte[] Doc, int Offset, int Length)> _windows = new();

    /// <summary>Cuts <paramref name="documents"/> into windows of at most <paramref name="windowLength"/> bytes; empty documents give none.</summary>
    public DocumentSource(IReadOnlyList<byte[]> documents, int windowLength)
    {
        if (windowLength <= 0) throw new ArgumentOutOfRangeException(nameof(windowLength), windowLength, "must be positive");
        WindowLength = windowLength;
        foreach (var doc in documents)
            for (int off = 0; off < doc.Length; off += windowLength)
                _windows.Add((doc, off, Math.Min(windowLength, doc.Length - off)));
        Bytes = documents.Sum(d => (long)d.Length);
    }

    /// <summary>Longest window.</summary>
    public int WindowLength { get; }

    /// <summary>Total bytes of all documents.</summary>
    public long Bytes { get; }

    /// <inheritdoc/>
    public long Count(int epoch) => _windows.Count;

    /// <inheritdoc/>
    public ByteSample Get(int epoch, long index)
    {
        var (doc, off, len) = _windows[checked((int)index)];
        var ids = new long[len];
        for (int i = 0; i < len; i++) ids[i] = doc[off + i];
        var mask = new float[len];
        Array.Fill(mask, 1f);
        return new ByteSample(ids, mask);
    }
}
