using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.DataView;

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

    private sealed class VectorOutput
    {
        public float[] Vector { get; set; } = [];
    }

    /// <summary><paramref name="input"/> plus a column <paramref name="name"/> of Vector&lt;Single, <paramref name="width"/>&gt;.</summary>
    public static SchemaShape AddVector(MLContext context, SchemaShape input, string name, int width)
    {
        var definition = SchemaDefinition.Create(typeof(VectorOutput));
        var column = definition["Vector"];
        column.ColumnName = name;
        column.ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
        return Add<VectorOutput>(context, input, definition);
    }
}
