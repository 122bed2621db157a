using Microsoft.ML;

namespace Mblm.MLNet.DataView;

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
