using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Mblm.MLNet;
using Mblm.MLNet.LanguageModel;

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
        CliPaths.InputFile("model", modelPath);
        if (inputFile is not null) CliPaths.InputFile("input-file", inputFile);
        var rows = text is not null ? [text] : File.ReadAllLines(inputFile!);
        if (rows.Length == 0) throw new InvalidInputException($"--input-file '{inputFile}' is empty: no rows to predict");

        var ml = new MLContext();
        DataViewSchema inputSchema = null!;
        var model = Errors.Reading("pipeline", modelPath, () => ml.Mblm().LoadModel(modelPath, out inputSchema));
        try
        {
            var stages = Stages(model).ToList();
            if (!stages.Any(s => s.GetType().Assembly == typeof(MblmLanguageModelTransformer).Assembly))
                throw new InvalidInputException(stages.Count == 0
                    ? $"--model '{modelPath}' holds a pipeline with no stages: nothing to predict"
                    : $"--model '{modelPath}' holds no MBLM stage (only {string.Join(" -> ", stages.Select(s => s.GetType().Name))}): nothing to predict");
            var textColumns = inputSchema.Where(c => !c.IsHidden && c.Type is TextDataViewType).Select(c => c.Name).ToList();
            string Columns() => string.Join(", ", inputSchema.Select(c => $"{c.Name} ({c.Type})"));
            if (columnName is null)
                columnName = textColumns.FirstOrDefault() ?? throw new InvalidInputException($"--model '{modelPath}': the pipeline's input schema has no text column; its columns: {Columns()}");
            else if (!textColumns.Contains(columnName))
                throw new UsageException($"--column '{columnName}' is not a text column of the pipeline's input; its columns: {Columns()}");
            var definition = SchemaDefinition.Create(typeof(TextInput));
            definition["Text"].ColumnName = columnName;
            var data = ml.Data.LoadFromEnumerable(rows.Select(r => new TextInput { Text = r }), definition);
            var output = model.Transform(data);
            var columns = output.Schema.Where(c => !c.IsHidden && Printable(c.Type)).ToList();
            using var cursor = output.GetRowCursor(columns);
            var getters = columns.Select(c => Getter(cursor, c)).ToList();
            long printed = 0;
            while (cursor.MoveNext())
            {
                var row = new Dictionary<string, object?>();
                for (int i = 0; i < columns.Count; i++) row[columns[i].Name] = CliJson.Finite(getters[i]());
                stdout.WriteLine(JsonSerializer.Serialize(row));
                printed++;
            }
            if (printed == 0)
                throw new InvalidInputException($"--model '{modelPath}': the pipeline gave no output rows for {rows.Length} input row(s)");
            stderr.WriteLine($"mblm predict: {rows.Length} rows through {modelPath}");
            return 0;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    // The stages of a (possibly nested) transformer chain.
    private static IEnumerable<ITransformer> Stages(ITransformer model)
    {
        if (model is IEnumerable<ITransformer> chain)
        {
            foreach (var inner in chain)
                foreach (var stage in Stages(inner))
                    yield return stage;
        }
        else yield return model;
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
