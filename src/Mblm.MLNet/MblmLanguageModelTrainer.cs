using Mblm.Config;
using Mblm.Generation;
using Mblm.Model;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.SearchSpace;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.MLNet;

/// <summary>
/// Estimator that trains a Multiscale Byte Language Model on a text or byte-vector column by next-byte prediction and
/// returns a <see cref="MblmLanguageModelTransformer"/>. Create it with <c>mlContext.Mblm().LanguageModel(...)</c>.
/// </summary>
/// <remarks>
/// <para>Input and output columns:</para>
/// <list type="table">
/// <listheader><term>Column</term><description>Type</description></listheader>
/// <item><term><see cref="Options.InputColumnName"/> (input)</term><description>Text (UTF-8 encoded) or Vector&lt;Byte&gt;</description></item>
/// <item><term><see cref="Options.BitsPerByteColumnName"/></term><description>Single: Σ cross-entropy / bytes · log₂ e of the row (NaN for an empty row)</description></item>
/// <item><term><see cref="Options.FeaturesColumnName"/></term><description>Vector&lt;Single, D&gt;: mean of the last stage's final hidden states (D = last hidden dim)</description></item>
/// <item><term><see cref="Options.CompletionColumnName"/></term><description>Text: a continuation of <see cref="Options.MaxNewBytes"/> bytes, only when MaxNewBytes &gt; 0</description></item>
/// </list>
/// <para>
/// Training: every row is one document; documents longer than the model's context are cut into consecutive windows of the
/// context length; windows are batched, right-padded, with the loss on real bytes only. The seed comes from the
/// <see cref="MLContext"/> (<c>new MLContext(seed: 1)</c> makes Fit reproducible on CPU); the device from
/// <see cref="MLContext.GpuDeviceId"/> and <see cref="MLContext.FallbackToCpu"/>. Progress goes to <see cref="MLContext.Log"/>
/// and to <see cref="Options.Progress"/>. Fits run one at a time per process (they share the torch random generator).
/// </para>
/// </remarks>
public sealed class MblmLanguageModelTrainer : IEstimator<MblmLanguageModelTransformer>
{
    private readonly MLContext _context;
    private readonly IHost _host;

    /// <summary>
    /// Options of <see cref="MblmLanguageModelTrainer"/>. Immutable; the transformer keeps the values it was fitted with.
    /// The tunable ones carry ML.NET search-space attributes (<c>[Range]</c>, <c>[Choice]</c>), read by
    /// <see cref="MblmCatalog.SweepLanguageModel"/> and usable with AutoML's <c>SearchSpace&lt;T&gt;</c>.
    /// </summary>
    public sealed record Options
    {
        /// <summary>Default input column.</summary>
        public const string DefaultInputColumnName = "Text";
        /// <summary>Default <see cref="MaxEpochs"/>.</summary>
        public const int DefaultMaxEpochs = 3;
        /// <summary>Default <see cref="BatchSize"/>.</summary>
        public const int DefaultBatchSize = 16;
        /// <summary>Default <see cref="LearningRate"/>.</summary>
        public const double DefaultLearningRate = 3e-3;

        /// <summary>The text or byte-vector column to model.</summary>
        public string InputColumnName { get; init; } = DefaultInputColumnName;
        /// <summary>Output column of bits per byte.</summary>
        public string BitsPerByteColumnName { get; init; } = "BitsPerByte";
        /// <summary>Output column of the feature vector.</summary>
        public string FeaturesColumnName { get; init; } = "Features";
        /// <summary>Output column of the completion (present when <see cref="MaxNewBytes"/> &gt; 0).</summary>
        public string CompletionColumnName { get; init; } = "Completion";
        /// <summary>The model; default <see cref="MblmPresets.Small"/>. <c>num_tokens</c> must be at least 257 with pad 256 or above.</summary>
        public MblmConfig ModelConfig { get; init; } = MblmPresets.Small;
        /// <summary>Passes over the training rows.</summary>
        [Range(1, 30, DefaultMaxEpochs, false)]
        public int MaxEpochs { get; init; } = DefaultMaxEpochs;
        /// <summary>Optional cap on optimiser steps (null = epochs decide).</summary>
        public long? MaxSteps { get; init; }
        /// <summary>Windows per optimiser step.</summary>
        [Choice(new object[] { 8, 16, 32 }, DefaultBatchSize)]
        public int BatchSize { get; init; } = DefaultBatchSize;
        /// <summary>Peak learning rate (Adam β 0.9/0.95, 10 % linear warm-up, cosine decay).</summary>
        [Range(3e-4, 1e-2, DefaultLearningRate, true)]
        public double LearningRate { get; init; } = DefaultLearningRate;
        /// <summary>Fraction of steps spent warming up.</summary>
        [Range(0.0, 0.3, 0.1, false)]
        public double WarmupFraction { get; init; } = 0.1;
        /// <summary>Gradient norm clipping (null = none).</summary>
        public double? GradientClipping { get; init; } = 1.0;
        /// <summary>
        /// Held-out rows with the same column as the training input, scored after every epoch (bits per byte, logged and in
        /// <see cref="MblmLanguageModelTransformer.Training"/>). It does not go through the pipeline before this stage, so give
        /// it the schema this stage sees.
        /// </summary>
        public IDataView? ValidationSet { get; init; }
        /// <summary>Bytes to generate per row into the completion column (0 = no completion column).</summary>
        public int MaxNewBytes { get; init; }
        /// <summary>Sampling of completions (greedy by default; its MaxNewTokens is replaced by <see cref="MaxNewBytes"/>).</summary>
        public SamplingOptions Sampling { get; init; } = new() { Temperature = 0 };
        /// <summary>Rows (windows) scored together by Transform.</summary>
        public int ScoringBatchSize { get; init; } = 16;
        /// <summary>Receives a report after every optimiser step (the same reports the CLI's progress line shows).</summary>
        public IProgress<TrainingProgress>? Progress { get; init; }

        internal Options Checked()
        {
            Check(!string.IsNullOrWhiteSpace(InputColumnName), nameof(InputColumnName), "must name a column");
            Check(!string.IsNullOrWhiteSpace(BitsPerByteColumnName), nameof(BitsPerByteColumnName), "must name a column");
            Check(!string.IsNullOrWhiteSpace(FeaturesColumnName), nameof(FeaturesColumnName), "must name a column");
            Check(MaxNewBytes == 0 || !string.IsNullOrWhiteSpace(CompletionColumnName), nameof(CompletionColumnName), "must name a column");
            var names = new[] { BitsPerByteColumnName, FeaturesColumnName }.Concat(MaxNewBytes > 0 ? [CompletionColumnName] : Array.Empty<string>()).ToList();
            Check(names.Distinct().Count() == names.Count, nameof(BitsPerByteColumnName), $"output column names must differ (got {string.Join(", ", names)})");
            Check(ModelConfig is not null, nameof(ModelConfig), "is required");
            try { ModelConfig!.Validate(); }
            catch (ConfigException e) { throw new ArgumentException($"{nameof(ModelConfig)}: {e.Message}", nameof(ModelConfig), e); }
            Check(ModelConfig.NumTokens >= 257 && ModelConfig.PadTokenId >= 256, nameof(ModelConfig),
                $"a byte model needs num_tokens >= 257 and pad_token_id >= 256 (got {ModelConfig.NumTokens} and {ModelConfig.PadTokenId})");
            Check(MaxEpochs > 0, nameof(MaxEpochs), $"must be positive (got {MaxEpochs})");
            Check(MaxSteps is null or > 0, nameof(MaxSteps), $"must be positive or null (got {MaxSteps})");
            Check(BatchSize > 0, nameof(BatchSize), $"must be positive (got {BatchSize})");
            Check(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), $"must be a positive number (got {LearningRate})");
            Check(WarmupFraction is >= 0 and < 1, nameof(WarmupFraction), $"must be in [0, 1) (got {WarmupFraction})");
            Check(GradientClipping is null or > 0, nameof(GradientClipping), $"must be positive or null (got {GradientClipping})");
            Check(MaxNewBytes >= 0, nameof(MaxNewBytes), $"must be >= 0 (got {MaxNewBytes})");
            Check(ScoringBatchSize > 0, nameof(ScoringBatchSize), $"must be positive (got {ScoringBatchSize})");
            Check(Sampling is not null, nameof(Sampling), "is required");
            try { Sampling!.Validate(); }
            catch (ArgumentException e) { throw new ArgumentException($"{nameof(Sampling)}.{e.ParamName}: {e.Message}", nameof(Sampling), e); }
            return this;
        }

        private static void Check(bool ok, string option, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException(option, $"MblmLanguageModelTrainer.Options.{option} {rule}");
        }
    }

    /// <summary>The options this estimator fits with.</summary>
    public Options TrainerOptions { get; }

    internal MblmLanguageModelTrainer(MLContext context, Options options)
    {
        _context = context ?? throw new ArgumentNullException(nameof(context));
        TrainerOptions = (options ?? throw new ArgumentNullException(nameof(options))).Checked();
        _host = ((IHostEnvironment)context).Register(nameof(MblmLanguageModelTrainer));
    }

    /// <summary>The output schema: the input columns plus the columns this stage adds. Throws for a missing or mistyped input column.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ByteColumn.Check(inputSchema, TrainerOptions.InputColumnName);
        return OutputShape.Add(_context, inputSchema, StageColumns.For(TrainerOptions));
    }

    /// <summary>Trains the model on the input column of <paramref name="input"/>.</summary>
    public MblmLanguageModelTransformer Fit(IDataView input)
    {
        var o = TrainerOptions;
        var column = ByteColumn.Check(input.Schema, o.InputColumnName);
        var device = DeviceChoice.For(_context);
        using var ch = _host.Start("Training");
        var documents = ByteRows.Read(input, column);
        var train = new DocumentSource(documents, (int)Math.Min(o.ModelConfig.MaxContext, int.MaxValue));
        if (train.Count(0) == 0)
            throw new ArgumentException($"the training data has no bytes in column '{o.InputColumnName}' ({documents.Count} rows, all empty)", nameof(input));
        DocumentSource? validation = null;
        if (o.ValidationSet is { } vs)
        {
            var vcol = ByteColumn.Check(vs.Schema, o.InputColumnName, role: "validation");
            validation = new DocumentSource(ByteRows.Read(vs, vcol), train.WindowLength);
            if (validation.Count(0) == 0)
            {
                ch.Warning(MessageSensitivity.None, $"MBLM: the validation set has no bytes in column '{o.InputColumnName}'; training without validation");
                validation = null;
            }
        }
        long stepsPerEpoch = (train.Count(0) + o.BatchSize - 1) / o.BatchSize;
        long steps = Math.Min(stepsPerEpoch * o.MaxEpochs, o.MaxSteps ?? long.MaxValue);
        int seed = _host.Rand.Next();
        ch.Info(MessageSensitivity.None, $"MBLM: {documents.Count} rows, {train.Bytes} bytes in {train.Count(0)} windows of at most {train.WindowLength} bytes; " +
                $"{o.ModelConfig.CountParameters():N0} parameters on {device}; {steps} steps of {o.BatchSize} windows");

        lock (Fitting.Gate)
        {
            manual_seed(seed);
            var model = new MblmModel(o.ModelConfig);
            try
            {
                model.to(device);
                var trainer = new Trainer(model, new TrainerOptions
                {
                    Steps = steps,
                    BatchSize = o.BatchSize,
                    LearningRate = o.LearningRate,
                    WarmupFraction = o.WarmupFraction,
                    GradientClipping = o.GradientClipping,
                    Seed = seed,
                    Shuffle = true,
                    ValidateEvery = validation is null ? 0 : stepsPerEpoch,
                });
                var log = new ProgressLog(ch, steps, "loss", o.Progress);
                var result = trainer.Train(train, validation, log);
                ch.Info(MessageSensitivity.None, $"MBLM: trained {result.Steps} steps, final loss {result.FinalLoss:F4} nats" +
                        (result.ValidationBitsPerByte is double v ? $", validation {v:F4} bits per byte" : ""));
                var summary = new TrainingSummary(result.Steps, result.FinalLoss, result.ValidationBitsPerByte, train.Bytes, seed);
                return new MblmLanguageModelTransformer(_context, o, model, summary);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
    }
}

/// <summary>What a fit did.</summary>
/// <param name="Steps">Optimiser steps taken.</param>
/// <param name="FinalLoss">Training loss of the last step (nats per byte).</param>
/// <param name="ValidationBitsPerByte">Bits per byte on <see cref="MblmLanguageModelTrainer.Options.ValidationSet"/> at the end, if given.</param>
/// <param name="TrainingBytes">Bytes in the training rows.</param>
/// <param name="Seed">The seed drawn from the MLContext.</param>
public sealed record TrainingSummary(long Steps, double FinalLoss, double? ValidationBitsPerByte, long TrainingBytes, int Seed);
