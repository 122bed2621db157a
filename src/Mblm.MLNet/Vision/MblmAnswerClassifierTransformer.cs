using System.Text.Json.Nodes;
using Mblm.Inference;
using Mblm.MLNet.Classification;
using Mblm.Model;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.Vision;

/// <summary>
/// A trained MBLM answer classifier: adds <c>Score</c> (Vector&lt;Single, K&gt;: probabilities over the K answers, slot names
/// = the answers) and <c>PredictedLabel</c> (Key&lt;UInt32, K&gt; with the answers as key values). With the pooled head (the
/// default objective) one forward per row gives the K probabilities; with label likelihood every candidate answer is
/// scored by the model's log-likelihood of its answer segment after the row's question–image–question prompt (the prompt is
/// decoded once and its cached state repeated per candidate: <see cref="Mblm.Inference.ContinuationScorer"/>); the scores
/// are normalised with a softmax over the candidates. Thread-safe; save with <c>mlContext.Mblm().SaveModel</c>.
/// </summary>
public sealed class MblmAnswerClassifierTransformer : MblmTransformerBase<MblmAnswerClassifierTrainer.Options>, IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>,
    ICheckedAtLoad
{
    /// <summary>The stage kind in a pipeline file.</summary>
    internal const string StageKind = "answer-classifier";
    /// <summary>
    /// The layout of its <c>stage.json</c>: the options, <c>answers</c>, <c>training</c>. Version 2 adds the classifier
    /// options (<c>objective</c>, …) and, for the pooled head, the entry <c>head.safetensors</c>; a version 1 stage is read
    /// as label likelihood (the only objective then).
    /// </summary>
    internal const int StageVersion = 2;

    private readonly LabelCandidates _answers;
    private readonly ImageByteOptions _image;

    internal MblmAnswerClassifierTransformer(MblmAnswerClassifierTrainer.Options options, MblmModel model, string[] answers, TrainingSummary training,
        PooledClassifierHead? head)
        : base(options, model, training, head)
    {
        if ((head is not null) != (options.Objective == MblmClassifierObjective.PooledHead))
            throw new ArgumentException($"a {options.Objective} answer classifier {(head is null ? "needs" : "has no use for")} a pooled head", nameof(head));
        _answers = new LabelCandidates(answers);
        _image = Options.ImageOptions;
    }

    /// <summary>The candidate answers, in key order (key k is Answers[k-1]).</summary>
    public IReadOnlyList<string> Answers => _answers.Labels;

    private protected override string Kind => StageKind;

    private protected override int Version => StageVersion;

    private protected override void WriteFields(JsonObject stage) => stage["answers"] = StageWriter.ToNode(Answers);

    /// <summary>The keys of <c>stage.json</c> since layout version 1 (its non-null options, <c>answers</c> and <c>training</c>).</summary>
    private static readonly string[] RequiredKeys =
        ["imageColumnName", "questionColumnName", "labelColumnName", "scoreColumnName", "predictedLabelColumnName", "image", "scoringBatchSize", "answers", "training"];

    // Files written before nulls were written out lack the image options that were null then: MaxPixels (every image kept
    // its size) and Levels (all 256 levels). Both have non-null defaults now, so a missing key means null for them.
    private static void KeptSizes(JsonObject stage)
    {
        if (stage["image"] is not JsonObject image) return;
        image.TryAdd("maxPixels", null);
        image.TryAdd("levels", null);
    }

    /// <summary>Reads a stage written by <see cref="IMblmStage.Save"/>.</summary>
    internal static MblmAnswerClassifierTransformer Load(StageReader reader)
    {
        var (options, training, stage) = ReadSettings(reader, RequiredKeys, stage =>
        {
            KeptSizes(stage);
            reader.UpgradeClassifierLayout(stage);
        });
        // The answers are the classes: each short enough for the model to score after the shortest prompt (an empty question and image).
        long context = options.ModelConfig!.MaxContext;
        var answers = LabelCandidates.Read(reader, stage, "answers", context - VqaLayout.Prompt([], []).Length, context);
        return reader.ReadClassifier(options, answers.Length, "answers", (model, head) => new MblmAnswerClassifierTransformer(options, model, answers, training, head));
    }

    // The answers are the label's key values at training; where the saved input schema yields the label column, they must
    // still be (an edited stage.json, or a stage from another pipeline, would predict keys of other answers).
    (string Entry, string Problem)? ICheckedAtLoad.ProblemAtLoad(DataViewSchema input) => _answers.ProblemAtLoad(input, Options.LabelColumnName, "answers");

    IReadOnlyList<DataViewSchema.Column> IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>.Sources(DataViewSchema input)
    {
        var (image, question) = VqaColumns.CheckInputs(input, Options);
        return [image, question];
    }

    IReadOnlyList<AddedColumnInfo> IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>.Added =>
        _answers.Columns(Options.ScoreColumnName, Options.PredictedLabelColumnName);

    int IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>.BatchSize => Options.ScoringBatchSize;

    Func<(byte[] Question, byte[] Image)> IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>.Reader(DataViewRow row, IReadOnlyList<DataViewSchema.Column> sources) =>
        new VqaRowReader(_image).Reader(row, sources[0], sources[1]);

    (float[] Scores, uint Predicted)[] IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>.Compute(IReadOnlyList<(byte[] Question, byte[] Image)> rows, bool[] active) =>
        Score(rows.Select(r => VqaLayout.Prompt(r.Question, r.Image)).ToList());

    Delegate IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>.Getter(int added, Func<(float[] Scores, uint Predicted)> current) => added == 0
        ? (ValueGetter<VBuffer<float>>)((ref VBuffer<float> v) => RowStages.Copy(current().Scores, ref v))
        : (ValueGetter<uint>)((ref uint v) => v = current().Predicted);

    /// <summary>Probabilities over <see cref="Answers"/> and the predicted key for each prompt (question–image–question ids).</summary>
    internal (float[] Scores, uint Predicted)[] Score(IReadOnlyList<long[]> prompts)
    {
        if (Head is not { } head) return WithModel(model => _answers.ScoreCached(model, prompts));
        long context = ModelConfig.MaxContext;
        foreach (var p in prompts)
            if (p.Length > context)
                throw new InvalidDataException($"a row's question and image take {p.Length} tokens, more than the model's context of {context} " +
                    "(MblmAnswerClassifierTrainer.Options.ModelConfig, or the context sized to the training rows: make images smaller with Options.Image, or use a config with a longer context)");
        var probabilities = WithModel(model => PooledClassScorer.Probabilities(model, head, prompts, Options.ScoringBatchSize));
        return probabilities.Select(p => (p, (uint)(Array.IndexOf(p, p.Max()) + 1))).ToArray();
    }
}
