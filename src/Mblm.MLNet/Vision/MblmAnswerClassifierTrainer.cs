using Mblm.Config;
using Mblm.Model;
using Mblm.Training;
using Mblm.Weights;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

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
public sealed class MblmAnswerClassifierTrainer : IEstimator<MblmAnswerClassifierTransformer>
{
    private readonly MLContext _context;
    private readonly IHost _host;

    /// <summary>Options (immutable).</summary>
    public sealed record Options
    {
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
        public ImageEncoding ImageEncoding { get => Image.Encoding; init => Image = Image with { Encoding = value }; }
        /// <summary>The model (num_tokens 260, pad 256; default <see cref="MblmPresets.SmallVqa"/>).</summary>
        public MblmConfig ModelConfig { get; init; } = MblmPresets.SmallVqa;
        /// <summary>
        /// Knowledge transfer: start from a trained language model — a pipeline file saved by <c>SaveModel</c> that holds an
        /// MBLM language model, or a safetensors weights file — whose config equals <see cref="ModelConfig"/> except for the
        /// vocabulary; its byte rows are copied, the special-token rows start fresh.
        /// </summary>
        public string? TransferFrom { get; init; }
        /// <summary>Passes over the training rows.</summary>
        public int MaxEpochs { get; init; } = 4;
        /// <summary>Optional cap on optimiser steps.</summary>
        public long? MaxSteps { get; init; }
        /// <summary>Samples per step.</summary>
        public int BatchSize { get; init; } = 16;
        /// <summary>Peak learning rate.</summary>
        public double LearningRate { get; init; } = 2e-3;
        /// <summary>Warm-up fraction.</summary>
        public double WarmupFraction { get; init; } = 0.1;
        /// <summary>Rows Transform reads ahead per batch. Each row is scored on its own: its prompt decoded once, then every candidate answer together.</summary>
        public int ScoringBatchSize { get; init; } = 4;
        /// <summary>Receives a report after every optimiser step.</summary>
        public IProgress<TrainingProgress>? Progress { get; init; }

        internal ImageByteOptions ImageOptions => (Image ?? throw new ArgumentOutOfRangeException(nameof(Image), "MblmAnswerClassifierTrainer.Options.Image is required"))
            .Checked("MblmAnswerClassifierTrainer.Options.Image");

        internal Options Checked()
        {
            void Check(bool ok, string name, string rule) { if (!ok) throw new ArgumentOutOfRangeException(name, $"MblmAnswerClassifierTrainer.Options.{name} {rule}"); }
            foreach (var (n, v) in new[] { (nameof(ImageColumnName), ImageColumnName), (nameof(QuestionColumnName), QuestionColumnName), (nameof(LabelColumnName), LabelColumnName),
                         (nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName) })
                Check(!string.IsNullOrWhiteSpace(v), n, "must name a column");
            Check(ModelConfig is not null, nameof(ModelConfig), "is required");
            ModelConfig!.Validate();
            Check(ModelConfig.NumTokens >= VqaLayout.NumTokens && ModelConfig.PadTokenId == VqaLayout.Pad, nameof(ModelConfig),
                $"needs num_tokens >= {VqaLayout.NumTokens} and pad_token_id {VqaLayout.Pad} (bytes, pad, end of modality, start of text, start of image); got {ModelConfig.NumTokens} and {ModelConfig.PadTokenId}");
            Check(MaxEpochs > 0, nameof(MaxEpochs), "must be positive");
            Check(MaxSteps is null or > 0, nameof(MaxSteps), "must be positive or null");
            Check(BatchSize > 0, nameof(BatchSize), "must be positive");
            Check(LearningRate > 0, nameof(LearningRate), "must be positive");
            Check(ScoringBatchSize > 0, nameof(ScoringBatchSize), "must be positive");
            Check(TransferFrom is null || File.Exists(TransferFrom), nameof(TransferFrom), $"names a file that does not exist ('{TransferFrom}')");
            _ = ImageOptions;
            return this;
        }
    }

    /// <summary>The options this estimator fits with.</summary>
    public Options TrainerOptions { get; }

    internal MblmAnswerClassifierTrainer(MLContext context, Options options)
    {
        _context = context;
        TrainerOptions = (options ?? throw new ArgumentNullException(nameof(options))).Checked();
        _host = ((IHostEnvironment)context).Register(nameof(MblmAnswerClassifierTrainer));
    }

    /// <summary>Adds <c>Score</c> (vector of Single) and <c>PredictedLabel</c> (key, with the label's key values).</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        VqaColumns.Check(inputSchema, TrainerOptions);
        return VqaColumns.OutputShape(_context, inputSchema, TrainerOptions);
    }

    /// <summary>Trains the model on the answer bytes of every row with a label.</summary>
    public MblmAnswerClassifierTransformer Fit(IDataView input)
    {
        var o = TrainerOptions;
        var (image, question, label) = VqaColumns.Check(input.Schema, o);
        var answers = VqaColumns.KeyValues(label);
        var device = DeviceChoice.For(_context);
        using var ch = _host.Start("Training");
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
        long stepsPerEpoch = (samples.Count + o.BatchSize - 1) / o.BatchSize;
        long steps = Math.Min(stepsPerEpoch * o.MaxEpochs, o.MaxSteps ?? long.MaxValue);
        int seed = _host.Rand.Next();
        ch.Info(MessageSensitivity.None, $"MBLM VQA: {samples.Count} samples (longest {longest} tokens), {answers.Length} answers, {o.ModelConfig.CountParameters():N0} parameters on {device}; {steps} steps");

        lock (Fitting.Gate)
        {
            manual_seed(seed);
            var model = new MblmModel(o.ModelConfig);
            try
            {
                if (o.TransferFrom is { } from) ch.Info(MessageSensitivity.None, $"MBLM VQA: transferred {Transfer.Load(_context, model, from)}");
                model.to(device);
                var trainer = new Trainer(model, new TrainerOptions
                {
                    Steps = steps, BatchSize = o.BatchSize, LearningRate = o.LearningRate, WarmupFraction = o.WarmupFraction, Seed = seed, Shuffle = true,
                });
                var result = trainer.Train(new ListSource(samples), progress: new ProgressLog(ch, steps, "answer loss", o.Progress));
                ch.Info(MessageSensitivity.None, $"MBLM VQA: trained {result.Steps} steps, final answer loss {result.FinalLoss:F4} nats");
                return new MblmAnswerClassifierTransformer(o, model, answers, new TrainingSummary(result.Steps, result.FinalLoss, null, samples.Sum(s => (long)s.Ids.Length), seed));
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
    }

    private sealed class ListSource(List<ByteSample> samples) : ISampleSource
    {
        public long Count(int epoch) => samples.Count;
        public ByteSample Get(int epoch, long index) => samples[(int)index];
    }
}

/// <summary>Knowledge transfer into a larger vocabulary.</summary>
internal static class Transfer
{
    public static string Load(MLContext context, MblmModel model, string path)
    {
        Dictionary<string, Tensor> tensors;
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) tensors = SafeTensors.Load(path);
        else
        {
            var pipeline = PipelineFile.Load(context, path, out _);
            try
            {
                var lm = ((IEnumerable<ITransformer>)pipeline).OfType<MblmLanguageModelTransformer>().FirstOrDefault()
                    ?? throw new ArgumentException($"'{path}' holds no MBLM language model to transfer from", nameof(path));
                tensors = lm.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().clone());
            }
            finally { (pipeline as IDisposable)?.Dispose(); }
        }
        try
        {
            long old = ModelWeights.LoadGrowingVocabulary(model, tensors, path);
            return $"{tensors.Count} tensors from '{path}' (vocabulary {old} → {model.Config.NumTokens})";
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }
}
