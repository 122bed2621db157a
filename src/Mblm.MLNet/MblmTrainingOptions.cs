using Mblm.Config;
using Mblm.Training;
using Microsoft.ML.SearchSpace;

namespace Mblm.MLNet;

/// <summary>
/// The settings every MBLM estimator shares: the model, how long and how it trains, how many rows Transform scores at a
/// time and who hears about progress. Each estimator's <c>Options</c> record derives from it and adds its columns and
/// task settings, so all options stay flat (<c>new MblmLanguageModelTrainer.Options { MaxEpochs = 2, MaxNewBytes = 40 }</c>).
/// Options are immutable; a fitted transformer keeps its own copy.
/// </summary>
/// <remarks>
/// The tunable settings carry ML.NET search-space attributes (<c>[Range]</c>, <c>[Choice]</c>), read by
/// <see cref="MblmCatalog.SweepLanguageModel"/> and usable with AutoML's <c>SearchSpace&lt;T&gt;</c> (pass an options
/// instance to start from an estimator's defaults).
/// </remarks>
public abstract record MblmTrainingOptions
{
    private protected MblmTrainingOptions(MblmConfig? modelConfig, int maxEpochs, double learningRate, int scoringBatchSize)
    {
        ModelConfig = modelConfig;
        MaxEpochs = maxEpochs;
        LearningRate = learningRate;
        ScoringBatchSize = scoringBatchSize;
    }

    /// <summary>
    /// The model, or null (the default): the estimator then sizes its model to the data it is fitted on — its base preset
    /// (named in its Options' documentation) with the context (<c>seq_lens[0]</c> global patches) set to the longest training
    /// sample rounded up to the patch grid, at most the estimator's <c>MaxAutoContext</c> (<see cref="ContextSizing.For"/>) —
    /// and logs the chosen context, patch sizes and parameter count to <c>MLContext.Log</c>. The fitted transformer keeps
    /// the concrete config. Rows longer than the cap are cut into windows by the language model and refused (naming the row)
    /// by the classifiers. Set a config (e.g. one of <see cref="MblmPresets"/>) to choose the model yourself.
    /// </summary>
    public MblmConfig? ModelConfig { get; init; }
    /// <summary>
    /// The model shape — widths, depths, blocks, patch size — sized to the data when <see cref="ModelConfig"/> is null (its
    /// context, <c>seq_lens[0]</c>, is replaced), or null (the default) for the estimator's own preset. Experiments search
    /// over shapes through it (<see cref="Experiments.MblmSearchSpace"/>). Ignored when <see cref="ModelConfig"/> is set.
    /// </summary>
    public MblmConfig? BaseModel { get; init; }
    /// <summary>
    /// A pretrained model to start from, or null (the default: random initialisation): a model folder (<c>config.json</c> +
    /// <c>model.safetensors</c>, as <c>mblm pretrain</c> writes) or a name such as <see cref="Pretraining.MblmPretrained.BaseName"/>
    /// (the base model the repository ships; see <see cref="Pretraining.MblmPretrained.Resolve"/> for where names are looked up).
    /// The model's shape is then taken from it — widths, depths, blocks and patch size; the context is still sized to the
    /// data, and the vocabulary grows by the estimator's task tokens (new rows start fresh) — and training starts from its
    /// weights. Not to be combined with <see cref="BaseModel"/>; a <see cref="ModelConfig"/> must have its shape. The fitted
    /// transformer holds the trained weights, so a saved pipeline does not need the folder.
    /// </summary>
    public string? Pretrained { get; init; }
    /// <summary>The estimator's own preset, sized when <see cref="ModelConfig"/> and <see cref="BaseModel"/> are null.</summary>
    internal abstract MblmConfig DefaultModelConfig { get; }
    /// <summary>
    /// What a model sized to the data starts from: <see cref="BaseModel"/>, else the shape of <see cref="Pretrained"/> with
    /// the estimator's vocabulary, else <see cref="DefaultModelConfig"/>.
    /// </summary>
    internal MblmConfig SizedShape => BaseModel ?? (Pretrained is { } p ? PretrainedShape(p) : DefaultModelConfig);

    private MblmConfig PretrainedShape(string nameOrDirectory)
    {
        var shape = Pretraining.MblmPretrained.LoadConfig(nameOrDirectory);
        return shape with { NumTokens = Math.Max(shape.NumTokens, DefaultModelConfig.NumTokens) };
    }
    /// <summary>Largest context (tokens) the estimator sizes a model to when <see cref="ModelConfig"/> is null.</summary>
    internal abstract long AutoContextLimit { get; }
    /// <summary>Room for longer rows at prediction when the model is sized to the data: the context is this many times the longest training sample (default 1).</summary>
    internal virtual int AutoContextHeadroom => 1;
    /// <summary>Smallest context (tokens) the estimator sizes a model to when <see cref="ModelConfig"/> is null (default 0: no floor).</summary>
    internal virtual long AutoContextMinimum => 0;
    /// <summary><see cref="ModelConfig"/>, or the shape sized to the data when it is null: everything but the context is known before Fit.</summary>
    internal MblmConfig ModelShape => ModelConfig ?? SizedShape;
    /// <summary>Passes over the training samples.</summary>
    [Range(1, 30, false)]
    public int MaxEpochs { get; init; }
    /// <summary>Optional cap on optimiser steps (null = epochs decide).</summary>
    public long? MaxSteps { get; init; }
    /// <summary>Samples per optimiser step.</summary>
    [Choice(new object[] { 8, 16, 32 })]
    public int BatchSize { get; init; } = 16;
    /// <summary>Peak learning rate (Adam β 0.9/0.95, linear warm-up, cosine decay).</summary>
    [Range(3e-4, 1e-2, true)]
    public double LearningRate { get; init; }
    /// <summary>Fraction of steps spent warming up.</summary>
    [Range(0.0, 0.3, false)]
    public double WarmupFraction { get; init; } = 0.1;
    /// <summary>Warm-up steps, when set (instead of <see cref="WarmupFraction"/>): the same warm-up for fits of different lengths.</summary>
    public long? WarmupSteps { get; init; }
    /// <summary>
    /// What follows the warm-up: cosine to 0 (<see cref="LearningRateScheduleKind.WarmupCosine"/>, the reference's; the
    /// default) or warm-up–stable–decay (<see cref="LearningRateScheduleKind.WarmupStableDecay"/>: the peak rate, then
    /// linear to 0 over the last <see cref="DecayFraction"/> of the steps). With the latter and a
    /// <see cref="CheckpointDirectory"/>, a Fit with a larger <see cref="MaxSteps"/> continues a finished shorter one from
    /// the checkpoint where its decay started (how experiments promote trials).
    /// </summary>
    public LearningRateScheduleKind Schedule { get; init; }
    /// <summary>With warm-up–stable–decay: the fraction of steps at the end that decay to 0 (default 0.2).</summary>
    public double DecayFraction { get; init; } = 0.2;
    /// <summary>Gradient norm clipping (null = none).</summary>
    public double? GradientClipping { get; init; } = 1.0;
    /// <summary>Rows Transform reads and scores together (1 to <see cref="MaxScoringBatchSize"/>).</summary>
    public int ScoringBatchSize { get; init; }
    /// <summary>Largest <see cref="ScoringBatchSize"/>.</summary>
    public const int MaxScoringBatchSize = 4096;
    /// <summary>
    /// Threads libtorch uses (process-wide <c>torch.set_num_threads</c>, set when Fit starts), or null for its default
    /// (one per core).
    /// </summary>
    public int? Threads { get; init; }
    /// <summary>Receives a report after every optimiser step (the same reports the CLI's progress line shows).</summary>
    public IProgress<TrainingProgress>? Progress { get; init; }
    /// <summary>
    /// Folder for training checkpoints (<c>checkpoints/step-NNNNNNNN/</c>: weights, optimiser, schedule, random state and
    /// data position; the model library's <see cref="CheckpointStore"/>), or null for none. A Fit with the same options,
    /// data and seed that finds checkpoints there resumes from the newest and ends with the same model as an uninterrupted
    /// Fit (bit for bit on CPU); a Fit whose run is already complete there returns the finished model without training.
    /// Checkpoints of another run — another model config, training settings, seed or training data — are refused with a
    /// <see cref="CheckpointMismatchException"/> naming every difference. The seed: an estimator draws it from the
    /// <c>MLContext</c> at its first Fit and keeps it, so Fit called again on the same estimator (or pipeline) resumes; a new
    /// process resumes when its <c>MLContext</c> has the same seed (<c>new MLContext(seed: 1)</c>). Not kept by the fitted
    /// transformer.
    /// </summary>
    public string? CheckpointDirectory { get; init; }
    /// <summary>
    /// With <see cref="CheckpointDirectory"/>: write a checkpoint every this many optimiser steps (and after the last);
    /// 0 (the default) = at the end of every epoch.
    /// </summary>
    public long CheckpointEvery { get; init; }

    /// <summary>"MblmLanguageModelTrainer.Options": how error messages name these options.</summary>
    private string Owner => GetType().DeclaringType is { } t ? $"{t.Name}.{GetType().Name}" : GetType().Name;

    /// <summary>
    /// Checks every option — those set in code when an estimator is created, and those read from a pipeline file when it is
    /// loaded (a broken rule there is an <see cref="MblmFormatException"/> naming the file, the entry and the option); throws <see cref="ArgumentOutOfRangeException"/>
    /// whose parameter name is the option and whose
    /// message reads "Owner.Options.Name rule (got value)".
    /// </summary>
    internal void Check()
    {
        try { ModelConfig?.Validate(); }
        catch (ConfigException e) { throw new ArgumentException($"{Owner}.{nameof(ModelConfig)}: {e.Message}", nameof(ModelConfig), e); }
        try { BaseModel?.Validate(); }
        catch (ConfigException e) { throw new ArgumentException($"{Owner}.{nameof(BaseModel)}: {e.Message}", nameof(BaseModel), e); }
        if (Pretrained is not null)
        {
            Check(BaseModel is null, nameof(Pretrained), "and BaseModel both give the model's shape: set one of them");
            MblmConfig shape;
            try { shape = PretrainedShape(Pretrained); }
            catch (Exception e) when (e is IOException or ConfigException or MblmFormatException or ArgumentException)
            {
                throw new ArgumentException($"{Owner}.{nameof(Pretrained)}: {e.Message}", nameof(Pretrained), e);
            }
            Check(shape.PadTokenId == DefaultModelConfig.PadTokenId, nameof(Pretrained),
                $"names a model whose pad token is {shape.PadTokenId}; this estimator's is {DefaultModelConfig.PadTokenId}");
        }
        Check(MaxEpochs > 0, nameof(MaxEpochs), $"must be positive (got {MaxEpochs})");
        Check(MaxSteps is null or > 0, nameof(MaxSteps), $"must be positive or null (got {MaxSteps})");
        Check(BatchSize > 0, nameof(BatchSize), $"must be positive (got {BatchSize})");
        Check(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), $"must be a positive number (got {LearningRate})");
        Check(WarmupFraction is >= 0 and < 1, nameof(WarmupFraction), $"must be in [0, 1) (got {WarmupFraction})");
        Check(GradientClipping is null or > 0, nameof(GradientClipping), $"must be positive or null (got {GradientClipping})");
        Check(WarmupSteps is null or >= 0, nameof(WarmupSteps), $"must be non-negative or null (got {WarmupSteps})");
        Check(Enum.IsDefined(Schedule), nameof(Schedule), $"must be WarmupCosine or WarmupStableDecay (got {Schedule})");
        Check(DecayFraction is > 0 and <= 1, nameof(DecayFraction), $"must be in (0, 1] (got {DecayFraction})");
        Check(ScoringBatchSize is > 0 and <= MaxScoringBatchSize, nameof(ScoringBatchSize), $"must be in 1..{MaxScoringBatchSize} (got {ScoringBatchSize})");
        Check(Threads is null or (>= 1 and <= 1024), nameof(Threads), $"must be in [1, 1024] or null (got {Threads})");
        Check(CheckpointDirectory is null || !string.IsNullOrWhiteSpace(CheckpointDirectory), nameof(CheckpointDirectory), "must name a folder or be null");
        Check(CheckpointEvery >= 0, nameof(CheckpointEvery), $"must be 0 (every epoch) or a positive number of steps (got {CheckpointEvery})");
        CheckTask();
    }

    /// <summary>AdamW's weight decay for this estimator's training, or null for Adam (the reference's optimiser).</summary>
    internal virtual double? OptimizerWeightDecay => null;

    /// <summary>
    /// Whether a fit with validation data returns the weights of its best validation rather than its last step's (the
    /// classifiers, with their validation split); the language model returns its last step's.
    /// </summary>
    internal virtual bool KeepsBestValidationWeights => false;

    /// <summary>Validations (one per epoch) without improvement after which training stops; 0: never.</summary>
    internal virtual int EarlyStoppingEpochs => 0;

    /// <summary>Hook: checks the estimator's own options (columns, vocabulary rule, task settings) with <see cref="Check(bool, string, string)"/>.</summary>
    private protected abstract void CheckTask();

    /// <summary>Throws for a broken rule, naming the option.</summary>
    private protected void Check(bool ok, string option, string rule)
    {
        if (!ok) throw new ArgumentOutOfRangeException(option, $"{Owner}.{option} {rule}");
    }

    /// <summary>Checks that every named option names a column and that the output columns differ.</summary>
    private protected void CheckColumns((string Option, string Name)[] inputs, (string Option, string Name)[] outputs)
    {
        foreach (var (option, name) in inputs.Concat(outputs)) Check(!string.IsNullOrWhiteSpace(name), option, "must name a column");
        var names = outputs.Select(o => o.Name).ToList();
        Check(names.Distinct().Count() == names.Count, outputs[0].Option, $"output column names must differ (got {string.Join(", ", names)})");
    }

    /// <summary>An <see cref="ArgumentException"/>'s message without the " (Parameter 'x')" that .NET appends.</summary>
    internal static string RuleOf(ArgumentException e)
    {
        string m = e.Message, suffix = $" (Parameter '{e.ParamName}')";
        int at = e.ParamName is null ? -1 : m.IndexOf(suffix, StringComparison.Ordinal);
        return at < 0 ? m : m.Remove(at, suffix.Length);
    }

    /// <summary>
    /// The settings a transformer keeps: without data, callbacks and fit-time places (the progress callback, the checkpoint
    /// folder, the pretrained model's folder and the hook's members).
    /// </summary>
    internal MblmTrainingOptions Settings() => WithoutData() with { Progress = null, CheckpointDirectory = null, Pretrained = null };

    /// <summary>Hook: a copy without the estimator's own data or callback members (e.g. a validation set); default: this.</summary>
    private protected virtual MblmTrainingOptions WithoutData() => this;
}
