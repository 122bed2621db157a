using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet;

/// <summary>What a language-model stage adds to a row.</summary>
internal enum OutputKind { BitsPerByte, Features, Completion }

/// <summary>One added column.</summary>
internal sealed record AddedColumn(OutputKind Kind, string Name, DataViewType Type);

internal static class StageColumns
{
    public static IReadOnlyList<AddedColumn> For(MblmLanguageModelTrainer.Options o)
    {
        var list = new List<AddedColumn>
        {
            new(OutputKind.BitsPerByte, o.BitsPerByteColumnName, NumberDataViewType.Single),
            new(OutputKind.Features, o.FeaturesColumnName, new VectorDataViewType(NumberDataViewType.Single, o.ModelConfig.HiddenDims[^1])),
        };
        if (o.MaxNewBytes > 0) list.Add(new(OutputKind.Completion, o.CompletionColumnName, TextDataViewType.Instance));
        return list;
    }
}

/// <summary>
/// Builds estimator output shapes. <c>SchemaShape.Column</c>'s constructor is internal to ML.NET, so the added columns
/// come from a never-fitted CustomMapping estimator whose output definition carries our names, types and annotations.
/// </summary>
internal static class OutputShape
{
    private sealed class NoInput { }

    /// <summary><paramref name="input"/> plus the columns of <paramref name="definition"/> (a definition of <typeparamref name="TOutputs"/>).</summary>
    public static SchemaShape Add<TOutputs>(MLContext context, SchemaShape input, SchemaDefinition definition) where TOutputs : class, new() =>
        context.Transforms.CustomMapping<NoInput, TOutputs>((_, _) => { }, contractName: null, outputSchemaDefinition: definition).GetOutputSchema(input);

    private sealed class LanguageModelOutputs
    {
        public float BitsPerByte { get; set; }
        public float[] Features { get; set; } = [];
        public string Completion { get; set; } = "";
    }

    /// <summary>The language model's added columns.</summary>
    public static SchemaShape Add(MLContext context, SchemaShape input, IReadOnlyList<AddedColumn> added)
    {
        var definition = SchemaDefinition.Create(typeof(LanguageModelOutputs));
        var keep = new List<SchemaDefinition.Column>();
        foreach (var column in added)
        {
            var c = definition[column.Kind.ToString()];
            c.ColumnName = column.Name;
            c.ColumnType = column.Type;
            keep.Add(c);
        }
        definition.RemoveAll(c => !keep.Contains(c));
        return Add<LanguageModelOutputs>(context, input, definition);
    }
}
