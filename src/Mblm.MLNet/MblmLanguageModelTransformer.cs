using System.Text;
using Mblm.Config;
using Mblm.Generation;
using Mblm.Inference;
using Mblm.Model;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet;

/// <summary>
/// A trained MBLM as an ML.NET transformer: adds bits per byte, a feature vector and (optionally) a completion for the
/// input column of every row. Batch <see cref="Transform"/> scores rows <see cref="MblmLanguageModelTrainer.Options.ScoringBatchSize"/>
/// at a time; <see cref="GetRowToRowMapper"/> (used by PredictionEngine) scores one row at a time. Safe to use from several
/// threads (calls into the model are serialised). Save it with <c>mlContext.Mblm().SaveModel</c>; <c>mlContext.Model.Save</c>
/// cannot store third-party weights and throws <see cref="NotSupportedException"/>.
/// </summary>
public sealed class MblmLanguageModelTransformer : ITransformer, IDisposable, IRowStage<byte[], RowResult>
{
    private readonly object _gate = new();
    private readonly MLContext _context;
    private readonly MblmModel _model;
    private readonly DocumentScorer _scorer;
    private bool _disposed;

    internal MblmLanguageModelTransformer(MLContext context, MblmLanguageModelTrainer.Options options, MblmModel model, TrainingSummary training)
    {
        _context = context;
        Options = options with { ValidationSet = null, Progress = null }; // keep the settings, not the data or callback
        Training = training;
        _model = model;
        _model.eval();
        _scorer = new DocumentScorer(model, options.ScoringBatchSize);
        Columns = StageColumns.For(Options);
    }

    /// <summary>The options the model was fitted with (without the validation set and progress callback).</summary>
    public MblmLanguageModelTrainer.Options Options { get; }

    /// <summary>What the fit did.</summary>
    public TrainingSummary Training { get; }

    /// <summary>The model config.</summary>
    public MblmConfig ModelConfig => Options.ModelConfig;

    /// <summary>
    /// The trained TorchSharp model, for direct use (generation, fine-tuning, <c>ModelWeights.Save</c>). It is owned by this
    /// transformer: do not dispose it, and do not switch it to training mode while the transformer is in use.
    /// </summary>
    public MblmModel Model { get { ThrowIfDisposed(); return _model; } }

    internal IReadOnlyList<AddedColumn> Columns { get; }

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => new Bindings<byte[], RowResult>(this, inputSchema).Output;

    /// <inheritdoc/>
    public IDataView Transform(IDataView input) => new ScoredDataView<byte[], RowResult>(this, input);

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new RowMapper<byte[], RowResult>(this, new Bindings<byte[], RowResult>(this, inputSchema));

    // ---- IRowStage: how the shared data view and row mapper drive this stage ----

    IReadOnlyList<DataViewSchema.Column> IRowStage<byte[], RowResult>.Sources(DataViewSchema input) => [ByteColumn.Check(input, Options.InputColumnName)];

    IReadOnlyList<AddedColumnInfo> IRowStage<byte[], RowResult>.Added => Columns.Select(c => new AddedColumnInfo(c.Name, c.Type, null)).ToList();

    int IRowStage<byte[], RowResult>.BatchSize => Options.ScoringBatchSize;

    Func<byte[]> IRowStage<byte[], RowResult>.Reader(DataViewRow row, IReadOnlyList<DataViewSchema.Column> sources) => ByteColumn.Reader(row, sources[0]);

    RowResult[] IRowStage<byte[], RowResult>.Compute(IReadOnlyList<byte[]> rows, bool[] active)
    {
        bool Needs(OutputKind kind) => Columns.Where((c, i) => active[i] && c.Kind == kind).Any();
        return Compute(rows, Needs(OutputKind.BitsPerByte), Needs(OutputKind.Features), Needs(OutputKind.Completion));
    }

    Delegate IRowStage<byte[], RowResult>.Getter(int added, Func<RowResult> current) => Columns[added].Kind switch
    {
        OutputKind.BitsPerByte => (ValueGetter<float>)((ref float v) => v = current().BitsPerByte),
        OutputKind.Features => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> v) => RowStages.Copy(current().Features!, ref v)),
        _ => (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = current().Completion.AsMemory()),
    };

    /// <summary>Not supported: ML.NET's zip format has no public way to store the weights.</summary>
    /// <exception cref="NotSupportedException">Always; use <c>mlContext.Mblm().SaveModel(model, inputSchema, path)</c>.</exception>
    void ICanSaveModel.Save(ModelSaveContext ctx) =>
        throw new NotSupportedException(Fitting.SaveNotSupported);

    /// <summary>Generates a continuation of <paramref name="prompt"/> with this model's sampling options.</summary>
    public string Complete(string prompt, int? maxNewBytes = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var limit = maxNewBytes ?? (Options.MaxNewBytes > 0 ? Options.MaxNewBytes : 128);
        if (limit < 0) throw new ArgumentOutOfRangeException(nameof(maxNewBytes), limit, "must be >= 0");
        return Compute([Encoding.UTF8.GetBytes(prompt)], scores: false, features: false, completion: true, limit)[0].Completion!;
    }

    /// <summary>Results for a batch of rows; only the parts asked for are computed.</summary>
    internal RowResult[] Compute(IReadOnlyList<byte[]> rows, bool scores, bool features, bool completion, int? maxNewBytes = null)
    {
        var results = new RowResult[rows.Count];
        lock (_gate)
        {
            ThrowIfDisposed();
            DocumentScore[]? s = scores || features ? _scorer.Score(rows, features) : null;
            string[]? c = completion ? Generate(rows, maxNewBytes ?? Options.MaxNewBytes) : null;
            for (int i = 0; i < rows.Count; i++)
                results[i] = new RowResult((float)(s?[i].BitsPerByte ?? double.NaN), s?[i].Features, c?[i]);
        }
        return results;
    }

    // Each prompt keeps its newest bytes that leave room in the context for the continuation.
    private string[] Generate(IReadOnlyList<byte[]> rows, int maxNewBytes)
    {
        long context = ModelConfig.MaxContext;
        long keep = Math.Max(1, context - Math.Min(maxNewBytes, context / 2));
        var prompts = rows.Select(r => r.Skip((int)Math.Max(0, r.Length - keep)).Select(b => (long)b).ToArray()).ToList();
        var sampling = Options.Sampling with { MaxNewTokens = maxNewBytes, Overflow = ContextOverflow.SlidingWindow };
        var generated = new MblmGenerator(_model).Generate(prompts, sampling);
        var utf8 = new UTF8Encoding(false, false);
        return generated.Select(g => utf8.GetString(g.Tokens.Where(t => t is >= 0 and < 256).Select(t => (byte)t).ToArray())).ToArray();
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Frees the model's native memory. Note that disposing a PredictionEngine created with default options disposes its transformer.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _model.Dispose();
        }
    }
}


/// <summary>The outputs of one row.</summary>
internal readonly record struct RowResult(float BitsPerByte, float[]? Features, string? Completion);
