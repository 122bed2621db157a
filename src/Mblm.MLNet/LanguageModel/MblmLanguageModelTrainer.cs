using Mblm.Config;
using Mblm.Generation;
using Mblm.Model;
using Mblm.Training;
using Mblm.Weights;
using System.Text.Json.Serialization;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace Mblm.MLNet.LanguageModel;

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
/// Training: every row is one document; with <see cref="MblmTrainingOptions.ModelConfig"/> null the context is sized to the
/// longest row (see <see cref="Options.MaxAutoContext"/>); documents longer than the model's context are cut into
/// consecutive windows of the context length; windows are batched, right-padded, with the loss on real bytes only. The seed comes from the
/// <see cref="MLContext"/> (<c>new MLContext(seed: 1)</c> makes Fit reproducible on CPU); the device from
/// <see cref="MLContext.GpuDeviceId"/> and <see cref="MLContext.FallbackToCpu"/>. Progress goes to <see cref="MLContext.Log"/>
/// and to <see cref="MblmTrainingOptions.Progress"/>. Fits run one at a time per process (they share the torch random generator).
/// </para>
/// </remarks>
public sealed class MblmLanguageModelTrainer : MblmTrainerBase<MblmLanguageModelTrainer.Options, MblmLanguageModelTransformer>
{
    /// <summary>
    /// Options of <see cref="MblmLanguageModelTrainer"/>: the shared training settings of <see cref="MblmTrainingOptions"/>
    /// (default model: <see cref="MblmPresets.Small"/> sized to the data — its context is the longest row rounded up to
    /// whole patches of 8 bytes, at most <see cref="MaxAutoContext"/>; longer rows are cut into windows of that context —
    /// 3 epochs, batches of 16 windows, learning rate 3e-3) plus the columns, the validation set and the completion
    /// settings. Immutable; the transformer keeps the values it was fitted with (and the concrete model config).
    /// </summary>
    public sealed record Options : MblmTrainingOptions
    {
        /// <summary>Default input column.</summary>
        public const string DefaultInputColumnName = "Text";
        /// <summary>Default <see cref="MblmTrainingOptions.MaxEpochs"/>.</summary>
        public const int DefaultMaxEpochs = 3;
        /// <summary>Default <see cref="MblmTrainingOptions.BatchSize"/>.</summary>
        public const int DefaultBatchSize = 16;
        /// <summary>Default <see cref="MblmTrainingOptions.LearningRate"/>.</summary>
        public const double DefaultLearningRate = 3e-3;

        /// <summary>
        /// Largest context (bytes) a model sized to the data gets (<see cref="MblmTrainingOptions.ModelConfig"/> null): the
        /// context of <see cref="MblmPresets.Small"/>. Rows longer than the context are cut into consecutive windows of it.
        /// </summary>
        public const int MaxAutoContext = 512;

        /// <summary>The language model's defaults; a <see cref="MblmTrainingOptions.ModelConfig"/> set must have <c>num_tokens</c> at least 257 and pad 256 or above.</summary>
        public Options() : base(null, DefaultMaxEpochs, DefaultLearningRate, scoringBatchSize: 16) => BatchSize = DefaultBatchSize;

        internal override MblmConfig DefaultModelConfig => MblmPresets.Small;
        internal override long AutoContextLimit => MaxAutoContext;

        /// <summary>The text or byte-vector column to model.</summary>
        public string InputColumnName { get; init; } = DefaultInputColumnName;
        /// <summary>Output column of bits per byte.</summary>
        public string BitsPerByteColumnName { get; init; } = "BitsPerByte";
        /// <summary>Output column of the feature vector.</summary>
        public string FeaturesColumnName { get; init; } = "Features";
        /// <summary>Output column of the completion (present when <see cref="MaxNewBytes"/> &gt; 0).</summary>
        public string CompletionColumnName { get; init; } = "Completion";
        /// <summary>
        /// Held-out rows with the same column as the training input, scored after every epoch (bits per byte, logged and in
        /// <see cref="MblmTransformerBase{TOptions}.Training"/>). It does not go through the pipeline before this stage, so give
        /// it the schema this stage sees.
        /// </summary>
        public IDataView? ValidationSet { get; init; }
        /// <summary>Bytes to generate per row into the completion column (0 = no completion column; at most <see cref="MaxNewBytesLimit"/>).</summary>
        public int MaxNewBytes { get; init; }
        /// <summary>
        /// Largest <see cref="MaxNewBytes"/> (and <see cref="MblmLanguageModelTransformer.Complete"/>'s): every byte is one
        /// decoding step, so a row's completion is bounded in time too. Generate longer texts with <c>MblmGenerator</c>.
        /// </summary>
        public const int MaxNewBytesLimit = 65_536;
        /// <summary>Most tokens in all of <see cref="Sampling"/>'s stop sequences together.</summary>
        public const int MaxStopTokens = 4096;
        /// <summary>Sampling of completions (greedy by default; its MaxNewTokens is replaced by <see cref="MaxNewBytes"/>).</summary>
        public SamplingOptions Sampling { get; init; } = new() { Temperature = 0 };

        /// <summary>
        /// Start from these weights instead of a fresh initialisation: a safetensors file or a PyTorch <c>.pth</c> (the
        /// reference trainer's checkpoint <c>{"MODEL": …, "LOSS": …}</c> or a bare state dict; see
        /// <see cref="ModelWeights.ReadFile"/>), loaded strictly by name and shape into
        /// <see cref="MblmTrainingOptions.ModelConfig"/> — for example a model exported with
        /// <see cref="MblmLanguageModelTransformer.ExportReference"/> and trained further with the reference's distributed
        /// trainer. Where the weights started is not a setting of the fitted model: it is not saved with the pipeline.
        /// </summary>
        [JsonIgnore]
        public string? InitialWeights { get; init; }

        private protected override void CheckTask()
        {
            Check(InitialWeights is null || File.Exists(InitialWeights), nameof(InitialWeights), $"names a file that does not exist ('{InitialWeights}')");
            Check(InitialWeights is null || ModelConfig is not null, nameof(InitialWeights), "needs ModelConfig, the weights' model (a model sized to the data would not fit them)");
            var outputs = new List<(string, string)> { (nameof(BitsPerByteColumnName), BitsPerByteColumnName), (nameof(FeaturesColumnName), FeaturesColumnName) };
            if (MaxNewBytes > 0) outputs.Add((nameof(CompletionColumnName), CompletionColumnName));
            CheckColumns([(nameof(InputColumnName), InputColumnName)], [.. outputs]);
            Check(ModelShape.NumTokens >= 257 && ModelShape.PadTokenId >= 256, nameof(ModelConfig),
                $"a byte model needs num_tokens >= 257 and pad_token_id >= 256 (got {ModelShape.NumTokens} and {ModelShape.PadTokenId})");
            Check(MaxNewBytes is >= 0 and <= MaxNewBytesLimit, nameof(MaxNewBytes), $"must be in 0..{MaxNewBytesLimit} (got {MaxNewBytes})");
            Check(Sampling is not null, nameof(Sampling), "is required");
            var stops = Sampling!.StopSequences;
            Check(stops is not null && stops.All(s => s is not null), nameof(Sampling), "needs StopSequences: a list of token lists");
            long stopTokens = stops!.Sum(s => (long)s.Length);
            Check(stopTokens <= MaxStopTokens, nameof(Sampling), $"has stop sequences of {stopTokens} tokens in all; at most {MaxStopTokens}");
            Check(stops!.All(s => s.All(t => t >= 0 && t < ModelShape.NumTokens)), nameof(Sampling),
                $"has stop sequences with token ids outside [0, num_tokens) = [0, {ModelShape.NumTokens})");
            Check(Enum.IsDefined(Sampling.Overflow), nameof(Sampling), $"has Overflow {Sampling.Overflow}; expected Stop or SlidingWindow");
            try { Sampling!.Validate(); }
            catch (ArgumentException e) { throw new ArgumentException($"{nameof(Sampling)}.{e.ParamName}: {RuleOf(e)}", nameof(Sampling), e); }
        }

        private protected override MblmTrainingOptions WithoutData() => this with { ValidationSet = null };
    }

    internal MblmLanguageModelTrainer(MLContext context, Options options) : base(context, options, "MBLM", "loss") { }

    private protected override SchemaShape OutputShapeOf(SchemaShape input)
    {
        ByteColumn.Check(input, TrainerOptions.InputColumnName);
        return LanguageModelColumns.Shape(Context, input, TrainerOptions);
    }

    // Every row is a document; ForContext cuts them into windows of the model's context once it is known.
    private protected override TrainingSet Prepare(IDataView input, IChannel ch)
    {
        var o = TrainerOptions;
        var documents = ByteRows.Read(input, ByteColumn.Check(input.Schema, o.InputColumnName));
        if (documents.All(d => d.Length == 0))
            throw new ArgumentException($"the training data has no bytes in column '{o.InputColumnName}' ({documents.Count} rows, all empty)", nameof(input));
        int longestRow = 0;
        for (int i = 1; i < documents.Count; i++) if (documents[i].Length > documents[longestRow].Length) longestRow = i;
        List<byte[]>? validation = null;
        if (o.ValidationSet is { } vs)
        {
            validation = ByteRows.Read(vs, ByteColumn.Check(vs.Schema, o.InputColumnName, role: "validation"));
            if (validation.All(d => d.Length == 0))
            {
                ch.Warning(MessageSensitivity.None, $"MBLM: the validation set has no bytes in column '{o.InputColumnName}'; training without validation");
                validation = null;
            }
        }
        var whole = new DocumentSource(documents, Math.Max(1, documents[longestRow].Length));
        return new Documents(whole, whole.Bytes, "", documents, validation)
        {
            LongestSample = documents[longestRow].Length, LongestRow = longestRow,
        };
    }

    private protected override void InitializeModel(MblmModel model, IChannel ch)
    {
        if (TrainerOptions.InitialWeights is not { } path) return;
        ModelWeights.Load(model, path);
        ch.Info(MessageSensitivity.None, $"MBLM: initial weights from '{path}'");
    }

    // Windows of the context: rows longer than it are cut, as documented.
    private protected override TrainingSet ForContext(TrainingSet data, MblmConfig config)
    {
        var d = (Documents)data;
        int window = (int)Math.Min(config.MaxContext, int.MaxValue);
        var train = new DocumentSource(d.Rows, window);
        var validation = d.ValidationRows is null ? null : new DocumentSource(d.ValidationRows, window);
        return new TrainingSet(train, train.Bytes,
            $"{d.Rows.Count} rows, {train.Bytes} bytes in {train.Count(0)} windows of at most {window} bytes", "windows")
        { Validation = validation, LongestSample = d.LongestSample, LongestRow = d.LongestRow };
    }

    private protected override MblmLanguageModelTransformer CreateTransformer(Options options, MblmModel model, PooledClassifierHead? head, TrainingSummary summary,
        TrainingSet data) =>
        new(options, model, summary);

    // The rows as read, before they are cut into windows.
    private sealed record Documents(ISampleSource Train, long TrainingBytes, string Description, IReadOnlyList<byte[]> Rows, IReadOnlyList<byte[]>? ValidationRows)
        : TrainingSet(Train, TrainingBytes, Description);
}
