using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.LanguageModel;

/// <summary>What a language-model stage adds to a row.</summary>
internal enum OutputKind { BitsPerByte, Features, Completion }

/// <summary>One added column.</summary>
internal sealed record AddedColumn(OutputKind Kind, string Name, DataViewType Type);

/// <summary>The columns a language-model stage adds, in output order.</summary>
internal static class LanguageModelColumns
{
    public static IReadOnlyList<AddedColumn> For(MblmLanguageModelTrainer.Options o)
    {
        var list = new List<AddedColumn>
        {
            new(OutputKind.BitsPerByte, o.BitsPerByteColumnName, NumberDataViewType.Single),
            new(OutputKind.Features, o.FeaturesColumnName, new VectorDataViewType(NumberDataViewType.Single, o.ModelShape.HiddenDims[^1])),
        };
        if (o.MaxNewBytes > 0) list.Add(new(OutputKind.Completion, o.CompletionColumnName, TextDataViewType.Instance));
        return list;
    }

    private sealed class LanguageModelOutputs
    {
        public float BitsPerByte { get; set; }
        public float[] Features { get; set; } = [];
        public string Completion { get; set; } = "";
    }

    /// <summary>The estimator's output shape: <paramref name="input"/> plus the added columns.</summary>
    public static SchemaShape Shape(MLContext context, SchemaShape input, MblmLanguageModelTrainer.Options options)
    {
        var definition = SchemaDefinition.Create(typeof(LanguageModelOutputs));
        var keep = new List<SchemaDefinition.Column>();
        foreach (var column in For(options))
        {
            var c = definition[column.Kind.ToString()];
            c.ColumnName = column.Name;
            c.ColumnType = column.Type;
            keep.Add(c);
        }
        definition.RemoveAll(c => !keep.Contains(c));
        return OutputShape.Add<LanguageModelOutputs>(context, input, definition);
    }
}
