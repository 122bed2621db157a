using System.Text.Json.Nodes;
using Mblm.Inference;
using Mblm.Model;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.Vision;

/// <summary>
/// A trained MBLM answer classifier: adds <c>Score</c> (Vector&lt;Single, K&gt;: probabilities over the K answers, slot names
/// = the answers) and <c>PredictedLabel</c> (Key&lt;UInt32, K&gt; with the answers as key values). Every candidate answer is
/// scored by the model's log-likelihood of its answer segment after the row's question–image–question prompt (the prompt is
/// decoded once and its cached state repeated per candidate: <see cref="Mblm.Inference.ContinuationScorer"/>); the scores
/// are normalised with a softmax over the candidates. Thread-safe; save with <c>mlContext.Mblm().SaveModel</c>.
/// </summary>
public sealed class MblmAnswerClassifierTransformer : MblmTransformerBase<MblmAnswerClassifierTrainer.Options>, IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>,
    ICheckedAtLoad
{
    /// <summary>The stage kind in a pipeline file.</summary>
    internal const string StageKind = "answer-classifier";
    /// <summary>The layout of its <c>stage.json</c>: the options, <c>answers</c>, <c>training</c>.</summary>
    internal const int StageVersion = 1;

    private readonly LabelCandidates _answers;
    private readonly ImageByteOptions _image;

    internal MblmAnswerClassifierTransformer(MblmAnswerClassifierTrainer.Options options, MblmModel model, string[] answers, TrainingSummary training)
        : base(options, model, training)
    {
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

    // Files written before ImageByteOptions.MaxPixels kept every image's size: keep it for them.
    private static void KeptSizes(JsonObject stage)
    {
        if (stage["image"] is JsonObject image) image.TryAdd("maxPixels", null);
    }

    /// <summary>Reads a stage written by <see cref="IMblmStage.Save"/>.</summary>
    internal static MblmAnswerClassifierTransformer Load(StageReader reader)
    {
        var (options, training, stage) = ReadSettings(reader, RequiredKeys, KeptSizes);
        // The answers are the classes: each short enough for the model to score after the shortest prompt (an empty question and image).
        long context = options.ModelConfig!.MaxContext;
        var answers = LabelCandidates.Read(reader, stage, "answers", context - VqaLayout.Prompt([], []).Length, context);
        return reader.ReadModel(options.ModelConfig!, model => new MblmAnswerClassifierTransformer(options, model, answers, training));
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
    internal (float[] Scores, uint Predicted)[] Score(IReadOnlyList<long[]> prompts) => WithModel(model => _answers.ScoreCached(model, prompts));
}
