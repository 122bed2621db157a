using Mblm.Training;
using Microsoft.ML;

namespace Mblm.MLNet;

/// <summary>Reads a byte column of every row into memory.</summary>
internal static class ByteRows
{
    public static List<byte[]> Read(IDataView data, DataViewSchema.Column column)
    {
        var rows = new List<byte[]>();
        using var cursor = data.GetRowCursor(new[] { column });
        var read = ByteColumn.Reader(cursor, column);
        while (cursor.MoveNext()) rows.Add(read());
        return rows;
    }
}

/// <summary>Documents as training samples: each cut into consecutive windows of at most <see cref="WindowLength"/> bytes, loss on every byte.</summary>
internal sealed class WindowSource : ISampleSource
{
    private readonly List<(byte[] Doc, int Offset, int Length)> _windows = new();

    public WindowSource(IReadOnlyList<byte[]> documents, int windowLength)
    {
        WindowLength = windowLength;
        foreach (var doc in documents)
            for (int off = 0; off < doc.Length; off += windowLength)
                _windows.Add((doc, off, Math.Min(windowLength, doc.Length - off)));
        Bytes = documents.Sum(d => (long)d.Length);
    }

    public int WindowLength { get; }

    public long Bytes { get; }

    public long Count(int epoch) => _windows.Count;

    public ByteSample Get(int epoch, long index)
    {
        var (doc, off, len) = _windows[(int)index];
        var ids = new long[len];
        for (int i = 0; i < len; i++) ids[i] = doc[off + i];
        var mask = new float[len];
        Array.Fill(mask, 1f);
        return new ByteSample(ids, mask);
    }
}
