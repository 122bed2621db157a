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

    private readonly long[][] _answerSegments;
    private readonly ImageByteOptions _image;

    internal MblmAnswerClassifierTransformer(MblmAnswerClassifierTrainer.Options options, MblmModel model, string[] answers, TrainingSummary training)
        : base(options, model, training)
    {
        Answers = answers;
        _image = Options.ImageOptions;
        _answerSegments = answers.Select(a => VqaLayout.Answer(VqaLayout.Utf8(a))).ToArray();
    }

    /// <summary>The candidate answers, in key order (key k is Answers[k-1]).</summary>
    public IReadOnlyList<string> Answers { get; }

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
        var answers = reader.Read<string[]>(stage["answers"], "answers");
        CheckAnswers(reader, answers, options.ModelConfig!);
        return reader.ReadModel(options.ModelConfig!, model => new MblmAnswerClassifierTransformer(options, model, answers, training));
    }

    // The answers are the classes: at least one, none null or repeated, and each short enough for the model to score after
    // the shortest prompt (an empty question and image).
    private static void CheckAnswers(StageReader reader, string[] answers, Config.MblmConfig config)
    {
        MblmFormatException Bad(string problem) => reader.Invalid(StageEntries.Stage, $"'answers' {problem}");
        if (answers.Length == 0) throw Bad("is empty: a classifier needs at least one answer");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        long room = config.MaxContext - VqaLayout.Prompt([], []).Length;
        for (int i = 0; i < answers.Length; i++)
        {
            string? a = answers[i];
            if (a is null) throw Bad($"[{i}] is null");
            if (!seen.Add(a)) throw Bad($"lists '{(a.Length <= 40 ? a : a[..40] + "…")}' twice (at [{i}])");
            long tokens = VqaLayout.Answer(VqaLayout.Utf8(a)).Length;
            if (tokens > room) throw Bad($"[{i}] takes {tokens} tokens; after the shortest prompt the model's context of {config.MaxContext} leaves {room}");
        }
    }

    // The answers are the label's key values at training; where the saved input schema yields the label column, they must
    // still be (an edited stage.json, or a stage from another pipeline, would predict keys of other answers).
    (string Entry, string Problem)? ICheckedAtLoad.ProblemAtLoad(DataViewSchema input)
    {
        if (input.GetColumnOrNull(Options.LabelColumnName) is not { Type: KeyDataViewType } label
            || label.Annotations.Schema.GetColumnOrNull("KeyValues")?.Type is not VectorDataViewType { ItemType: TextDataViewType }) return null;
        var keys = VqaColumns.KeyValues(label);
        if (keys.SequenceEqual(Answers)) return null;
        int at = Enumerable.Range(0, Math.Min(keys.Length, Answers.Count)).FirstOrDefault(i => keys[i] != Answers[i], Math.Min(keys.Length, Answers.Count));
        return (StageEntries.Stage, $"'answers' ({Answers.Count}) differ from the key values ({keys.Length}) of the label column '{Options.LabelColumnName}' " +
                                    $"the stages before produce, from position {at} on: the stage does not belong to this pipeline");
    }

    IReadOnlyList<DataViewSchema.Column> IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>.Sources(DataViewSchema input)
    {
        var (image, question) = VqaColumns.CheckInputs(input, Options);
        return [image, question];
    }

    IReadOnlyList<AddedColumnInfo> IRowStage<(byte[] Question, byte[] Image), (float[] Scores, uint Predicted)>.Added
    {
        get
        {
            int k = Answers.Count;
            var names = new VBuffer<ReadOnlyMemory<char>>(k, Answers.Select(a => a.AsMemory()).ToArray());
            ValueGetter<VBuffer<ReadOnlyMemory<char>>> getNames = (ref VBuffer<ReadOnlyMemory<char>> v) => names.CopyTo(ref v);
            var score = new DataViewSchema.Annotations.Builder();
            score.Add("SlotNames", new VectorDataViewType(TextDataViewType.Instance, k), getNames);
            score.Add("ScoreColumnKind", TextDataViewType.Instance, (ref ReadOnlyMemory<char> v) => v = "MulticlassClassification".AsMemory());
            score.Add("ScoreValueKind", TextDataViewType.Instance, (ref ReadOnlyMemory<char> v) => v = "Score".AsMemory());
            var predicted = new DataViewSchema.Annotations.Builder();
            predicted.Add("KeyValues", new VectorDataViewType(TextDataViewType.Instance, k), getNames);
            return
            [
                new AddedColumnInfo(Options.ScoreColumnName, new VectorDataViewType(NumberDataViewType.Single, k), score.ToAnnotations()),
                new AddedColumnInfo(Options.PredictedLabelColumnName, new KeyDataViewType(typeof(uint), k), predicted.ToAnnotations()),
            ];
        }
    }

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
        int k = _answerSegments.Length;
        return WithModel(model =>
        {
            var result = new (float[], uint)[prompts.Count];
            for (int r = 0; r < prompts.Count; r++)
            {
                var logp = ContinuationScorer.LogLikelihoods(model, prompts[r], _answerSegments);
                double max = logp.Max();
                var e = logp.Select(x => Math.Exp(x - max)).ToArray();
                double sum = e.Sum();
                var probs = e.Select(x => (float)(x / sum)).ToArray();
                uint best = 0;
                for (int c = 1; c < k; c++) if (logp[c] > logp[best]) best = (uint)c;
                result[r] = (probs, best + 1);
            }
            return result;
        });
    }
}
