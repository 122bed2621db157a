using System.Text.Json.Serialization;
using Mblm.Config;
using Mblm.MLNet.Classification;
using Mblm.Model;
using Mblm.Training;
using Mblm.Weights;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace Mblm.MLNet.Vision;

/// <summary>
/// Visual question answering with a byte model and no image encoder: an MBLM reads "question, image bytes, question". By
/// default (<see cref="MblmClassifierObjective.PooledHead"/>) a pooled head over its states gives the answer logits, trained
/// end to end with cross-entropy, one forward per row when scoring. With <see cref="MblmClassifierObjective.LabelLikelihood"/>
/// (the paper's method) it learns, by next-byte prediction on the answer bytes only, to continue the prompt with the answer,
/// and prediction scores every candidate answer (the label's key values) by its log-likelihood, normalised over them. An ML.NET multiclass
/// trainer: <c>Score</c> and <c>PredictedLabel</c> work with <c>mlContext.MulticlassClassification.Evaluate</c> and
/// <c>MapKeyToValue</c>. Create it with <c>mlContext.Mblm().AnswerClassifier(options)</c>.
/// </summary>
/// <remarks>
/// Inputs: an image column (<c>MLImage</c>, or the raw file bytes as Vector&lt;Byte&gt;, e.g. from <c>LoadRawImageBytes</c>),
/// a text question column and a key-typed label column whose key values are the answer texts. Sequence layout and special
/// tokens: <see cref="VqaLayout"/>; image bytes: <see cref="ImageBytes"/>.
/// </remarks>
public sealed class MblmAnswerClassifierTrainer : MblmClassifierTrainerBase<MblmAnswerClassifierTrainer.Options, MblmAnswerClassifierTransformer>
{
    /// <summary>
    /// Options: the shared training settings of <see cref="MblmTrainingOptions"/> (default model:
    /// <see cref="MblmPresets.SmallVqa"/> sized to the data — its context is the longest sample rounded up to whole patches
    /// of 8 tokens, at most <see cref="MaxAutoContext"/>; a longer sample is an error naming its row — 4 epochs, batches of
    /// 8 samples, learning rate 2e-3, 4 rows per Transform batch; images larger than 192 pixels are downscaled, see
    /// <see cref="ImageByteOptions.MaxPixels"/>) plus the columns, the image settings and knowledge transfer. Immutable.
    /// </summary>
    public sealed record Options : MblmClassifierOptions
    {
        /// <summary>
        /// Largest context (tokens) a model sized to the data gets (<see cref="MblmTrainingOptions.ModelConfig"/> null). A
        /// sample is the question twice, the image bytes, the answer and 8 framing tokens: 4,096 holds the planar pixels of
        /// images up to about 1,300 pixels (e.g. 40×32); larger images need <see cref="Image"/>'s resize, levels or JPEG
        /// encoding, or a ModelConfig.
        /// </summary>
        public const int MaxAutoContext = 4096;

        /// <summary>The answer classifier's defaults; a <see cref="MblmTrainingOptions.ModelConfig"/> set needs num_tokens 260 or more and pad 256.</summary>
        public Options() : base(null, maxEpochs: 4, learningRate: 2e-3, scoringBatchSize: 4) => BatchSize = DefaultBatchSize;

        /// <summary>
        /// Default <see cref="MblmTrainingOptions.BatchSize"/>: 8 (measured on the 400-scene colour/shape test: batches of 8
        /// learn shape to 0.79 in 6 epochs, batches of 16 to 0.69, for the same compute).
        /// </summary>
        public const int DefaultBatchSize = 8;

        internal override MblmConfig DefaultModelConfig => MblmPresets.SmallVqa;
        internal override long AutoContextLimit => MaxAutoContext;

        /// <summary>The image column: MLImage or Vector&lt;Byte&gt; of an image file's bytes.</summary>
        public string ImageColumnName { get; init; } = "Image";
        /// <summary>The question column (text).</summary>
        public string QuestionColumnName { get; init; } = "Question";
        /// <summary>The answer: a key column with text key values (use <c>MapValueToKey</c>).</summary>
        public string LabelColumnName { get; init; } = "Label";
        /// <summary>Output: probabilities over the label's key values.</summary>
        public string ScoreColumnName { get; init; } = "Score";
        /// <summary>Output: the most likely answer (key).</summary>
        public string PredictedLabelColumnName { get; init; } = "PredictedLabel";
        /// <summary>
        /// How images become bytes: crop, resize, discretisation and encoding (default: planar RGB pixels, downscaled to at
        /// most 192 pixels, 8 levels per channel; see <see cref="ImageByteOptions"/>).
        /// </summary>
        public ImageByteOptions Image { get; init; } = new();
        /// <summary>Shortcut for <see cref="Image"/>'s encoding: <c>Pixels</c>, <c>Jpeg</c> or <c>Png</c>.</summary>
        [JsonIgnore]
        public ImageEncoding ImageEncoding { get => Image.Encoding; init => Image = Image with { Encoding = value }; }
        /// <summary>
        /// Knowledge transfer: start from a trained language model — a pipeline file saved by <c>SaveModel</c> that holds an
        /// MBLM language model, or a safetensors weights file — whose config equals <see cref="MblmTrainingOptions.ModelConfig"/>
        /// (or, when that is null, <see cref="MblmPresets.SmallVqa"/> at any context) except for the vocabulary and the
        /// context; its byte rows are copied, the special-token rows start fresh.
        /// </summary>
        public string? TransferFrom { get; init; }

        /// <summary>
        /// Pooled head only: weight of the prompt's own next-byte loss (question and image bytes, an auxiliary
        /// language-modelling term) against weight 1 on the answer loss; 0 trains on the answers only (default 0.1).
        /// </summary>
        public double PromptLossWeight { get; init; } = 0.1;

        internal ImageByteOptions ImageOptions => (Image ?? throw new ArgumentOutOfRangeException(nameof(Image), "MblmAnswerClassifierTrainer.Options.Image is required"))
            .Checked("MblmAnswerClassifierTrainer.Options.Image");

        private protected override void CheckTask()
        {
            CheckClassifier();
            Check(PromptLossWeight is >= 0 and <= 1, nameof(PromptLossWeight), $"must be in [0, 1] (got {PromptLossWeight})");
            CheckColumns([(nameof(ImageColumnName), ImageColumnName), (nameof(QuestionColumnName), QuestionColumnName), (nameof(LabelColumnName), LabelColumnName)],
                [(nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName)]);
            Check(ModelShape.NumTokens >= VqaLayout.NumTokens && ModelShape.PadTokenId == VqaLayout.Pad, nameof(ModelConfig),
                $"needs num_tokens >= {VqaLayout.NumTokens} and pad_token_id {VqaLayout.Pad} (bytes, pad, end of modality, start of text, start of image); got {ModelShape.NumTokens} and " +
                    $"{ModelShape.PadTokenId}");
            Check(TransferFrom is null || File.Exists(TransferFrom), nameof(TransferFrom), $"names a file that does not exist ('{TransferFrom}')");
            _ = ImageOptions;
        }

        // The transfer source is where the weights started, not a setting of the fitted model.
        private protected override MblmTrainingOptions WithoutData() => this with { TransferFrom = null };
    }

    internal MblmAnswerClassifierTrainer(MLContext context, Options options) : base(context, options, "MBLM VQA", "answer loss") { }

    /// <summary>Adds <c>Score</c> (vector of Single) and <c>PredictedLabel</c> (key, with the label's key values).</summary>
    private protected override SchemaShape OutputShapeOf(SchemaShape input)
    {
        VqaColumns.Check(input, TrainerOptions);
        return LabelColumn.OutputShape(Context, input, TrainerOptions.ScoreColumnName, TrainerOptions.PredictedLabelColumnName);
    }

    /// <summary>One sample per row with a label: question, image, question, then the answer, with the loss on the answer only.</summary>
    private protected override TrainingSet Prepare(IDataView input, IChannel ch)
    {
        var o = TrainerOptions;
        var (image, question, label) = VqaColumns.Check(input.Schema, o);
        var answers = LabelColumn.KeyValues(label);
        CheckClassCount(answers.Length, o.LabelColumnName);
        bool pooled = o.Objective == MblmClassifierObjective.PooledHead;
        var reader = new VqaRowReader(o.ImageOptions);
        var keys = new List<uint>();
        var (samples, longest, longestRow) = LabelColumn.ReadSamples(input, new[] { image, question, label }, label, answers.Length, cursor =>
        {
            var read = reader.Reader(cursor, image, question);
            return key =>
            {
                var (q, img) = read();
                keys.Add(key);
                if (pooled) return VqaLayout.Pooled(q, img, (int)key - 1);
                var (ids, mask) = VqaLayout.Sample(q, img, VqaLayout.Utf8(answers[key - 1]));
                return new ByteSample(ids, mask);
            };
        }, ch, "MBLM VQA");
        return Split(samples, keys, answers, longest, longestRow, "samples",
            "make images smaller (Options.Image: ResizeWidth/ResizeHeight, Levels, or ImageEncoding Jpeg) or set ModelConfig to a config with a longer context (more " +
                "seq_lens[0] patches)");
    }

    private protected override double NextByteWeight(Options options) => options.PromptLossWeight;

    private protected override void InitializeModel(MblmModel model, IChannel ch)
    {
        if (TrainerOptions.TransferFrom is { } from) ch.Info(MessageSensitivity.None, $"MBLM VQA: transferred {Transfer.Load(model, from)}");
    }

    private protected override MblmAnswerClassifierTransformer CreateClassifier(Options options, MblmModel model, string[] classes, TrainingSummary summary,
        PooledClassifierHead? head) => new(options, model, classes, summary, head);
}
