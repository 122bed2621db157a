using System.Text;
using Mblm.Config;
using Mblm.Inference;
using Mblm.MLNet;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.Tests;

public sealed class TextRow
{
    public string Text { get; set; } = "";
}

public sealed class LabeledText
{
    public string Text { get; set; } = "";
    public bool Label { get; set; }
}

public sealed class BytesRow
{
    [VectorType]
    public byte[] Bytes { get; set; } = [];
}

public sealed class NumberRow
{
    public float Text { get; set; }
}

public sealed class LmOutput
{
    public string Text { get; set; } = "";
    public float BitsPerByte { get; set; }
    [VectorType(16)]
    public float[] Features { get; set; } = [];
    public string Completion { get; set; } = "";
}

/// <summary>The ML.NET language-model stage: schema, Fit, Transform, PredictionEngine, Evaluate, persistence, threads, seeds.</summary>
[TestClass]
public sealed class MLNetTests
{
    // 64 bytes of context: rows longer than that are scored in windows.
    internal static readonly MblmConfig Tiny = TestData.Cfg([32, 16], [16, 4], [TestData.T(heads: 2, headDim: 8, pos: PosEmbType.None), TestData.T(heads: 2, headDim: 8)]);

    internal static readonly string[] Corpus = Enumerable.Range(0, 40).Select(i =>
        $"Row {i}: the quick brown fox jumps over the lazy dog while {i % 7} cats sleep."
            + (i % 5 == 0 ? " Ünïcödé ✓ and a much longer tail that needs more than one window of sixty-four bytes to score." : "")).ToArray();

    private static MblmLanguageModelTransformer? _shared;

    internal static MblmLanguageModelTrainer.Options TinyOptions(int maxNewBytes = 8) => new()
    {
        ModelConfig = Tiny,
        MaxSteps = 25,
        BatchSize = 8,
        LearningRate = 5e-3,
        MaxNewBytes = maxNewBytes,
        ScoringBatchSize = 4,
    };

    /// <summary>
    /// A language-model pipeline over <see cref="Corpus"/> with <paramref name="config"/> (2 steps), saved to a new temp
    /// file whose path is returned (the caller deletes it): a source for <c>TransferFrom</c>.
    /// </summary>
    internal static string SaveTinyLanguageModel(MblmConfig config)
    {
        var ml = new MLContext(seed: 1);
        var text = Data(ml, Corpus);
        string path = Path.Combine(Path.GetTempPath(), $"mblm-lm-{Guid.NewGuid():N}.zip");
        using (var lm = ml.Mblm().LanguageModel(TinyOptions(0) with { ModelConfig = config, MaxSteps = 2 }).Fit(text))
            ml.Mblm().SaveModel(lm, text.Schema, path);
        return path;
    }

    private static IDataView Data(MLContext ml, IEnumerable<string> rows) => ml.Data.LoadFromEnumerable(rows.Select(t => new TextRow { Text = t }).ToList());

    /// <summary>One model fitted once for the read-only tests.</summary>
    private static MblmLanguageModelTransformer Shared()
    {
        if (_shared is not null) return _shared;
        var ml = new MLContext(seed: 1);
        return _shared = ml.Mblm().LanguageModel(TinyOptions()).Fit(Data(ml, Corpus));
    }

    [ClassCleanup]
    public static void Cleanup() => _shared?.Dispose();

    private sealed class NoColumns { }

    // SchemaShape.Create is internal to ML.NET: a never-fitted CustomMapping adds TRow's columns to an empty shape.
    internal static SchemaShape ShapeOf<TRow>(MLContext ml) where TRow : class, new() =>
        ml.Transforms.CustomMapping<NoColumns, TRow>((_, _) => { }, null).GetOutputSchema(new SchemaShape(Array.Empty<SchemaShape.Column>()));

    private static float[] Bpb(MLContext ml, ITransformer model, IDataView data, string column = "BitsPerByte") =>
        model.Transform(data).GetColumn<float>(column).ToArray();

    [TestMethod]
    public void EstimatorSchema_EqualsTransformerSchema_AndIsExact()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, Corpus);
        var estimator = ml.Mblm().LanguageModel(TinyOptions());
        var shape = estimator.GetOutputSchema(ShapeOf<TextRow>(ml));
        var transformer = Shared();
        var schema = transformer.GetOutputSchema(data.Schema);
        Assert.AreEqual("Single", schema["BitsPerByte"].Type.ToString());
        Assert.AreEqual(NumberDataViewType.Single, schema["BitsPerByte"].Type);
        Assert.IsInstanceOfType<VectorDataViewType>(schema["Features"].Type);
        Assert.AreEqual(16, ((VectorDataViewType)schema["Features"].Type).Size);
        Assert.AreEqual(TextDataViewType.Instance, schema["Completion"].Type);
        Assert.AreEqual(TextDataViewType.Instance, schema["Text"].Type);
        var names = shape.Select(c => c.Name).OrderBy(n => n).ToArray();
        CollectionAssert.AreEqual(schema.Where(c => !c.IsHidden).Select(c => c.Name).OrderBy(n => n).ToArray(), names);
        var f = shape.Single(c => c.Name == "Features");
        Assert.AreEqual(SchemaShape.Column.VectorKind.Vector, f.Kind);
        Assert.AreEqual(NumberDataViewType.Single, f.ItemType);
        // The transformed data view says the same as GetOutputSchema.
        var transformed = transformer.Transform(data).Schema;
        CollectionAssert.AreEqual(schema.Select(c => $"{c.Name}:{c.Type}").ToArray(), transformed.Select(c => $"{c.Name}:{c.Type}").ToArray());
        // Without MaxNewBytes there is no completion column.
        var noCompletion = ml.Mblm().LanguageModel(TinyOptions(maxNewBytes: 0)).GetOutputSchema(ShapeOf<TextRow>(ml));
        Assert.IsFalse(noCompletion.Any(c => c.Name == "Completion"));
    }

    [TestMethod]
    public void SchemaErrors_NameTheColumn()
    {
        var ml = new MLContext(seed: 1);
        var numbers = ml.Data.LoadFromEnumerable(new[] { new NumberRow { Text = 1 } });
        var text = Data(ml, Corpus);
        var est = ml.Mblm().LanguageModel(TinyOptions());

        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => est.Fit(numbers));
        StringAssert.Contains(e.Message, "Schema mismatch for input column 'Text': expected Text or Vector<Byte>, got Single");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => est.GetOutputSchema(ShapeOf<NumberRow>(ml)));
        StringAssert.Contains(e.Message, "Schema mismatch for input column 'Text'");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Mblm().LanguageModel("Body").Fit(text));
        StringAssert.Contains(e.Message, "Could not find input column 'Body'");
        // In a chain, the schema check happens before anything is fitted.
        var chain = ml.Transforms.CopyColumns("Copy", "Text").Append(ml.Mblm().LanguageModel("Missing"));
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => chain.Fit(text));
        StringAssert.Contains(e.Message, "'Missing'");
        // The fitted transformer checks the data it is given.
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Shared().Transform(numbers));
        StringAssert.Contains(e.Message, "expected Text or Vector<Byte>, got Single");
    }

    [TestMethod]
    public void BadOptions_NameTheOption()
    {
        var ml = new MLContext();
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Mblm().LanguageModel(TinyOptions() with { BatchSize = 0 }));
        Assert.AreEqual("BatchSize", e.ParamName);
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Mblm().LanguageModel(TinyOptions() with { ModelConfig = Tiny with { NumTokens = 256, PadTokenId = 0 } }));
        Assert.AreEqual("ModelConfig", e.ParamName);
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Mblm().LanguageModel(TinyOptions() with { FeaturesColumnName = "BitsPerByte" }));
        StringAssert.Contains(e.Message, "must differ");
        var empty = Data(ml, ["", ""]);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => ml.Mblm().LanguageModel(TinyOptions()).Fit(empty));
        StringAssert.Contains(ex.Message, "no bytes in column 'Text'");
    }

    [TestMethod]
    public void DocumentScorer_PackingWindowsByPositionBudget_GivesTheSameScores()
    {
        var model = Shared();
        var docs = Corpus.Take(20).Select(Encoding.UTF8.GetBytes).Append(new byte[200]).ToList();
        var one = new DocumentScorer(model.Model, batchSize: 1).Score(docs, features: true);
        foreach (var scorer in new[]
                 {
                     new DocumentScorer(model.Model, batchSize: 64),                          // default budget: 16 windows
                     new DocumentScorer(model.Model, batchSize: 64, tokensPerForward: 100),  // below one window: one window per forward
                     new DocumentScorer(model.Model, batchSize: 7, tokensPerForward: 300),
                 })
        {
            Assert.IsTrue(scorer.TokensPerForward >= scorer.WindowLength);
            var packed = scorer.Score(docs, features: true);
            for (int i = 0; i < docs.Count; i++)
            {
                Assert.AreEqual(one[i].Nats, packed[i].Nats, 1e-3 * Math.Max(1, one[i].Nats), $"doc {i}");
                for (int j = 0; j < one[i].Features!.Length; j++) Assert.AreEqual(one[i].Features![j], packed[i].Features![j], 1e-4, $"doc {i} feature {j}");
            }
        }
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DocumentScorer(model.Model, 4, tokensPerForward: 0));
    }

    [TestMethod]
    public void Transform_ScoresEveryRow_LikeTheModelDirectly()
    {
        var ml = new MLContext(seed: 1);
        var model = Shared();
        var rows = Corpus.Take(12).Append("").Append("x").ToArray();
        var scored = model.Transform(Data(ml, rows));
        var bpb = scored.GetColumn<float>("BitsPerByte").ToArray();
        var features = scored.GetColumn<float[]>("Features").ToArray();
        var completions = scored.GetColumn<string>("Completion").ToArray();
        // Independent computation: each window from its start token, every byte once.
        var docs = rows.Select(Encoding.UTF8.GetBytes).ToList();
        var direct = new DocumentScorer(model.Model, batchSize: 1).Score(docs, features: true);
        for (int i = 0; i < rows.Length; i++)
        {
            if (docs[i].Length == 0)
            {
                Assert.IsTrue(float.IsNaN(bpb[i]), "an empty row has no bits per byte");
                Assert.IsTrue(features[i].All(x => x == 0));
                continue;
            }
            Assert.AreEqual(direct[i].BitsPerByte, bpb[i], 1e-4, $"row {i}");
            Assert.AreEqual(16, features[i].Length);
            for (int j = 0; j < 16; j++) Assert.AreEqual(direct[i].Features![j], features[i][j], 1e-4, $"row {i} feature {j}");
            Assert.IsTrue(Encoding.UTF8.GetByteCount(completions[i]) <= 8 * 3, "at most 8 bytes (each may decode to U+FFFD)");
        }
        // A long row: the byte-weighted mean of its 64-byte windows scored one by one.
        var longRow = docs.First(d => d.Length > 64);
        int idx = docs.IndexOf(longRow);
        double nats = 0;
        for (int off = 0; off < longRow.Length; off += 64)
        {
            var window = longRow.Skip(off).Take(64).ToArray();
            var s = new DocumentScorer(model.Model).Score([window], false)[0];
            nats += s.Nats;
        }
        Assert.AreEqual(nats / longRow.Length * Evaluator.Log2E, bpb[idx], 1e-4);
        // Trained: far below the 8 bits of a uniform guess.
        Assert.IsTrue(bpb.Where(float.IsFinite).Average() < 6.5, $"mean bpb {bpb.Where(float.IsFinite).Average()}");
    }

    [TestMethod]
    public void ByteVectorColumn_ScoresLikeTheSameText()
    {
        var ml = new MLContext(seed: 1);
        var model = Shared();
        var rows = Corpus.Take(6).ToArray();
        var viaText = Bpb(ml, model, Data(ml, rows));
        var bytes = ml.Data.LoadFromEnumerable(rows.Select(r => new BytesRow { Bytes = Encoding.UTF8.GetBytes(r) }).ToList(),
            SchemaDefinitionFor(rows.Max(r => Encoding.UTF8.GetByteCount(r))));
        // The stage is bound to "Text": rename the byte column.
        var renamed = ml.Transforms.CopyColumns("Text", "Bytes").Fit(bytes).Transform(bytes);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.Transform(bytes));
        var viaBytes = Bpb(ml, model, renamed);
        for (int i = 0; i < rows.Length; i++) Assert.AreEqual(viaText[i], viaBytes[i], 1e-5);
    }

    // Variable-length byte vectors.
    private static SchemaDefinition SchemaDefinitionFor(int _)
    {
        var def = SchemaDefinition.Create(typeof(BytesRow));
        def["Bytes"].ColumnType = new VectorDataViewType(NumberDataViewType.Byte);
        return def;
    }

    [TestMethod]
    public void PredictionEngine_EqualsBatchTransform_RowByRow()
    {
        var ml = new MLContext(seed: 1);
        var model = Shared();
        var rows = Corpus.Take(9).ToArray();
        var batch = model.Transform(Data(ml, rows));
        var bpb = batch.GetColumn<float>("BitsPerByte").ToArray();
        var feats = batch.GetColumn<float[]>("Features").ToArray();
        var completions = batch.GetColumn<string>("Completion").ToArray();
        using var engine = ml.Model.CreatePredictionEngine<TextRow, LmOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
        for (int i = 0; i < rows.Length; i++)
        {
            var p = engine.Predict(new TextRow { Text = rows[i] });
            Assert.AreEqual(bpb[i], p.BitsPerByte, 1e-4, $"row {i}");
            for (int j = 0; j < 16; j++) Assert.AreEqual(feats[i][j], p.Features[j], 1e-4);
            Assert.AreEqual(completions[i], p.Completion, "greedy completions agree");
        }
    }

    [TestMethod]
    public void Predictions_LeaveNoLiveTensorsBehind()
    {
        var ml = new MLContext(seed: 1);
        var model = Shared();
        var rows = Corpus.Take(6).ToArray();
        using var engine = ml.Model.CreatePredictionEngine<TextRow, LmOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
        void Work()
        {
            foreach (var r in rows) engine.Predict(new TextRow { Text = r });
            _ = model.Transform(Data(ml, rows)).GetColumn<float[]>("Features").ToArray();
            _ = model.Complete("the quick", 5);
        }
        Work(); // warm-up
        long before = TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        for (int i = 0; i < 5; i++) Work();
        long after = TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        Assert.AreEqual(before, after, "live tensors on this thread after 5 more rounds of predictions");
    }

    [TestMethod]
    public void ConcurrentUse_GivesTheSameResultsAsSequential()
    {
        var ml = new MLContext(seed: 1);
        var model = Shared();
        var rows = Corpus.Take(16).ToArray();
        var expected = Bpb(ml, model, Data(ml, rows));
        var results = new float[8][];
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, t =>
        {
            if (t % 2 == 0)
            {
                results[t] = Bpb(ml, model, Data(ml, rows));
            }
            else
            {
                using var engine = ml.Model.CreatePredictionEngine<TextRow, LmOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
                results[t] = rows.Select(r => engine.Predict(new TextRow { Text = r }).BitsPerByte).ToArray();
            }
        });
        foreach (var r in results)
            for (int i = 0; i < rows.Length; i++) Assert.AreEqual(expected[i], r[i], 1e-4);
    }

    [TestMethod]
    public void ConcurrentUse_NoCallWaitsForAnother()
    {
        // While one thread is inside a model call, a PredictionEngine on another thread must get its prediction: with a
        // lock around every forward (as before), it would wait for the first call and this would time out.
        var ml = new MLContext(seed: 1);
        var model = Shared();
        float expected = Bpb(ml, model, Data(ml, ["to be or not"]))[0];
        float? other = model.UseModel(_ =>
        {
            var task = Task.Run(() =>
            {
                using var engine = ml.Model.CreatePredictionEngine<TextRow, LmOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
                return engine.Predict(new TextRow { Text = "to be or not" }).BitsPerByte;
            });
            return task.Wait(TimeSpan.FromSeconds(60)) ? task.Result : (float?)null;
        });
        Assert.IsNotNull(other, "a prediction on another thread waited for the model call in flight");
        Assert.AreEqual(expected, other.Value, 1e-5f);
    }

    [TestMethod]
    public void Dispose_WaitsForCallsInFlight_ThenRefusesNewOnes()
    {
        var ml = new MLContext(seed: 1);
        var model = ml.Mblm().LanguageModel(TinyOptions(0) with { MaxSteps = 1 }).Fit(Data(ml, Corpus));
        using var inside = new ManualResetEventSlim();
        int finished = 0;
        var call = Task.Run(() => model.UseModel(m =>
        {
            inside.Set();
            Thread.Sleep(300);
            int count = m.parameters().Count();
            Volatile.Write(ref finished, 1); // the call's last step: the task itself completes a moment after the call returns
            return count;
        }));
        inside.Wait();
        model.Dispose(); // must wait for the call: it still reads the weights
        Assert.AreEqual(1, Volatile.Read(ref finished), "Dispose returned while a model call was in flight");
        Assert.IsTrue(call.Result > 0);
        Assert.ThrowsExactly<ObjectDisposedException>(() => model.UseModel(_ => 0));
    }

    [TestMethod]
    public void Evaluate_IsByteWeighted()
    {
        var ml = new MLContext(seed: 1);
        var rows = Corpus.Take(10).Append("").ToArray();
        var scored = Shared().Transform(Data(ml, rows));
        var metrics = ml.Mblm().Evaluate(scored);
        var bpb = scored.GetColumn<float>("BitsPerByte").ToArray();
        var n = rows.Select(r => Encoding.UTF8.GetByteCount(r)).ToArray();
        double want = Enumerable.Range(0, rows.Length).Where(i => n[i] > 0).Sum(i => (double)bpb[i] * n[i]) / n.Sum();
        Assert.AreEqual(want, metrics.BitsPerByte, 1e-9);
        Assert.AreEqual(Math.Pow(2, want), metrics.Perplexity, 1e-9);
        Assert.AreEqual(11, metrics.RowCount);
        Assert.AreEqual(n.Sum(), metrics.ByteCount);
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Mblm().Evaluate(Data(ml, rows)));
        StringAssert.Contains(e.Message, "'BitsPerByte'");
    }

    [TestMethod]
    public void Fit_IsDeterministicForASeed_LogsToMLContext_AndReportsProgress()
    {
        var data = Corpus.Take(16).ToArray();
        float[] Run(int seed, List<string>? log = null, List<TrainingProgress>? progress = null)
        {
            var ml = new MLContext(seed: seed);
            if (log is not null) ml.Log += (_, e) => { lock (log) log.Add(e.Message); };
            var options = TinyOptions(0) with { MaxSteps = 6, Progress = progress is null ? null : new SyncProgress(progress.Add) };
            using var model = ml.Mblm().LanguageModel(options).Fit(Data(ml, data));
            Assert.AreEqual(6, model.Training.Steps);
            return Bpb(ml, model, Data(ml, data));
        }
        var log = new List<string>();
        var progress = new List<TrainingProgress>();
        var a = Run(7, log, progress);
        var b = Run(7);
        var c = Run(8);
        CollectionAssert.AreEqual(a, b, "same MLContext seed, same model");
        CollectionAssert.AreNotEqual(a, c, "another seed, another model");
        Assert.IsTrue(log.Any(m => m.Contains("MBLM: 16 rows")), string.Join("\n", log));
        Assert.IsTrue(log.Any(m => m.Contains("step 6/6")), string.Join("\n", log));
        CollectionAssert.AreEqual(new long[] { 1, 2, 3, 4, 5, 6 }, progress.Select(p => p.Step).ToArray());
    }

    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    [TestMethod]
    public void Sweep_StartsFromTheBaseOptions_DrawsFromTheSearchSpace_AndKeepsTheBest()
    {
        var ml = new MLContext(seed: 1);
        var train = Data(ml, Corpus.Take(30));
        var validation = Data(ml, Corpus.Skip(30));
        var baseOptions = TinyOptions(0) with { MaxSteps = 3 };
        var reported = new List<SweepTrial>();
        using var result = ml.Mblm().SweepLanguageModel(train, validation, baseOptions, maxTrials: 3, seed: 5, progress: new SyncProgress<SweepTrial>(reported.Add));
        Assert.AreEqual(3, result.Trials.Count);
        CollectionAssert.AreEqual(result.Trials.Select(t => t.Id).ToArray(), reported.Select(t => t.Id).ToArray());
        var first = result.Trials[0].Options;
        Assert.AreEqual(baseOptions.LearningRate, first.LearningRate);
        Assert.AreEqual(baseOptions.BatchSize, first.BatchSize);
        foreach (var t in result.Trials.Skip(1))
        {
            Assert.IsTrue(t.Options.LearningRate is >= 3e-4 and <= 1e-2, $"lr {t.Options.LearningRate}");
            CollectionAssert.Contains(new[] { 8, 16, 32 }, t.Options.BatchSize);
            Assert.IsTrue(t.Options.MaxEpochs is >= 1 and <= 30);
            Assert.IsTrue(t.Options.WarmupFraction is >= 0 and <= 0.3);
            Assert.AreSame(Tiny, t.Options.ModelConfig, "options without a search space keep the base value");
        }
        Assert.AreNotEqual(result.Trials[1].Options.LearningRate, result.Trials[2].Options.LearningRate);
        Assert.AreEqual(result.Trials.Min(t => t.ValidationBitsPerByte), result.Best.ValidationBitsPerByte);
        Assert.AreEqual(result.Best.ValidationBitsPerByte, ml.Mblm().Evaluate(result.BestModel.Transform(validation)).BitsPerByte, 1e-9);
        // The same seed draws the same trials.
        using var again = ml.Mblm().SweepLanguageModel(train, validation, baseOptions, maxTrials: 2, seed: 5);
        Assert.AreEqual(result.Trials[1].Options.LearningRate, again.Trials[1].Options.LearningRate);
        Assert.AreEqual(result.Trials[1].Options.BatchSize, again.Trials[1].Options.BatchSize);
    }

    [TestMethod]
    public void Sweep_WithACancelledToken_StopsWithinAStepOfTheRunningTrial()
    {
        var ml = new MLContext(seed: 1);
        var train = Data(ml, Corpus.Take(30));
        var validation = Data(ml, Corpus.Skip(30));
        using var cts = new CancellationTokenSource();
        long lastStep = 0;
        // Trial 0 would take 50 steps: the token is cancelled at its step 2, so no later step and no second trial run.
        var baseOptions = TinyOptions(0) with
        {
            MaxSteps = 50,
            Progress = new SyncProgress(p => { lastStep = p.Step; if (p.Step == 2) cts.Cancel(); }),
        };
        var trials = new List<SweepTrial>();
        var e = Assert.ThrowsExactly<OperationCanceledException>(() =>
            ml.Mblm().SweepLanguageModel(train, validation, baseOptions, maxTrials: 3, seed: 5, progress: new SyncProgress<SweepTrial>(trials.Add),
                cancellationToken: cts.Token));
        StringAssert.Contains(e.Message, "cancellation token");
        Assert.AreEqual(2L, lastStep);
        Assert.AreEqual(0, trials.Count);
        // Cancelled before the start: nothing runs.
        Assert.ThrowsExactly<OperationCanceledException>(() =>
            ml.Mblm().SweepLanguageModel(train, validation, TinyOptions(0), maxTrials: 1, cancellationToken: cts.Token));
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    [TestMethod]
    public void ValidationSet_IsScoredAfterTraining()
    {
        var ml = new MLContext(seed: 2);
        var options = TinyOptions(0) with { MaxSteps = 4, ValidationSet = Data(ml, Corpus.Skip(30)) };
        using var model = ml.Mblm().LanguageModel(options).Fit(Data(ml, Corpus.Take(30)));
        Assert.IsNotNull(model.Training.ValidationBitsPerByte);
        var metrics = ml.Mblm().Evaluate(model.Transform(Data(ml, Corpus.Skip(30))));
        Assert.AreEqual(metrics.BitsPerByte, model.Training.ValidationBitsPerByte!.Value, 1e-3, "the trainer's validation = Evaluate on the same rows");
        Assert.IsNull(model.Options.ValidationSet, "the transformer does not keep the data");
    }

    [TestMethod]
    public void GpuDeviceId_WithoutCuda_AndNoFallback_Throws()
    {
        if (TorchSharp.torch.cuda.is_available())
        {
            // With a GPU the same request must land on it.
            var gpu = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
            using var onGpu = gpu.Mblm().LanguageModel(TinyOptions() with { MaxSteps = 1 }).Fit(Data(gpu, Corpus.Take(4)));
            Assert.AreEqual(TorchSharp.DeviceType.CUDA, onGpu.Model.Device.type);
            return;
        }
        var ml = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Mblm().LanguageModel(TinyOptions() with { MaxSteps = 1 }).Fit(Data(ml, Corpus.Take(4))));
        StringAssert.Contains(e.Message, "FallbackToCpu");
        var fallback = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = true };
        using var model = fallback.Mblm().LanguageModel(TinyOptions() with { MaxSteps = 1 }).Fit(Data(fallback, Corpus.Take(4)));
        Assert.AreEqual(TorchSharp.DeviceType.CPU, model.Model.Device.type);
    }

    [TestMethod]
    public void Features_FeedAStandardTrainer()
    {
        var ml = new MLContext(seed: 1);
        var rows = Enumerable.Range(0, 40).Select(i => new LabeledText { Text = i % 2 == 0 ? $"the fox {i} jumps" : $"ZZZ {i} QQQ!!", Label = i % 2 == 0 }).ToList();
        var data = ml.Data.LoadFromEnumerable(rows);
        var pipeline = ml.Mblm().LanguageModel(TinyOptions(0) with { MaxSteps = 5 })
            .Append(ml.Transforms.NormalizeMinMax("Features"))
            .Append(ml.BinaryClassification.Trainers.SdcaLogisticRegression("Label", "Features"));
        var model = pipeline.Fit(data);
        var metrics = ml.BinaryClassification.Evaluate(model.Transform(data));
        Assert.IsTrue(metrics.Accuracy > 0.9, $"accuracy {metrics.Accuracy}");
        model.Dispose();
    }
}
