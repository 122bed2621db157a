using System.Text;
using System.Text.Json.Nodes;
using Mblm.Config;
using Mblm.Generation;
using Mblm.Inference;
using Mblm.Model;
using Mblm.Weights;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.LanguageModel;

/// <summary>
/// A trained MBLM as an ML.NET transformer: adds bits per byte, a feature vector and (optionally) a completion for the
/// input column of every row. Batch <see cref="MblmTransformerBase{TOptions}.Transform"/> scores rows
/// <see cref="MblmTrainingOptions.ScoringBatchSize"/> at a time; <see cref="MblmTransformerBase{TOptions}.GetRowToRowMapper"/> (used by PredictionEngine) scores one row
/// at a time. Safe to use from several
/// threads (calls into the model are serialised). Save it with <c>mlContext.Mblm().SaveModel</c>; <c>mlContext.Model.Save</c>
/// cannot store third-party weights and throws <see cref="NotSupportedException"/>.
/// </summary>
public sealed class MblmLanguageModelTransformer : MblmTransformerBase<MblmLanguageModelTrainer.Options>, IRowStage<byte[], RowResult>
{
    /// <summary>The stage kind in a pipeline file.</summary>
    internal const string StageKind = "language-model";
    /// <summary>The layout of its <c>stage.json</c>: the options, <c>training</c>.</summary>
    internal const int StageVersion = 1;

    private readonly DocumentScorer _scorer;

    internal MblmLanguageModelTransformer(MblmLanguageModelTrainer.Options options, MblmModel model, TrainingSummary training)
        : base(options, model, training)
    {
        _scorer = new DocumentScorer(model, Options.ScoringBatchSize);
        Columns = LanguageModelColumns.For(Options);
    }

    internal IReadOnlyList<AddedColumn> Columns { get; }

    private protected override string Kind => StageKind;

    private protected override int Version => StageVersion;

    /// <summary>The keys of <c>stage.json</c> since layout version 1 (its non-null options and <c>training</c>).</summary>
    private static readonly string[] RequiredKeys =
        ["inputColumnName", "bitsPerByteColumnName", "featuresColumnName", "completionColumnName", "maxNewBytes", "sampling", "scoringBatchSize", "training"];

    /// <summary>Reads a stage written by <see cref="IMblmStage.Save"/>.</summary>
    internal static MblmLanguageModelTransformer Load(StageReader reader)
    {
        var (options, training, _) = ReadSettings(reader, RequiredKeys, LeftOutMeansNull);
        return reader.ReadModel(options.ModelConfig!, model => new MblmLanguageModelTransformer(options, model, training));
    }

    // The first writers of this stage left null options out of stage.json; of those, only GradientClipping has a
    // non-null default (today's writers always write it).
    private static void LeftOutMeansNull(JsonObject stage) => stage.TryAdd("gradientClipping", null);

    // ---- IRowStage: how the shared data view and row mapper drive this stage ----

    IReadOnlyList<DataViewSchema.Column> IRowStage<byte[], RowResult>.Sources(DataViewSchema input) => [ByteColumn.Check(input, Options.InputColumnName)];

    IReadOnlyList<AddedColumnInfo> IRowStage<byte[], RowResult>.Added => Columns.Select(c => new AddedColumnInfo(c.Name, c.Type, null)).ToList();

    int IRowStage<byte[], RowResult>.BatchSize => Options.ScoringBatchSize;

    Func<byte[]> IRowStage<byte[], RowResult>.Reader(DataViewRow row, IReadOnlyList<DataViewSchema.Column> sources) => ByteColumn.Reader(row, sources[0]);

    RowResult[] IRowStage<byte[], RowResult>.Compute(IReadOnlyList<byte[]> rows, bool[] active)
    {
        bool Needs(OutputKind kind) => Columns.Where((c, i) => active[i] && c.Kind == kind).Any();
        return Compute(rows, Needs(OutputKind.BitsPerByte), Needs(OutputKind.Features), Needs(OutputKind.Completion));
    }

    Delegate IRowStage<byte[], RowResult>.Getter(int added, Func<RowResult> current) => Columns[added].Kind switch
    {
        OutputKind.BitsPerByte => (ValueGetter<float>)((ref float v) => v = current().BitsPerByte),
        OutputKind.Features => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> v) => RowStages.Copy(current().Features!, ref v)),
        _ => (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = current().Completion.AsMemory()),
    };

    /// <summary>Generates a continuation of <paramref name="prompt"/> with this model's sampling options.</summary>
    public string Complete(string prompt, int? maxNewBytes = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var limit = maxNewBytes ?? (Options.MaxNewBytes > 0 ? Options.MaxNewBytes : 128);
        if (limit is < 0 or > MblmLanguageModelTrainer.Options.MaxNewBytesLimit)
            throw new ArgumentOutOfRangeException(nameof(maxNewBytes), limit, $"must be in 0..{MblmLanguageModelTrainer.Options.MaxNewBytesLimit}");
        return Compute([Encoding.UTF8.GetBytes(prompt)], scores: false, features: false, completion: true, limit)[0].Completion!;
    }

    /// <summary>
    /// Writes this model for the Python reference, to continue training it there (for example on GPUs with PyTorch's
    /// distributed trainer): <c>dir/config.yaml</c>, the reference's training YAML, and <c>dir/model.pth</c>,
    /// <c>{"MODEL": state_dict, "LOSS": None}</c> (<see cref="ModelExport.ExportReference"/>). Without
    /// <paramref name="settings"/>, the <c>train</c> section takes this stage's batch size, learning rate, warm-up fraction
    /// and gradient clipping, and everything else the defaults of <see cref="ReferenceTrainingSettings"/>. Files are
    /// written atomically; returns their paths. With <paramref name="resume"/> the YAML also points the reference's trainer at
    /// <c>dir/model.pth</c> (see <see cref="ModelExport.ExportReference"/>). The reference's trained checkpoints come back
    /// through <see cref="MblmLanguageModelTrainer.Options.InitialWeights"/> or
    /// <see cref="Mblm.Weights.ModelWeights.Load(TorchSharp.torch.nn.Module, string, bool)"/>.
    /// </summary>
    public IReadOnlyList<string> ExportReference(string dir, ReferenceTrainingSettings? settings = null, bool resume = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        settings ??= new ReferenceTrainingSettings
        {
            BatchSize = Options.BatchSize,
            LearningRate = Options.LearningRate,
            WarmupStepsPerc = Options.WarmupFraction,
            GradientClipping = Options.GradientClipping,
        };
        return WithModel(model => ModelExport.ExportReference(model, dir, settings, resume: resume));
    }

    /// <summary>Results for a batch of rows; only the parts asked for are computed.</summary>
    internal RowResult[] Compute(IReadOnlyList<byte[]> rows, bool scores, bool features, bool completion, int? maxNewBytes = null)
    {
        return WithModel(model =>
        {
            var results = new RowResult[rows.Count];
            DocumentScore[]? s = scores || features ? _scorer.Score(rows, features) : null;
            string[]? c = completion ? Generate(model, rows, maxNewBytes ?? Options.MaxNewBytes) : null;
            for (int i = 0; i < rows.Count; i++)
                results[i] = new RowResult((float)(s?[i].BitsPerByte ?? double.NaN), s?[i].Features, c?[i]);
            return results;
        });
    }

    // Each prompt keeps its newest bytes that leave room in the context for the continuation.
    private string[] Generate(MblmModel model, IReadOnlyList<byte[]> rows, int maxNewBytes)
    {
        long context = ModelConfig.MaxContext;
        long keep = Math.Max(1, context - Math.Min(maxNewBytes, context / 2));
        var prompts = rows.Select(r => r.Skip((int)Math.Max(0, r.Length - keep)).Select(b => (long)b).ToArray()).ToList();
        var sampling = Options.Sampling with { MaxNewTokens = maxNewBytes, Overflow = ContextOverflow.SlidingWindow };
        // A cancelled MLContext stops generation within one byte (OperationCanceledException), not at the end of the batch.
        using var watch = WatchHost();
        GenerationResult[] generated;
        try
        {
            generated = new MblmGenerator(model).Generate(prompts, sampling, watch.Token);
        }
        catch (OperationCanceledException e) when (watch.Token.IsCancellationRequested)
        {
            throw new OperationCanceledException("Operation was cancelled (MLContext.CancelExecution) while generating completions.", e);
        }
        var utf8 = new UTF8Encoding(false, false);
        return generated.Select(g => utf8.GetString(g.Tokens.Where(t => t is >= 0 and < 256).Select(t => (byte)t).ToArray())).ToArray();
    }
}

/// <summary>The outputs of one row.</summary>
internal readonly record struct RowResult(float BitsPerByte, float[]? Features, string? Completion);
