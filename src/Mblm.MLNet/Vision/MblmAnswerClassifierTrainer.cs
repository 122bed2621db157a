using System.Text.Json.Serialization;
using Mblm.Config;
using Mblm.Model;
using Mblm.Training;
using Mblm.Weights;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace Mblm.MLNet.Vision;

/// <summary>
/// Visual question answering with a byte model and no image encoder or classification head: an MBLM learns, by next-byte
/// prediction on the answer bytes only, to continue "question, image bytes, question" with the answer; prediction scores
/// every candidate answer (the label's key values) by its log-likelihood and normalises over them. An ML.NET multiclass
/// trainer: <c>Score</c> and <c>PredictedLabel</c> work with <c>mlContext.MulticlassClassification.Evaluate</c> and
/// <c>MapKeyToValue</c>. Create it with <c>mlContext.Mblm().AnswerClassifier(options)</c>.
/// </summary>
/// <remarks>
/// Inputs: an image column (<c>MLImage</c>, or the raw file bytes as Vector&lt;Byte&gt;, e.g. from <c>LoadRawImageBytes</c>),
/// a text question column and a key-typed label column whose key values are the answer texts. Sequence layout and special
/// tokens: <see cref="VqaLayout"/>; image bytes: <see cref="ImageBytes"/>.
/// </remarks>
public sealed class MblmAnswerClassifierTrainer : MblmTrainerBase<MblmAnswerClassifierTrainer.Options, MblmAnswerClassifierTransformer>
{
    /// <summary>
    /// Options: the shared training settings of <see cref="MblmTrainingOptions"/> (default model
    /// <see cref="MblmPresets.SmallVqa"/>, 4 epochs, batches of 16 samples, learning rate 2e-3, 4 rows per Transform batch)
    /// plus the columns, the image settings and knowledge transfer. Immutable.
    /// </summary>
    public sealed record Options : MblmTrainingOptions
    {
        /// <summary>The answer classifier's defaults; <see cref="MblmTrainingOptions.ModelConfig"/> needs num_tokens 260 or more and pad 256.</summary>
        public Options() : base(MblmPresets.SmallVqa, maxEpochs: 4, learningRate: 2e-3, scoringBatchSize: 4) { }

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
        /// <summary>How images become bytes: crop, resize, discretisation and encoding (default: planar RGB pixels at the image's size).</summary>
        public ImageByteOptions Image { get; init; } = new();
        /// <summary>Shortcut for <see cref="Image"/>'s encoding: <c>Pixels</c>, <c>Jpeg</c> or <c>Png</c>.</summary>
        [JsonIgnore]
        public ImageEncoding ImageEncoding { get => Image.Encoding; init => Image = Image with { Encoding = value }; }
        /// <summary>
        /// Knowledge transfer: start from a trained language model — a pipeline file saved by <c>SaveModel</c> that holds an
        /// MBLM language model, or a safetensors weights file — whose config equals <see cref="MblmTrainingOptions.ModelConfig"/>
        /// except for the vocabulary; its byte rows are copied, the special-token rows start fresh.
        /// </summary>
        public string? TransferFrom { get; init; }

        internal ImageByteOptions ImageOptions => (Image ?? throw new ArgumentOutOfRangeException(nameof(Image), "MblmAnswerClassifierTrainer.Options.Image is required"))
            .Checked("MblmAnswerClassifierTrainer.Options.Image");

        private protected override void CheckTask()
        {
            CheckColumns([(nameof(ImageColumnName), ImageColumnName), (nameof(QuestionColumnName), QuestionColumnName), (nameof(LabelColumnName), LabelColumnName)],
                [(nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName)]);
            Check(ModelConfig.NumTokens >= VqaLayout.NumTokens && ModelConfig.PadTokenId == VqaLayout.Pad, nameof(ModelConfig),
                $"needs num_tokens >= {VqaLayout.NumTokens} and pad_token_id {VqaLayout.Pad} (bytes, pad, end of modality, start of text, start of image); got {ModelConfig.NumTokens} and {ModelConfig.PadTokenId}");
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
        var reader = new VqaRowReader(o.ImageOptions);
        var samples = new List<ByteSample>();
        long unlabeled = 0, longest = 0;
        using (var cursor = input.GetRowCursor(new[] { image, question, label }))
        {
            var read = reader.Reader(cursor, image, question);
            var labelGetter = cursor.GetGetter<uint>(label);
            uint key = 0;
            while (cursor.MoveNext())
            {
                labelGetter(ref key);
                if (key == 0 || key > answers.Length) { unlabeled++; continue; }
                var (q, img) = read();
                var (ids, mask) = VqaLayout.Sample(q, img, VqaLayout.Utf8(answers[key - 1]));
                longest = Math.Max(longest, ids.Length);
                samples.Add(new ByteSample(ids, mask));
            }
        }
        if (samples.Count == 0) throw new ArgumentException($"no training rows with a label in column '{o.LabelColumnName}'", nameof(input));
        if (longest > o.ModelConfig.MaxContext)
            throw new ArgumentException($"a training sample has {longest} tokens, more than the model's context of {o.ModelConfig.MaxContext}; " +
                                        "make images smaller (ResizeWidth/ResizeHeight, Levels or Jpeg) or use a ModelConfig with longer seq_lens");
        if (unlabeled > 0) ch.Warning(MessageSensitivity.None, $"MBLM VQA: {unlabeled} rows without a label were skipped");
        return new AnswerTrainingSet(new ListSource(samples), samples.Sum(s => (long)s.Ids.Length),
            $"{samples.Count} samples (longest {longest} tokens), {answers.Length} answers", answers);
    }

    private protected override void InitializeModel(MblmModel model, IChannel ch)
    {
        if (TrainerOptions.TransferFrom is { } from) ch.Info(MessageSensitivity.None, $"MBLM VQA: transferred {Transfer.Load(model, from)}");
    }

    private protected override MblmAnswerClassifierTransformer CreateTransformer(MblmModel model, TrainingSummary summary, TrainingSet data) =>
        new(TrainerOptions, model, ((AnswerTrainingSet)data).Answers, summary);

    private sealed record AnswerTrainingSet(ISampleSource Train, long TrainingBytes, string Description, string[] Answers)
        : TrainingSet(Train, TrainingBytes, Description);
}
