using System.Text.Json.Nodes;
using Mblm.Config;
using Mblm.Model;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet;

/// <summary>
/// What every fitted MBLM stage shares: the options it was fitted with, what the fit did, the TorchSharp model it owns
/// (calls into it run concurrently: many PredictionEngines and batch Transforms on many threads share one transformer, and
/// only <see cref="Dispose"/> waits for them to finish), <see cref="Dispose"/>, the ML.NET
/// transformer surface over the shared lazily scored data view and row mapper, the refusal of <c>mlContext.Model.Save</c>,
/// and its own entries in a pipeline file. Only this library derives transformers from it.
/// </summary>
/// <typeparam name="TOptions">The estimator's options.</typeparam>
public abstract class MblmTransformerBase<TOptions> : ITransformer, IDisposable, IMblmStage, ICancelableStage
    where TOptions : MblmTrainingOptions
{
    /// <summary>Why <c>mlContext.Model.Save</c> refuses our stages, and what to call instead.</summary>
    internal const string SaveNotSupported =
        "mlContext.Model.Save cannot store an MBLM stage's weights (ML.NET keeps its model-writing API internal). " +
        "Save the whole pipeline with mlContext.Mblm().SaveModel(model, inputSchema, path) and load it with mlContext.Mblm().LoadModel(path, out inputSchema).";

    // Readers are model calls (forward passes in eval mode read the weights only); the one writer is Dispose, which waits
    // for the calls in flight and stops new ones. Recursion is allowed: a call may nest another (save inside a call).
    private readonly ReaderWriterLockSlim _gate = new(LockRecursionPolicy.SupportsRecursion);
    private readonly MblmModel _model;
    private bool _disposed;

    private readonly PooledClassifierHead? _head;

    private protected MblmTransformerBase(TOptions options, MblmModel model, TrainingSummary training, PooledClassifierHead? head = null)
    {
        if (options.ModelConfig is null) throw new ArgumentException("a fitted stage needs its concrete model config", nameof(options));
        Options = (TOptions)options.Settings();
        Training = training;
        _model = model;
        _model.eval();
        _head = head;
        _head?.eval();
    }

    /// <summary>The classification head a pooled-head classifier owns with its model (saved as <c>head.safetensors</c>), or null.</summary>
    private protected PooledClassifierHead? Head => _head;

    // The ML.NET environment the stage was fitted or loaded in: when it is cancelled (MLContext.CancelExecution), a batch
    // Transform stops at its next batch with OperationCanceledException.
    private Microsoft.ML.Runtime.IHostEnvironment? _host;

    void IMblmStage.AttachHost(Microsoft.ML.Runtime.IHostEnvironment host) => _host = host;

    /// <summary>A token cancelled within 50 ms of the stage's ML.NET environment being cancelled (for generation); dispose it.</summary>
    private protected Hosting.HostCancellation.Polled WatchHost() => Hosting.HostCancellation.Polling(_host, TimeSpan.FromMilliseconds(50));

    void ICancelableStage.ThrowIfCanceled()
    {
        if (_host is { } host) Hosting.HostCancellation.ThrowIfCanceled(host);
    }

    /// <summary>The options the model was fitted with (without data and callbacks such as the progress callback).</summary>
    public TOptions Options { get; }

    /// <summary>What the fit did.</summary>
    public TrainingSummary Training { get; }

    /// <summary>The model config (concrete: when the estimator sized the model to the data, the config it chose; also <c>Options.ModelConfig</c>).</summary>
    public MblmConfig ModelConfig => Options.ModelConfig!;

    /// <summary>
    /// The trained TorchSharp model, for direct use (generation, fine-tuning, <c>ModelWeights.Save</c>). It is owned by this
    /// transformer: do not dispose it, and do not switch it to training mode while the transformer is in use.
    /// </summary>
    public MblmModel Model { get { ThrowIfDisposed(); return _model; } }

    // Every MBLM transformer is a row stage (IRowStage<TIn, TOut>): the shared data view and row mapper drive it.
    private IRowStage Rows => (IRowStage)this;

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Rows.BindOutputSchema(inputSchema);

    /// <inheritdoc/>
    public IDataView Transform(IDataView input) => Rows.ScoredView(input);

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => Rows.RowMapper(inputSchema);

    /// <summary>Not supported: ML.NET's zip format has no public way to store the weights.</summary>
    /// <exception cref="NotSupportedException">Always; use <c>mlContext.Mblm().SaveModel(model, inputSchema, path)</c>.</exception>
    void ICanSaveModel.Save(ModelSaveContext ctx) => throw new NotSupportedException(SaveNotSupported);

    /// <summary>
    /// Runs <paramref name="use"/> on the model unless the transformer is disposed. Calls from several threads run at the
    /// same time (no forward is serialised); <paramref name="use"/> must not change the model.
    /// </summary>
    private protected T WithModel<T>(Func<MblmModel, T> use)
    {
        ThrowIfDisposed();
        _gate.EnterReadLock();
        try
        {
            ThrowIfDisposed();
            return use(_model);
        }
        finally
        {
            _gate.ExitReadLock();
        }
    }

    /// <summary>Runs <paramref name="use"/> as a model call (for tests of concurrent serving).</summary>
    internal T UseModel<T>(Func<MblmModel, T> use) => WithModel(use);

    private protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Frees the model's native memory. Note that disposing a PredictionEngine created with default options disposes its transformer.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _gate.EnterWriteLock(); // waits for the calls in flight
        try
        {
            if (_disposed) return;
            _disposed = true;
            _model.Dispose();
            _head?.Dispose();
        }
        finally
        {
            _gate.ExitWriteLock();
        }
    }

    // ---- persistence: stage.json = the options + "training" + the stage's own fields; model.json; model.safetensors ----

    string IMblmStage.Kind => Kind;

    int IMblmStage.Version => Version;

    /// <summary>Hook: the stage kind in a pipeline file's manifest.</summary>
    private protected abstract string Kind { get; }

    /// <summary>Hook: the stage layout version this type writes.</summary>
    private protected abstract int Version { get; }

    void IMblmStage.Save(StageWriter writer)
    {
        var stage = StageWriter.ToJson(Options);
        WriteFields(stage);
        stage["training"] = StageWriter.ToNode(Training);
        writer.WriteJson(StageEntries.Stage, stage);
        WithModel(model =>
        {
            writer.WriteModel(ModelConfig, model);
            if (_head is not null) writer.WriteHead(_head);
            return 0;
        });
    }

    /// <summary>Hook: adds what the stage knows besides its options to <c>stage.json</c> (e.g. the answers); default: nothing.</summary>
    private protected virtual void WriteFields(JsonObject stage) { }

    /// <summary>
    /// For a stage type's static <c>Load</c>: its options (checked as options set in code are), what its fit did and
    /// <c>stage.json</c> for its own fields — all read before the model is built (<see cref="StageReader.ReadModel{T}"/>).
    /// </summary>
    /// <param name="reader">The stage's entries.</param>
    /// <param name="requiredKeys">The keys every <c>stage.json</c> of this kind has (see <see cref="StageReader.ReadStageJson"/>).</param>
    /// <param name="upgrade">Rewrites an older layout's <c>stage.json</c> into the current one before it is read.</param>
    private protected static (TOptions Options, TrainingSummary Training, JsonObject Stage) ReadSettings(StageReader reader,
        IReadOnlyCollection<string> requiredKeys, Action<JsonObject>? upgrade = null)
    {
        var stage = reader.ReadStageJson(requiredKeys);
        upgrade?.Invoke(stage);
        var options = reader.ReadOptions<TOptions>(stage);
        var training = reader.Read<TrainingSummary>(stage["training"], "training summary");
        return (options, training, stage);
    }
}
