using System.Text.Json.Nodes;
using Mblm.Inference;
using Mblm.MLNet.Classification;
using Mblm.Model;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.Text;

/// <summary>
/// A trained MBLM text classifier: adds <c>Score</c> (Vector&lt;Single, K&gt;: probabilities over the K classes, slot names =
/// the classes) and <c>PredictedLabel</c> (Key&lt;UInt32, K&gt; with the classes as key values, the label's key type). With
/// the pooled head (the default objective) one forward per row gives the K probabilities; with label likelihood every
/// class is scored by the model's log-likelihood of its name after the row's bytes, normalised with a softmax over the
/// classes. A row longer than the model's context fails with an error naming the option. Thread-safe;
/// save with <c>mlContext.Mblm().SaveModel</c>.
/// </summary>
public sealed class MblmTextClassifierTransformer : MblmTransformerBase<MblmTextClassifierTrainer.Options>, IRowStage<byte[], TextOutput>,
    ICheckedAtLoad
{
    /// <summary>The stage kind in a pipeline file.</summary>
    internal const string StageKind = "text-classifier";
    /// <summary>
    /// The layout of its <c>stage.json</c>: the options, <c>classes</c>, <c>training</c>. Version 2 adds the classifier
    /// options (<c>objective</c>, …) and, for the pooled head, the entry <c>head.safetensors</c>; a version 1 stage is read
    /// as label likelihood (the only objective then).
    /// </summary>
    internal const int StageVersion = 2;

    // Prompts up to this many tokens are scored with every class in one batched forward; longer ones decode the prompt
    // once and step through the classes (ContinuationScorer). Both give the same probabilities up to rounding.
    private const int BatchedPromptTokens = 256;
    private const int SamplesPerForward = 512;

    private readonly LabelCandidates _classes;

    internal MblmTextClassifierTransformer(MblmTextClassifierTrainer.Options options, MblmModel model, string[] classes, TrainingSummary training,
        PooledClassifierHead? head)
        : base(options, model, training, head)
    {
        _classes = new LabelCandidates(classes);
        if ((head is not null) != (options.Objective == MblmClassifierObjective.PooledHead))
            throw new ArgumentException($"a {options.Objective} text classifier {(head is null ? "needs" : "has no use for")} a pooled head", nameof(head));
    }

    /// <summary>The classes, in key order (key k is Classes[k-1]).</summary>
    public IReadOnlyList<string> Classes => _classes.Labels;

    private protected override string Kind => StageKind;

    private protected override int Version => StageVersion;

    private protected override void WriteFields(JsonObject stage) => stage["classes"] = StageWriter.ToNode(Classes);

    /// <summary>The keys of <c>stage.json</c> since layout version 1 (its non-null options, <c>classes</c> and <c>training</c>).</summary>
    private static readonly string[] RequiredKeys =
        ["labelColumnName", "textColumnName", "scoreColumnName", "predictedLabelColumnName", "scoringBatchSize", "classes", "training"];

    /// <summary>Reads a stage written by <see cref="IMblmStage.Save"/>.</summary>
    internal static MblmTextClassifierTransformer Load(StageReader reader)
    {
        var (options, training, stage) = ReadSettings(reader, RequiredKeys, reader.UpgradeClassifierLayout);
        long context = options.ModelConfig!.MaxContext;
        var classes = LabelCandidates.Read(reader, stage, "classes", context - TextClassifierLayout.PromptLength(0, options.Alignment), context);
        return reader.ReadClassifier(options, classes.Length, "classes", (model, head) => new MblmTextClassifierTransformer(options, model, classes, training, head));
    }

    (string Entry, string Problem)? ICheckedAtLoad.ProblemAtLoad(DataViewSchema input) => _classes.ProblemAtLoad(input, Options.LabelColumnName, "classes");

    IReadOnlyList<DataViewSchema.Column> IRowStage<byte[], TextOutput>.Sources(DataViewSchema input) =>
        [ByteColumn.Check(input, Options.TextColumnName, role: "text")];

    IReadOnlyList<AddedColumnInfo> IRowStage<byte[], TextOutput>.Added =>
        Options.FeaturesColumnName is { } features
            ? [.. _classes.Columns(Options.ScoreColumnName, Options.PredictedLabelColumnName),
                new AddedColumnInfo(features, new VectorDataViewType(NumberDataViewType.Single, (int)Model.PooledWidth), null)]
            : _classes.Columns(Options.ScoreColumnName, Options.PredictedLabelColumnName);

    int IRowStage<byte[], TextOutput>.BatchSize => Options.ScoringBatchSize;

    Func<byte[]> IRowStage<byte[], TextOutput>.Reader(DataViewRow row, IReadOnlyList<DataViewSchema.Column> sources) =>
        ByteColumn.Reader(row, sources[0]);

    TextOutput[] IRowStage<byte[], TextOutput>.Compute(IReadOnlyList<byte[]> rows, bool[] active) =>
        active.Length > 2 && active[2] && Head is { } head
            ? ScorePooled(rows, head, ModelConfig.MaxContext, features: true)
            : Score(rows).Select(r => new TextOutput(r.Scores, r.Predicted, null)).ToArray();

    Delegate IRowStage<byte[], TextOutput>.Getter(int added, Func<TextOutput> current) => added switch
    {
        0 => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> v) => RowStages.Copy(current().Scores, ref v)),
        1 => (ValueGetter<uint>)((ref uint v) => v = current().Predicted),
        _ => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> v) => RowStages.Copy(current().Features!, ref v)),
    };

    /// <summary>Probabilities over <see cref="Classes"/> and the predicted key (1-based) for each text's bytes.</summary>
    /// <exception cref="InvalidDataException">A text too long for the model's context with the longest class.</exception>
    public (float[] Scores, uint Predicted)[] Score(IReadOnlyList<byte[]> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        long context = ModelConfig.MaxContext;
        if (Head is { } head) return ScorePooled(texts, head, context, features: false).Select(r => (r.Scores, r.Predicted)).ToArray();
        var prompts = new long[texts.Count][];
        for (int i = 0; i < texts.Count; i++)
        {
            long tokens = TextClassifierLayout.PromptLength(texts[i].Length, Options.Alignment) + _classes.LongestSegment;
            if (tokens > context)
                throw new InvalidDataException($"a row of column '{Options.TextColumnName}' has {texts[i].Length} bytes; with the longest class it takes {tokens} tokens, " +
                    $"more than the model's context of {context} (MblmTextClassifierTrainer.Options.ModelConfig, or when it is null the context sized to the training rows: use a config " +
                        $"with a longer context, or shorten the texts)");
            prompts[i] = TextClassifierLayout.Prompt(texts[i], Options.Alignment);
        }
        if (prompts.Length == 0) return [];
        bool batched = prompts.Max(p => p.Length) <= BatchedPromptTokens;
        return WithModel(model => batched ? _classes.ScoreBatched(model, prompts, SamplesPerForward) : _classes.ScoreCached(model, prompts));
    }

    private TextOutput[] ScorePooled(IReadOnlyList<byte[]> texts, PooledClassifierHead head, long context, bool features)
    {
        var rows = new long[texts.Count][];
        for (int i = 0; i < texts.Count; i++)
        {
            if (texts[i].Length > context)
                throw new InvalidDataException($"a row of column '{Options.TextColumnName}' has {texts[i].Length} bytes, more than the model's context of {context} " +
                    "(MblmTextClassifierTrainer.Options.ModelConfig, or when it is null the context sized to the training rows: use a config with a longer context, " +
                    "or shorten the texts)");
            rows[i] = TextClassifierLayout.PooledIds(texts[i]);
        }
        var (probabilities, pooled) = WithModel(model => features
            ? PooledClassScorer.ProbabilitiesAndFeatures(model, head, rows, Options.ScoringBatchSize)
            : (PooledClassScorer.Probabilities(model, head, rows, Options.ScoringBatchSize), null!));
        return probabilities.Select((p, i) => new TextOutput(p, (uint)(Array.IndexOf(p, p.Max()) + 1), pooled?[i])).ToArray();
    }
}

/// <summary>A text classifier's outputs for one row: probabilities, predicted key and (when asked for) pooled features.</summary>
internal readonly record struct TextOutput(float[] Scores, uint Predicted, float[]? Features);
