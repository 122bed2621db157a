using System.Text;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.DataView;

/// <summary>
/// The byte input of a stage: a text column (UTF-8 encoded) or a byte-vector column (<c>VBuffer&lt;byte&gt;</c>, known or
/// variable size). Any other type is a schema mismatch, reported as ML.NET reports it.
/// </summary>
internal static class ByteColumn
{
    public const string Expected = "Text or Vector<Byte>";

    /// <summary>Checks a column of a data schema; returns it.</summary>
    public static DataViewSchema.Column Check(DataViewSchema schema, string name, string role = "input")
    {
        var column = schema.GetColumnOrNull(name) ?? throw SchemaChecks.NotFound(role, name);
        if (!IsBytes(column.Type)) throw SchemaChecks.Mismatch(role, name, Expected, column.Type.ToString() ?? "?");
        return column;
    }

    /// <summary>Checks a column of an estimator's schema shape.</summary>
    public static void Check(SchemaShape shape, string name, string role = "input")
    {
        var column = SchemaChecks.Find(shape, role, name);
        bool text = column.Kind == SchemaShape.Column.VectorKind.Scalar && column.ItemType is TextDataViewType;
        bool bytes = column.Kind != SchemaShape.Column.VectorKind.Scalar && column.ItemType == NumberDataViewType.Byte && !column.IsKey;
        if (!text && !bytes) throw SchemaChecks.Mismatch(role, name, Expected, Describe(column));
    }

    private static bool IsBytes(DataViewType type) =>
        type is TextDataViewType || type is VectorDataViewType v && v.ItemType == NumberDataViewType.Byte;

    private static string Describe(SchemaShape.Column c)
    {
        string item = c.IsKey ? $"Key<{c.ItemType}>" : c.ItemType.ToString() ?? "?";
        return c.Kind switch
        {
            SchemaShape.Column.VectorKind.Scalar => item,
            SchemaShape.Column.VectorKind.Vector => $"Vector<{item}, known size>",
            _ => $"Vector<{item}>",
        };
    }


    /// <summary>A reader of the column's value in the row's current position, as bytes.</summary>
    public static Func<byte[]> Reader(DataViewRow row, DataViewSchema.Column column)
    {
        if (column.Type is TextDataViewType)
        {
            var getter = row.GetGetter<ReadOnlyMemory<char>>(column);
            ReadOnlyMemory<char> text = default;
            return () =>
            {
                getter(ref text);
                var bytes = new byte[Encoding.UTF8.GetByteCount(text.Span)];
                Encoding.UTF8.GetBytes(text.Span, bytes);
                return bytes;
            };
        }
        var vectorGetter = row.GetGetter<VBuffer<byte>>(column);
        VBuffer<byte> buffer = default;
        return () =>
        {
            vectorGetter(ref buffer);
            return buffer.DenseValues().ToArray();
        };
    }
}
