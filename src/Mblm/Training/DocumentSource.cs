namespace Mblm.Training;

/// <summary>
/// In-memory documents as training samples: each document is cut into consecutive windows of at most
/// <see cref="WindowLength"/> bytes (the last one shorter), with the loss on every byte. Every epoch sees the same windows
/// (the trainer's shuffle changes their order). Used by the ML.NET stages, where each row is one document.
/// </summary>
public sealed class DocumentSource : ISampleSource
{
    private readonly IReadOnlyList<byte[]> _documents;
    private readonly List<(int Doc, int Offset, int Length)> _windows;

    /// <summary>Cuts <paramref name="documents"/> into windows of at most <paramref name="windowLength"/> bytes; empty documents give none.</summary>
    public DocumentSource(IReadOnlyList<byte[]> documents, int windowLength)
    {
        _documents = documents;
        _windows = Windows(documents, windowLength);
        WindowLength = windowLength;
        Bytes = documents.Sum(d => (long)d.Length);
    }

    /// <summary>
    /// The consecutive windows of every document: (document index, offset, length), each at most
    /// <paramref name="windowLength"/> bytes, the last of a document shorter; every byte in exactly one window.
    /// </summary>
    public static List<(int Doc, int Offset, int Length)> Windows(IReadOnlyList<byte[]> documents, int windowLength)
    {
        if (windowLength <= 0) throw new ArgumentOutOfRangeException(nameof(windowLength), windowLength, "must be positive");
        var windows = new List<(int, int, int)>();
        for (int d = 0; d < documents.Count; d++)
            for (int off = 0; off < documents[d].Length; off += windowLength)
                windows.Add((d, off, Math.Min(windowLength, documents[d].Length - off)));
        return windows;
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
        var (d, off, len) = _windows[checked((int)index)];
        var doc = _documents[d];
        var ids = new long[len];
        for (int i = 0; i < len; i++) ids[i] = doc[off + i];
        var mask = new float[len];
        Array.Fill(mask, 1f);
        return new ByteSample(ids, mask);
    }
}
