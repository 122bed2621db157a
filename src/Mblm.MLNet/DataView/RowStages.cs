using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.DataView;

/// <summary>An output column a stage adds, with its annotations (null for none).</summary>
internal sealed record AddedColumnInfo(string Name, DataViewType Type, DataViewSchema.Annotations? Annotations);

/// <summary>
/// A row stage as its transformer uses it, whatever its row types: schema, batch view and row mapper. (The names differ
/// from ITransformer's on purpose: a transformer's public Transform would otherwise implement them and call itself.)
/// </summary>
/// <summary>A stage whose batch scoring stops when its ML.NET environment is cancelled.</summary>
internal interface ICancelableStage
{
    /// <summary>Throws <see cref="OperationCanceledException"/> when the stage's environment has been cancelled.</summary>
    void ThrowIfCanceled();
}

internal interface IRowStage
{
    /// <summary>The input schema plus the added columns.</summary>
    DataViewSchema BindOutputSchema(DataViewSchema input);
    /// <summary>The lazily scored view of <paramref name="input"/>.</summary>
    IDataView ScoredView(IDataView input);
    /// <summary>A row-at-a-time mapper (PredictionEngine).</summary>
    IRowToRowMapper RowMapper(DataViewSchema input);
}

/// <summary>
/// A model stage as the shared data view and row mapper see it: which input columns it reads, what it adds, how to read a
/// row's inputs, and a batch computation that fills only the active outputs.
/// </summary>
internal interface IRowStage<TIn, TOut> : IRowStage
{
    DataViewSchema IRowStage.BindOutputSchema(DataViewSchema input) => new Bindings<TIn, TOut>(this, input).Output;
    IDataView IRowStage.ScoredView(IDataView input) => new ScoredDataView<TIn, TOut>(this, input);
    IRowToRowMapper IRowStage.RowMapper(DataViewSchema input) => new RowMapper<TIn, TOut>(new Bindings<TIn, TOut>(this, input));

    /// <summary>The input columns (checked against the schema; throws ML.NET-style schema errors).</summary>
    IReadOnlyList<DataViewSchema.Column> Sources(DataViewSchema input);
    /// <summary>The added columns, in output order.</summary>
    IReadOnlyList<AddedColumnInfo> Added { get; }
    /// <summary>Rows per model call in batch Transform.</summary>
    int BatchSize { get; }
    /// <summary>A reader of the current row's inputs.</summary>
    Func<TIn> Reader(DataViewRow row, IReadOnlyList<DataViewSchema.Column> sources);
    /// <summary>Outputs of a batch; <paramref name="active"/>[i] says whether added column i is read.</summary>
    TOut[] Compute(IReadOnlyList<TIn> rows, bool[] active);
    /// <summary>A <c>ValueGetter</c> of added column <paramref name="added"/> over the current output.</summary>
    Delegate Getter(int added, Func<TOut> current);
}

internal static class RowStages
{
    public static void Copy(float[] values, ref VBuffer<float> dst)
    {
        var editor = VBufferEditor.Create(ref dst, values.Length);
        values.AsSpan().CopyTo(editor.Values);
        dst = editor.Commit();
    }
}

/// <summary>Input schema + a stage's columns: the output schema and how its columns map back.</summary>
internal sealed class Bindings<TIn, TOut>
{
    public Bindings(IRowStage<TIn, TOut> stage, DataViewSchema input)
    {
        Stage = stage;
        Input = input;
        Sources = stage.Sources(input);
        Added = stage.Added;
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(input);
        foreach (var c in Added) builder.AddColumn(c.Name, c.Type, c.Annotations);
        Output = builder.ToSchema();
    }

    public IRowStage<TIn, TOut> Stage { get; }
    public DataViewSchema Input { get; }
    public DataViewSchema Output { get; }
    public IReadOnlyList<DataViewSchema.Column> Sources { get; }
    public IReadOnlyList<AddedColumnInfo> Added { get; }

    /// <summary>The added-column index at output index <paramref name="index"/>, or -1 for a passed-through input column.</summary>
    public int AddedAt(int index) => index >= Input.Count ? index - Input.Count : -1;

    /// <summary>Which added columns are active.</summary>
    public bool[] ActiveAdded(Func<int, bool> isActive) => Enumerable.Range(0, Added.Count).Select(i => isActive(Input.Count + i)).ToArray();

    public ValueGetter<TValue> Getter<TValue>(int added, Func<TOut> current)
    {
        var getter = Stage.Getter(added, current);
        return getter as ValueGetter<TValue>
            ?? throw new InvalidOperationException($"column '{Added[added].Name}' has type {Added[added].Type}; a getter of {typeof(TValue).Name} was asked for");
    }
}
