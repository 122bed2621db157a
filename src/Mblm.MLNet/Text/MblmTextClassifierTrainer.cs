using Mblm.Config;
using Mblm.MLNet.Classification;
using Mblm.Model;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Runtime;
using Microsoft.ML.SearchSpace;

namespace Mblm.MLNet.Text;

/// <summary>
/// Tokenizer-free text classification: an MBLM reads the row's bytes (a text column, UTF-8, or a byte vector). By default
/// (<see cref="MblmClassifierObjective.PooledHead"/>) a pooled head over the model's states gives the K class logits,
/// trained end to end with cross-entropy (plus the text's next-byte loss, weight <see cref="Options.TextLossWeight"/>), one
/// forward per row when scoring. With <see cref="MblmClassifierObjective.LabelLikelihood"/> the model learns instead to
/// continue the bytes with the class's name, and prediction scores every class (the label's key values) by its
/// log-likelihood and normalises over them (as <see cref="Vision.MblmAnswerClassifierTrainer"/> does for answers).
/// An ML.NET multiclass trainer: <c>Score</c> and <c>PredictedLabel</c> work with
/// <c>mlContext.MulticlassClassification.Evaluate</c>, <c>CrossValidate</c>, <c>MapKeyToValue</c> and PredictionEngine.
/// Create it with <c>mlContext.MulticlassClassification.Trainers.MblmTextClassifier(...)</c> or
/// <c>mlContext.Mblm().TextClassifier(options)</c>.
/// </summary>
/// <remarks>
/// A row longer than the model's context is an error (Fit names the row; nothing is cut silently): choose a
/// <see cref="MblmTrainingOptions.ModelConfig"/> with longer <c>seq_lens</c>, or shorten the texts first.
/// </remarks>
public sealed class MblmTextClassifierTrainer : MblmClassifierTrainerBase<MblmTextClassifierTrainer.Options, MblmTextClassifierTransformer>
{
    /// <summary>
    /// Options: the shared training settings of <see cref="MblmTrainingOptions"/> (default model: <see cref="BaseModelConfig"/>
    /// sized to the data — see <see cref="MaxAutoContext"/> — <see cref="DefaultMaxEpochs"/> epochs, batches of <see cref="DefaultBatchSize"/>, learning rate
    /// <see cref="DefaultLearningRate"/>, 64 rows per Transform batch) plus the columns and knowledge transfer. Immutable.
    /// </summary>
    public sealed record Options : MblmClassifierOptions
    {
        /// <summary>Default of <see cref="MblmTrainingOptions.MaxEpochs"/>.</summary>
        public const int DefaultMaxEpochs = 8;
        /// <summary>Default of <see cref="MblmTrainingOptions.BatchSize"/>.</summary>
        public const int DefaultBatchSize = 16;
        /// <summary>Default of <see cref="MblmTrainingOptions.LearningRate"/>.</summary>
        public const double DefaultLearningRate = 2e-3;

        /// <summary>
        /// Largest context (tokens) a model sized to the data gets (<see cref="MblmTrainingOptions.ModelConfig"/> null): the
        /// context is twice the longest training sample (room for longer rows at prediction), at least
        /// <see cref="MinAutoContext"/>, rounded up to whole patches of 8 tokens, at most this (about 4 KB of text). A longer
        /// training row is an error naming the row; so is a longer row at prediction.
        /// </summary>
        public const int MaxAutoContext = 4096;
        /// <summary>Smallest context (tokens) a model sized to the data gets.</summary>
        public const int MinAutoContext = 512;

        /// <summary>The text classifier's defaults; a <see cref="MblmTrainingOptions.ModelConfig"/> set needs num_tokens 260 or more and pad 256.</summary>
        public Options() : base(null, DefaultMaxEpochs, DefaultLearningRate, scoringBatchSize: 64)
        {
            BatchSize = DefaultBatchSize;
            RandomPatchShift = true;
        }

        internal override MblmConfig DefaultModelConfig => BaseModelConfig;
        internal override long AutoContextLimit => MaxAutoContext;
        internal override int AutoContextHeadroom => 2;
        internal override long AutoContextMinimum => MinAutoContext;

        /// <summary>The label: a key column with text key values, the class names (use <c>MapValueToKey</c>).</summary>
        public string LabelColumnName { get; init; } = "Label";
        /// <summary>The input: a text column (UTF-8) or a byte vector.</summary>
        public string TextColumnName { get; init; } = "Text";
        /// <summary>Output: probabilities over the label's key values.</summary>
        public string ScoreColumnName { get; init; } = "Score";
        /// <summary>Output: the most likely class (a key of the label's key type).</summary>
        public string PredictedLabelColumnName { get; init; } = "PredictedLabel";
        /// <summary>
        /// Optional output (pooled head only): the row's pooled feature vector (Vector&lt;Single&gt; of D_0 + 2·D_n: the global
        /// state after the last patch, the mean and the maximum of the local states), for hybrid pipelines — e.g.
        /// <c>Concatenate</c> it with <c>FeaturizeText</c>'s features before SDCA or LightGbm. Null (default): not added.
        /// </summary>
        public string? FeaturesColumnName { get; init; }
        /// <summary>
        /// Knowledge transfer: start from a trained language model — a pipeline file saved by <c>SaveModel</c> that holds an
        /// MBLM language model, or a safetensors weights file — whose weights have the shapes of
        /// <see cref="MblmTrainingOptions.ModelConfig"/>'s except for the vocabulary (e.g. <see cref="MblmPresets.Small"/> into
        /// the default); its byte rows are copied, the special-token rows start fresh.
        /// </summary>
        public string? TransferFrom { get; init; }
        /// <summary>
        /// Label likelihood only: start the class segment at a patch boundary (pad tokens after the text), so that the class
        /// is predicted from the global stage's view of the whole text (default; measured better than unaligned on short
        /// texts, see <c>examples/TextClassification</c>); false puts it right after the text.
        /// </summary>
        public bool AlignClassToPatch { get; init; } = true;

        /// <summary>
        /// Loss weight of the text's own bytes (next-byte prediction of the text, a language-modelling side task that shapes
        /// the representation the class is read from), against weight 1 on the class loss; 0 trains on the class only.
        /// </summary>
        [Range(0.0, 1.0, false)]
        public double TextLossWeight { get; init; } = 0.1;

        /// <summary>
        /// Data augmentation: in every epoch after the first, each training row is seen as a random span of its bytes (at
        /// least a quarter of the row, and at least 16 bytes when it has them) half of the time, so the model cannot learn a
        /// row by heart, meets shorter inputs and sees its bytes at every phase of the patch grid; seeded like the rest of Fit.
        /// </summary>
        public bool RandomSpans { get; init; } = true;

        /// <summary>The prompt's alignment in tokens: the model's patch size (known before Fit: sizing keeps it), or 1.</summary>
        internal long Alignment => AlignClassToPatch ? ModelShape.PatchSize : 1;

        private protected override void CheckTask()
        {
            CheckClassifier();
            CheckColumns([(nameof(TextColumnName), TextColumnName), (nameof(LabelColumnName), LabelColumnName)],
                [(nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName),
                    .. FeaturesColumnName is null ? Array.Empty<(string, string)>() : [(nameof(FeaturesColumnName), FeaturesColumnName)]]);
            Check(FeaturesColumnName is null || Objective == MblmClassifierObjective.PooledHead, nameof(FeaturesColumnName),
                $"needs Objective PooledHead (the features are the head's input; got {Objective})");
            Check(ModelShape.NumTokens >= TokenLayout.NumTokens && ModelShape.PadTokenId == TokenLayout.Pad, nameof(ModelConfig),
                $"needs num_tokens >= {TokenLayout.NumTokens} and pad_token_id {TokenLayout.Pad} (bytes, pad, end of modality, start of text); got {ModelShape.NumTokens} and {ModelShape.PadTokenId}");
            Check(TextLossWeight is >= 0 and <= 1, nameof(TextLossWeight), $"must be in [0, 1] (got {TextLossWeight})");
            Check(TransferFrom is null || File.Exists(TransferFrom), nameof(TransferFrom), $"names a file that does not exist ('{TransferFrom}')");
        }

        // The transfer source is where the weights started, not a setting of the fitted model.
        private protected override MblmTrainingOptions WithoutData() => this with { TransferFrom = null };
    }

    /// <summary>
    /// The preset a model sized to the data starts from, in one place: <see cref="MblmPresets.SmallVqa"/> (≈ 0.5 M
    /// parameters, 260 tokens, patches of 8; weights shaped as <see cref="MblmPresets.Small"/>'s, so a Small language model
    /// transfers into it), with the context set by <see cref="Options.MaxAutoContext"/>'s rule.
    /// </summary>
    public static MblmConfig BaseModelConfig => MblmPresets.SmallVqa;

    internal MblmTextClassifierTrainer(IHostEnvironment environment, Options options) : base(environment, options, "MBLM text", "class loss") { }

    /// <summary>Adds <c>Score</c> (vector of Single) and <c>PredictedLabel</c> (key, with the label's key values).</summary>
    private protected override SchemaShape OutputShapeOf(SchemaShape input)
    {
        var o = TrainerOptions;
        ByteColumn.Check(input, o.TextColumnName, role: "text");
        LabelColumn.Check(input, o.LabelColumnName);
        var shape = LabelColumn.OutputShape(Context, input, o.ScoreColumnName, o.PredictedLabelColumnName);
        if (o.FeaturesColumnName is not { } features) return shape;
        var dims = o.ModelShape.HiddenDims;
        return DataView.OutputShape.AddVector(Context, shape, features, dims[0] + 2 * dims[^1]);
    }

    /// <summary>
    /// One sample per row with a label: for the pooled head the text's bytes with its class; for label likelihood the text,
    /// then the class, with the loss on the class. A seeded, stratified <see cref="MblmClassifierOptions.ValidationFraction"/>
    /// of the rows validates each epoch.
    /// </summary>
    private protected override TrainingSet Prepare(IDataView input, IChannel ch)
    {
        var o = TrainerOptions;
        var text = ByteColumn.Check(input.Schema, o.TextColumnName, role: "text");
        var label = LabelColumn.Check(input.Schema, o.LabelColumnName);
        var classes = LabelColumn.KeyValues(label);
        CheckClassCount(classes.Length, o.LabelColumnName);
        bool pooled = o.Objective == MblmClassifierObjective.PooledHead;
        var segments = classes.Select(c => TokenLayout.Answer(TokenLayout.Utf8(c))).ToArray();
        ByteSample SampleOf(byte[] bytes, uint key) => pooled
            ? TextClassifierLayout.Pooled(bytes, (int)key - 1)
            : TextClassifierLayout.Sample(bytes, segments[key - 1], o.Alignment, (float)o.TextLossWeight);
        var rows = new List<(byte[] Text, uint Key)>();
        var (samples, longest, longestRow) = LabelColumn.ReadSamples(input, new[] { text, label }, label, classes.Length, cursor =>
        {
            var read = ByteColumn.Reader(cursor, text);
            return key =>
            {
                var bytes = read();
                rows.Add((bytes, key));
                return SampleOf(bytes, key);
            };
        }, ch, "MBLM text");
        ISampleSource Train(List<int> indices) => o.RandomSpans
            ? new RandomSpanSource(indices.Select(i => rows[i]).ToList(), indices.Select(i => samples[i]).ToList(), SampleOf, Seed)
            : new ListSource(indices.Select(i => samples[i]).ToList());
        return Split(samples, rows.Select(r => r.Key).ToList(), classes, longest, longestRow, "rows",
            $"shorten the texts of column '{o.TextColumnName}' or set ModelConfig to a config with a longer context (more seq_lens[0] patches)", Train);
    }

    private protected override double NextByteWeight(Options options) => options.TextLossWeight;

    private protected override void InitializeModel(MblmModel model, IChannel ch)
    {
        if (TrainerOptions.TransferFrom is { } from) ch.Info(MessageSensitivity.None, $"MBLM text: transferred {Transfer.Load(model, from)}");
    }

    private protected override MblmTextClassifierTransformer CreateClassifier(Options options, MblmModel model, string[] classes, TrainingSummary summary,
        PooledClassifierHead? head) => new(options, model, classes, summary, head);

    // Epoch 0 reads the rows whole; later epochs read a seeded random span of a row half of the time.
    private sealed class RandomSpanSource(List<(byte[] Text, uint Key)> rows, List<ByteSample> whole, Func<byte[], uint, ByteSample> sample, int seed) : ISampleSource
    {
        public long Count(int epoch) => rows.Count;

        public ByteSample Get(int epoch, long index)
        {
            var rng = new Random(unchecked(seed * 1_000_003 + epoch * 7_919 + (int)index * 31));
            var (text, key) = rows[(int)index];
            if (epoch == 0 || rng.Next(2) == 0 || text.Length < 2) return whole[(int)index];
            int min = Math.Min(text.Length, Math.Max(16, text.Length / 4));
            int length = rng.Next(min, text.Length + 1), start = rng.Next(text.Length - length + 1);
            return sample(text[start..(start + length)], key);
        }
    }
}
