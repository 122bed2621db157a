using Mblm.Config;
using Mblm.Model;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.MLNet;

/// <summary>
/// What every MBLM estimator does around its task: checks its options, then in <see cref="Fit"/> turns the data into
/// training samples (a hook), sizes the model to them when <see cref="MblmTrainingOptions.ModelConfig"/> is null
/// (<see cref="ModelConfigFor"/>), fits the samples to the model's context (a hook), works out the steps from epochs and
/// <see cref="MblmTrainingOptions.MaxSteps"/>, draws the seed from the <see cref="MLContext"/> (once per estimator), builds
/// the model on the context's device, trains it with the model library's <see cref="Trainer"/> (progress to
/// <see cref="MLContext.Log"/> and <see cref="MblmTrainingOptions.Progress"/>; checkpoints and resume in
/// <see cref="MblmTrainingOptions.CheckpointDirectory"/>) and wraps it in the task's transformer (a hook). Fits of all MBLM estimators run one at a time per process: they seed the
/// global torch generator. Only this library derives estimators from it.
/// </summary>
/// <typeparam name="TOptions">The estimator's options.</typeparam>
/// <typeparam name="TTransformer">The transformer it fits.</typeparam>
public abstract class MblmTrainerBase<TOptions, TTransformer> : IEstimator<TTransformer>
    where TOptions : MblmTrainingOptions
    where TTransformer : class, ITransformer
{
    private readonly IHost _host;
    private readonly string _logPrefix;
    private readonly string _lossName;
    private readonly object _seedGate = new();
    private int? _seed; // drawn at the first Fit and kept, so a Fit run again resumes its checkpoints

    /// <param name="environment">The ML.NET context (seed, device, log), or the environment an ML.NET catalog holds.</param>
    /// <param name="options">The options, checked here.</param>
    /// <param name="logPrefix">How log lines start, e.g. "MBLM".</param>
    /// <param name="lossName">What the training loss is called in progress lines, e.g. "loss".</param>
    private protected MblmTrainerBase(IHostEnvironment environment, TOptions options, string logPrefix, string lossName)
    {
        Environment = environment ?? throw new ArgumentNullException(nameof(environment));
        ArgumentNullException.ThrowIfNull(options);
        options.Check();
        TrainerOptions = options;
        _host = environment.Register(GetType().Name);
        _logPrefix = logPrefix;
        _lossName = lossName;
    }

    /// <summary>The options this estimator fits with.</summary>
    public TOptions TrainerOptions { get; }

    /// <summary>Where seed, device and log come from: an <see cref="MLContext"/>, or the environment behind an ML.NET catalog.</summary>
    private protected IHostEnvironment Environment { get; }

    /// <summary>
    /// A context for building schema shapes (never-fitted ML.NET estimators): the MLContext itself, or, for an estimator
    /// created from an ML.NET catalog (which holds the environment, not the MLContext), a fresh one.
    /// </summary>
    private protected MLContext Context => _context ??= Environment as MLContext ?? new MLContext();

    private MLContext? _context;

    /// <summary>The output schema: the input columns plus the columns the stage adds. Throws for a missing or mistyped input column.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        return OutputShapeOf(inputSchema);
    }

    /// <summary>
    /// Trains a model on <paramref name="input"/> and returns it as a transformer. With
    /// <see cref="MblmTrainingOptions.CheckpointDirectory"/> set, resumes from the checkpoints of this run found there.
    /// A cancelled <see cref="MLContext"/> (<c>CancelExecution</c>) stops the Fit within one training step with
    /// <see cref="OperationCanceledException"/>, after a checkpoint of the last step when a checkpoint directory is set.
    /// </summary>
    public TTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        HostCancellation.ThrowIfCanceled(_host);
        Cancellation.ThrowIfCancellationRequested();
        using var ch = _host.Start("Training");
        var prepared = Prepare(input, ch);
        var config = ModelConfigFor(prepared, ch);
        var o = (TOptions)(TrainerOptions with { ModelConfig = config });
        var data = ForContext(prepared, config);
        var device = DeviceChoice.For(Environment);
        long samples = data.Train.Count(0);
        long stepsPerEpoch = (samples + o.BatchSize - 1) / o.BatchSize;
        long steps = Math.Min(stepsPerEpoch * o.MaxEpochs, o.MaxSteps ?? long.MaxValue);
        int seed = Seed;
        ch.Info(MessageSensitivity.None, $"{_logPrefix}: {data.Description}; {config.CountParameters():N0} parameters on {device}; " +
                $"{steps} steps of {o.BatchSize} {data.SampleName}");

        lock (FitGate.Lock)
        {
            manual_seed(seed);
            var model = new MblmModel(config);
            try
            {
                if (o.Pretrained is { } pretrained)
                    ch.Info(MessageSensitivity.None, $"{_logPrefix}: starting from the pretrained model: {Pretraining.MblmPretrained.LoadInto(model, pretrained)}");
                InitializeModel(model, ch);
                model.to(device);
                using var objective = CreateObjective(o, model, data);
                objective.Head?.to(device);
                var trainer = new Trainer(model, new TrainerOptions
                {
                    AdamW = o.OptimizerWeightDecay is not null,
                    WeightDecay = o.OptimizerWeightDecay ?? 0,
                    EarlyStoppingPatience = data.Validation is null ? 0 : o.EarlyStoppingEpochs,
                    RestoreBestWeights = data.Validation is not null && o.KeepsBestValidationWeights,
                    Steps = steps,
                    BatchSize = o.BatchSize,
                    LearningRate = o.LearningRate,
                    WarmupFraction = o.WarmupFraction,
                    WarmupSteps = o.WarmupSteps,
                    Schedule = o.Schedule,
                    DecayFraction = o.DecayFraction,
                    GradientClipping = o.GradientClipping,
                    Threads = o.Threads,
                    Seed = seed,
                    Shuffle = true,
                    ValidateEvery = data.Validation is null ? 0 : stepsPerEpoch,
                    OutputDirectory = o.CheckpointDirectory,
                    CheckpointEvery = o.CheckpointEvery > 0 ? o.CheckpointEvery : stepsPerEpoch,
                    Data = o.CheckpointDirectory is null ? null : DataFingerprint.Of(data.Train),
                }, objective.Objective);
                using var cancellation = HostCancellation.Watching(_host, Cancellation);
                TrainingResult result;
                try
                {
                    result = trainer.Train(data.Train, data.Validation, new ProgressLog(ch, steps, _lossName, o.Progress, cancellation.Poll),
                        resume: o.CheckpointDirectory is not null, cancellationToken: cancellation.Token);
                }
                catch (OperationCanceledException e) when (cancellation.Token.IsCancellationRequested)
                {
                    throw new OperationCanceledException($"{_logPrefix}: Fit was cancelled ({(Cancellation.IsCancellationRequested ? "its cancellation token" : "MLContext.CancelExecution")})" +
                        (o.CheckpointDirectory is { } dir ? $"; the checkpoint in '{dir}' resumes it: Fit again with the same options and data " +
                            "in a new MLContext of the same seed (a cancelled context stays cancelled)" : ""), e);
                }
                if (result.ResumedFromStep is long from)
                    ch.Info(MessageSensitivity.None, $"{_logPrefix}: resumed from the checkpoint of step {from} in '{o.CheckpointDirectory}'");
                ch.Info(MessageSensitivity.None, $"{_logPrefix}: trained {result.Steps} steps, final {_lossName} {result.FinalLoss:F4} nats" +
                        (result.ValidationBitsPerByte is double v ? $", validation {v:F4} bits per byte" : "") +
                        (result.ValidationLoss is double c ? $", validation class loss {c:F4} nats" : "") +
                        (result.StoppedEarly ? " (stopped early)" : "") + (result.BestStep is long b ? $"; kept the weights of step {b}, the best validation" : ""));
                var summary = new TrainingSummary(result.Steps, result.FinalLoss, result.ValidationBitsPerByte, data.TrainingBytes, seed)
                {
                    ValidationLoss = result.ValidationLoss, BestStep = result.BestStep,
                };
                var head = objective.Take();
                TTransformer transformer;
                try { transformer = CreateTransformer(o, model, head, summary, data); }
                catch
                {
                    head?.Dispose();
                    throw;
                }
                (transformer as IMblmStage)?.AttachHost(_host);
                return transformer;
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// The seed of this estimator's fits: drawn from the MLContext at its first use and kept, so that a Fit run again resumes
    /// its checkpoints; hooks read it for seeded data handling (e.g. the text classifier's random spans).
    /// </summary>
    /// <summary>A token that stops a Fit like a cancelled <c>MLContext</c> does (used by sweeps); none by default.</summary>
    internal CancellationToken Cancellation { get; set; }

    /// <summary>Sets the seed of this estimator's fits (experiments give each trial its own, the same after a restart).</summary>
    internal void UseSeed(int seed)
    {
        lock (_seedGate) _seed = seed;
    }

    private protected int Seed
    {
        get { lock (_seedGate) return _seed ??= _host.Rand.Next(); }
    }

    /// <summary>
    /// Hook, called after <see cref="Prepare"/>: the model a Fit trains. Default: <see cref="MblmTrainingOptions.ModelConfig"/>
    /// when set, else the options' base shape (<see cref="MblmTrainingOptions.BaseModel"/>, or the estimator's preset) sized by <see cref="ContextSizing.For"/> to
    /// the longest sample (<see cref="TrainingSet.LongestSample"/>) times the options' headroom, at least their minimum,
    /// at most their cap (<c>AutoContextLimit</c>; a longer sample keeps its length, and <see cref="ForContext"/> names it),
    /// logged in one line. A new estimator gets this by giving its options a base preset and a cap; it overrides the hook
    /// only to size more than the context.
    /// </summary>
    private protected virtual MblmConfig ModelConfigFor(TrainingSet data, IChannel ch)
    {
        var o = TrainerOptions;
        if (o.ModelConfig is { } set) return set;
        long longest = data.LongestSample;
        long wanted = longest > o.AutoContextLimit ? longest
            : Math.Min(Math.Max(o.AutoContextHeadroom * longest, o.AutoContextMinimum), o.AutoContextLimit);
        var config = ContextSizing.For(wanted, o.SizedShape, o.AutoContextLimit);
        string rule = (o.AutoContextHeadroom > 1 ? $"{o.AutoContextHeadroom} times that, " : "")
                      + (o.AutoContextMinimum > 0 ? $"at least {o.AutoContextMinimum}, " : "") + $"at most {o.AutoContextLimit}";
        ch.Info(MessageSensitivity.None, $"{_logPrefix}: ModelConfig not set: sized to the data: context {config.MaxContext} tokens " +
                $"(seq_lens [{string.Join(", ", config.SeqLens)}], patches of {config.PatchSize}) for the longest sample of {longest} tokens " +
                $"({rule}), {config.CountParameters():N0} parameters");
        return config;
    }

    // ---- hooks: what a task adds ----

    /// <summary>Hook: checks the input columns of <paramref name="input"/> and adds the stage's output columns.</summary>
    private protected abstract SchemaShape OutputShapeOf(SchemaShape input);

    /// <summary>
    /// Hook: checks the data's columns (ML.NET-style schema errors) and reads it into training samples (ids and loss mask),
    /// with an optional validation source; throws <see cref="ArgumentException"/> when there is nothing to train on.
    /// </summary>
    private protected abstract TrainingSet Prepare(IDataView input, IChannel ch);

    /// <summary>
    /// Hook: the training set for the model's <paramref name="config"/> (called after the model is sized). Default: every
    /// sample must fit the context — a longer one throws <see cref="ArgumentException"/> naming its row, the context and
    /// <see cref="TrainingSet.TooLongHint"/>. The language model overrides it to cut rows into windows of the context.
    /// </summary>
    private protected virtual TrainingSet ForContext(TrainingSet data, MblmConfig config)
    {
        if (data.LongestSample > config.MaxContext)
        {
            string owner = $"{GetType().Name}.Options";
            string why = TrainerOptions.ModelConfig is null
                ? $"the context sized to the data is capped at {TrainerOptions.AutoContextLimit} tokens ({owner}.MaxAutoContext) while {owner}.ModelConfig is null"
                : $"{owner}.ModelConfig has a context of {config.MaxContext} tokens";
            throw new ArgumentException($"row {data.LongestRow} of the training data gives a sample of {data.LongestSample} tokens, more than the model's context of " +
                                        $"{config.MaxContext}: {why}; {data.TooLongHint}", "input");
        }
        return data;
    }

    /// <summary>
    /// Hook: what training minimises (and the head it trains, which the transformer then owns); default: next-byte
    /// prediction. Called after <see cref="InitializeModel"/>, inside the fit's seeded section.
    /// </summary>
    private protected virtual FitObjective CreateObjective(TOptions options, MblmModel model, TrainingSet data) => new(TrainingObjective.NextByte, null);

    /// <summary>Hook: sets the fresh model's weights before training (e.g. knowledge transfer); default: nothing.</summary>
    private protected virtual void InitializeModel(MblmModel model, IChannel ch) { }

    /// <summary>
    /// Hook: the transformer that owns the trained <paramref name="model"/> (in eval mode from then on) and the objective's
    /// trained <paramref name="head"/> (null for next-byte training); <paramref name="options"/> are the estimator's options
    /// with the concrete <see cref="MblmTrainingOptions.ModelConfig"/> the model was built from.
    /// </summary>
    private protected abstract TTransformer CreateTransformer(TOptions options, MblmModel model, PooledClassifierHead? head, TrainingSummary summary, TrainingSet data);
}

/// <summary>What an estimator trains on, as its <c>Prepare</c> hook reads it.</summary>
/// <param name="Train">The training samples.</param>
/// <param name="TrainingBytes">Size of the training data, for <see cref="TrainingSummary.TrainingBytes"/>.</param>
/// <param name="Description">The data in the first log line, e.g. "16 rows, 900 bytes in 20 windows of at most 64 bytes".</param>
/// <param name="SampleName">What a sample is called in the log, e.g. "windows".</param>
internal record TrainingSet(ISampleSource Train, long TrainingBytes, string Description, string SampleName = "samples")
{
    /// <summary>Samples scored after every epoch (bits per byte), or null.</summary>
    public ISampleSource? Validation { get; init; }
    /// <summary>Tokens of the longest sample as read (before any cut to a context): what <c>ModelConfig = null</c> sizes the context to.</summary>
    public long LongestSample { get; init; }
    /// <summary>The input row (0-based) the longest sample came from, for error messages.</summary>
    public long LongestRow { get; init; }
    /// <summary>What to do when a sample is longer than the context (ends the error message), e.g. "make images smaller …".</summary>
    public string TooLongHint { get; init; } = "set ModelConfig to a config with a longer context (more seq_lens[0] patches)";
}

/// <summary>A fit's objective and the head it trains; disposes the head unless <see cref="Take"/> handed it on.</summary>
internal sealed class FitObjective(TrainingObjective objective, PooledClassifierHead? head) : IDisposable
{
    private PooledClassifierHead? _head = head;

    public TrainingObjective Objective => objective;

    public nn.Module? Head => _head;

    /// <summary>The head, now owned by the caller.</summary>
    public PooledClassifierHead? Take()
    {
        var head = _head;
        _head = null;
        return head;
    }

    public void Dispose() => _head?.Dispose();
}

/// <summary>Samples held in memory.</summary>
internal sealed class ListSource(IReadOnlyList<ByteSample> samples) : ISampleSource
{
    public long Count(int epoch) => samples.Count;
    public ByteSample Get(int epoch, long index) => samples[(int)index];
}

/// <summary>
/// Held while a fit seeds the global torch generator, builds its model and trains: fits of every MBLM estimator run one
/// at a time per process, so a seed gives the same model whatever else runs.
/// </summary>
internal static class FitGate
{
    public static readonly object Lock = new();
}
