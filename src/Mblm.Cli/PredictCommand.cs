using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.Cli;

/// <summary>
/// <c>mblm predict --model PIPELINE.zip (--text T | --input-file F) [--column NAME]</c>: loads a pipeline saved with
/// <c>mlContext.Mblm().SaveModel</c>, runs it over the text rows (the whole text, or one row per line of F) and prints one
/// JSON object per row with every visible output column of a scalar, text or float-vector type.
/// </summary>
internal static class PredictCommand
{
    private sealed class TextInput
    {
        public string Text { get; set; } = "";
    }

    public static int Run(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string modelPath = args.Required("model");
        string? text = args.Optional("text"), inputFile = args.Optional("input-file"), columnName = args.Optional("column");
        args.RejectUnknown("predict");
        if ((text is null) == (inputFile is null)) throw new UsageException("give exactly one of --text and --input-file");
        var rows = text is not null ? [text] : File.ReadAllLines(inputFile!);

        var ml = new MLContext();
        var model = ml.Mblm().LoadModel(modelPath, out var inputSchema);
        try
        {
            columnName ??= inputSchema.FirstOrDefault(c => !c.IsHidden && c.Type is TextDataViewType).Name
                ?? throw new UsageException($"the pipeline's input schema has no text column; its columns: {string.Join(", ", inputSchema.Select(c => $"{c.Name} ({c.Type})"))}");
            var definition = SchemaDefinition.Create(typeof(TextInput));
            definition["Text"].ColumnName = columnName;
            var data = ml.Data.LoadFromEnumerable(rows.Select(r => new TextInput { Text = r }), definition);
            var output = model.Transform(data);
            var columns = output.Schema.Where(c => !c.IsHidden && Printable(c.Type)).ToList();
            using var cursor = output.GetRowCursor(columns);
            var getters = columns.Select(c => Getter(cursor, c)).ToList();
            while (cursor.MoveNext())
            {
                var row = new Dictionary<string, object?>();
                for (int i = 0; i < columns.Count; i++) row[columns[i].Name] = getters[i]();
                stdout.WriteLine(JsonSerializer.Serialize(row, new JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
            }
            stderr.WriteLine($"mblm predict: {rows.Length} rows through {modelPath}");
            return 0;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    private static bool Printable(DataViewType t) =>
        t is TextDataViewType || t == NumberDataViewType.Single || t == NumberDataViewType.Double || t == BooleanDataViewType.Instance
        || t is VectorDataViewType { ItemType: var item } && item == NumberDataViewType.Single;

    private static Func<object?> Getter(DataViewRow row, DataViewSchema.Column c)
    {
        if (c.Type is TextDataViewType) { var g = row.GetGetter<ReadOnlyMemory<char>>(c); ReadOnlyMemory<char> v = default; return () => { g(ref v); return v.ToString(); }; }
        if (c.Type == NumberDataViewType.Single) { var g = row.GetGetter<float>(c); float v = 0; return () => { g(ref v); return v; }; }
        if (c.Type == NumberDataViewType.Double) { var g = row.GetGetter<double>(c); double v = 0; return () => { g(ref v); return v; }; }
        if (c.Type == BooleanDataViewType.Instance) { var g = row.GetGetter<bool>(c); bool v = false; return () => { g(ref v); return v; }; }
        var vg = row.GetGetter<VBuffer<float>>(c);
        VBuffer<float> buffer = default;
        return () => { vg(ref buffer); return buffer.DenseValues().ToArray(); };
    }
}
