using Mblm.Config;
using Mblm.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.Tests;

public sealed class LabelledText
{
    public string Text { get; set; } = "";
    public string Kind { get; set; } = "";
}

public sealed class LabelledBytes
{
    [VectorType]
    public byte[] Text { get; set; } = [];
    public string Kind { get; set; } = "";
}

public sealed class TextPrediction
{
    public float[] Score { get; set; } = [];
    public string PredictedKind { get; set; } = "";
}

/// <summary>The MBLM text classifier: ML.NET's multiclass workflow (Evaluate, CrossValidate, MapKeyToValue, PredictionEngine, SaveModel/LoadModel), byte-vector input,
/// transfer and its errors.</summary>
[TestClass]
public sealed class TextClassifierTests
{
    // 4 classes told apart by their alphabet: an easy task a tiny model learns in a few dozen steps.
    private static readonly (string Kind, string Alphabet)[] Kinds =
        [("digits", "0123456789"), ("vowels", "aeiou"), ("upper", "BCDFGHJKLMNPQRSTVWXZ"), ("symbols", "+-*/=<>!?%&")];

    internal static LabelledText[] Rows(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ =>
        {
            var (kind, alphabet) = Kinds[rng.Next(Kinds.Length)];
            var text = new string(Enumerable.Range(0, rng.Next(3, 12)).Select(_ => alphabet[rng.Next(alphabet.Length)]).ToArray());
            return new LabelledText { Text = text, Kind = kind };
        }).ToArray();
    }

    private static readonly MblmConfig TinyText = VisionTests.TinyVqa;

    internal static MblmTextClassifierTrainer.Options TinyOptions => new()
    {
        ModelConfig = TinyText, MaxSteps = 40, BatchSize = 8, LearningRate = 1e-2, MaxEpochs = 100,
    };

    private static IEstimator<ITransformer> Pipeline(MLContext ml, MblmTextClassifierTrainer.Options options) =>
        ml.Transforms.Conversion.MapValueToKey("Label", "Kind")
            .Append(ml.MulticlassClassification.Trainers.MblmTextClassifier(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedKind", "PredictedLabel"));

    [TestMethod]
    public void FitsAndEvaluates_WellAboveChance_WithSlotNamesAndKeys()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Rows(96, seed: 1));
        var testRows = Rows(40, seed: 2);
        var model = Pipeline(ml, TinyOptions with { MaxSteps = 120 }).Fit(train);
        using var owner = (IDisposable)model;
        var scored = model.Transform(ml.Data.LoadFromEnumerable(testRows));
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        Assert.IsTrue(metrics.MicroAccuracy >= 0.8, $"accuracy {metrics.MicroAccuracy:F2} (chance 0.25)");
        Assert.IsTrue(metrics.LogLoss < Math.Log(4), $"log-loss {metrics.LogLoss:F3} below the uniform guess's {Math.Log(4):F3}");

        var classifier = (MblmTextClassifierTransformer)((IEnumerable<ITransformer>)model).ElementAt(1);
        var keyValues = new[] { "digits", "vowels", "upper", "symbols" }.Where(k => testRows.Concat(Rows(96, 1)).Any(r => r.Kind == k)).ToArray();
        VBuffer<ReadOnlyMemory<char>> slots = default;
        scored.Schema["Score"].GetSlotNames(ref slots);
        var slotNames = slots.DenseValues().Select(v => v.ToString()).ToArray();
        CollectionAssert.AreEqual(classifier.Classes.ToArray(), slotNames);
        CollectionAssert.AreEquivalent(keyValues, slotNames);
        Assert.AreEqual(scored.Schema["Label"].Type, scored.Schema["PredictedLabel"].Type, "PredictedLabel has the label's key type");

        var scores = scored.GetColumn<float[]>("Score").ToArray();
        var predicted = scored.GetColumn<string>("PredictedKind").ToArray();
        for (int i = 0; i < scores.Length; i++)
        {
            Assert.AreEqual(1.0, scores[i].Sum(), 1e-4);
            Assert.AreEqual(slotNames[Array.IndexOf(scores[i], scores[i].Max())], predicted[i], "PredictedLabel = argmax of Score, mapped back to its name");
        }
    }

    [TestMethod]
    public void SaveLoad_GivesIdenticalScores_AndPredictionEngineAgrees()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows(32, seed: 3));
        var test = ml.Data.LoadFromEnumerable(Rows(12, seed: 4));
        string path = Path.Combine(Path.GetTempPath(), $"mblm-textclf-{Guid.NewGuid():N}.zip");
        var model = Pipeline(ml, TinyOptions with { MaxSteps = 4 }).Fit(data);
        try
        {
            ml.Mblm().SaveModel(model, data.Schema, path);
            var ml2 = new MLContext();
            using var loaded = (TransformerChain<ITransformer>)ml2.Mblm().LoadModel(path, out var schema);
            var fitted = (MblmTextClassifierTransformer)((IEnumerable<ITransformer>)model).ElementAt(1);
            var reloaded = (MblmTextClassifierTransformer)loaded.ElementAt(1);
            Assert.AreEqual(MLNetPersistenceTests.Describe(fitted.Options, TinyText), MLNetPersistenceTests.Describe(reloaded.Options, TinyText), "every option survives the file");
            CollectionAssert.AreEqual(fitted.Classes.ToArray(), reloaded.Classes.ToArray());
            var before = model.Transform(test).GetColumn<float[]>("Score").ToArray();
            var after = loaded.Transform(test).GetColumn<float[]>("Score").ToArray();
            for (int i = 0; i < before.Length; i++) CollectionAssert.AreEqual(before[i], after[i], $"row {i}");

            using var engine = ml2.Model.CreatePredictionEngine<LabelledText, TextPrediction>(loaded, new PredictionEngineOptions { OwnsTransformer = false });
            var rows = ml.Data.CreateEnumerable<LabelledText>(test, false).ToArray();
            var names = model.Transform(test).GetColumn<string>("PredictedKind").ToArray();
            for (int i = 0; i < rows.Length; i++)
            {
                var p = engine.Predict(rows[i]);
                Assert.AreEqual(names[i], p.PredictedKind);
                for (int c = 0; c < p.Score.Length; c++) Assert.AreEqual(before[i][c], p.Score[c], 1e-5, "one row at a time scores as the batch does");
            }
        }
        finally { File.Delete(path); ((IDisposable)model).Dispose(); }
    }

    [TestMethod]
    public void EditedClasses_AreRefusedAtLoad()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Rows(16, seed: 11));
        string path = Path.Combine(Path.GetTempPath(), $"mblm-textclf-{Guid.NewGuid():N}.zip");
        using (var model = (IDisposable)Pipeline(ml, TinyOptions with { MaxSteps = 1 }).Fit(data))
            ml.Mblm().SaveModel((ITransformer)model, data.Schema, path);
        var edits = new List<string>();
        try
        {
            Loads(path);
            foreach (var (classes, expected) in new (System.Text.Json.Nodes.JsonNode, string)[]
                     {
                         (new System.Text.Json.Nodes.JsonArray(), "'classes' is empty"),
                         (System.Text.Json.Nodes.JsonNode.Parse("""["digits", "digits"]""")!, "'classes' lists 'digits' twice"),
                         (System.Text.Json.Nodes.JsonNode.Parse("""["a", "b", "c", "d"]""")!, "'classes' (4) differ from the key values (4) of the label column 'Label'"),
                     })
            {
                string edited = PipelineHardeningTests.EditedJson(path, "stages/001/stage.json", s => s["classes"] = classes);
                edits.Add(edited);
                var e = PipelineHardeningTests.Refused(edited, "stages/001/stage.json");
                StringAssert.Contains(e.Message, expected);
            }
        }
        finally { File.Delete(path); foreach (var f in edits) File.Delete(f); }
    }

    private static void Loads(string path)
    {
        using var model = (IDisposable)new MLContext().Mblm().LoadModel(path, out _);
    }

    [TestMethod]
    public void CrossValidate_RunsEveryFold()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(ml.Data.LoadFromEnumerable(Rows(64, seed: 5)))
            .Transform(ml.Data.LoadFromEnumerable(Rows(64, seed: 5)));
        var folds = ml.MulticlassClassification.CrossValidate(data, ml.MulticlassClassification.Trainers.MblmTextClassifier(TinyOptions with { MaxSteps = 100 }), numberOfFolds: 2);
        Assert.AreEqual(2, folds.Count);
        foreach (var fold in folds)
        {
            Assert.IsTrue(fold.Metrics.MicroAccuracy > 0.5, $"fold {fold.Fold}: accuracy {fold.Metrics.MicroAccuracy:F2} (chance 0.25)");
            ((IDisposable)fold.Model).Dispose();
        }
    }

    [TestMethod]
    public void ByteVectorInput_ScoresAsTheSameText()
    {
        var ml = new MLContext(seed: 1);
        var rows = Rows(16, seed: 6);
        var textData = ml.Data.LoadFromEnumerable(rows);
        var bytesData = ml.Data.LoadFromEnumerable(rows.Select(r => new LabelledBytes { Text = System.Text.Encoding.UTF8.GetBytes(r.Text), Kind = r.Kind }));
        var keys = ml.Transforms.Conversion.MapValueToKey("Label", "Kind");
        using var fromBytes = keys.Append(ml.Mblm().TextClassifier(TinyOptions with { MaxSteps = 3 })).Fit(bytesData);
        var classifier = fromBytes.LastTransformer;
        var viaBytes = fromBytes.Transform(bytesData).GetColumn<float[]>("Score").ToArray();
        var viaText = classifier.Transform(keys.Fit(textData).Transform(textData)).GetColumn<float[]>("Score").ToArray();
        for (int i = 0; i < rows.Length; i++) CollectionAssert.AreEqual(viaBytes[i], viaText[i], $"row {i}");
    }

    [TestMethod]
    public void RowsWithoutALabel_AreSkippedWithAWarning_AndNoLabelledRowAtAllIsAnError()
    {
        var ml = new MLContext(seed: 1);
        var logs = new List<string>();
        ml.Log += (_, e) => { lock (logs) logs.Add(e.Message); };
        var labelled = Rows(16, seed: 3);
        var keys = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(ml.Data.LoadFromEnumerable(labelled));
        // rows whose Kind the key map has never seen get key 0: no label
        var unknown = labelled.Take(3).Select(r => new LabelledText { Text = r.Text, Kind = "unheard-of" }).ToArray();
        var trainer = ml.MulticlassClassification.Trainers.MblmTextClassifier(TinyOptions with { MaxSteps = 1 });
        using (var model = (IDisposable)trainer.Fit(keys.Transform(ml.Data.LoadFromEnumerable(labelled.Concat(unknown)))))
            Assert.IsTrue(logs.Any(l => l.Contains("MBLM text: 3 rows without a label were skipped")), string.Join("\n", logs.Where(l => l.Contains("MBLM"))));
        var e = Assert.ThrowsExactly<ArgumentException>(() => trainer.Fit(keys.Transform(ml.Data.LoadFromEnumerable(unknown))));
        StringAssert.Contains(e.Message, "no training rows with a label in column 'Label'");
    }

    [TestMethod]
    public void TransfersFromASavedLanguageModel()
    {
        var ml = new MLContext(seed: 1);
        string path = MLNetTests.SaveTinyLanguageModel(TinyText with { NumTokens = 257 });
        try
        {
            var logs = new List<string>();
            ml.Log += (_, e) => { lock (logs) logs.Add(e.Message); };
            var data = ml.Data.LoadFromEnumerable(Rows(16, seed: 7));
            using var model = (IDisposable)Pipeline(ml, TinyOptions with { TransferFrom = path, MaxSteps = 1 }).Fit(data);
            Assert.IsTrue(logs.Any(l => l.Contains("MBLM text: transferred") && l.Contains("vocabulary 257 → 260")), string.Join("\n", logs.Where(l => l.Contains("MBLM"))));
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void CatalogDefaults_KeepTheContextsSeedAndLog()
    {
        var defaults = new MLContext().MulticlassClassification.Trainers.MblmTextClassifier().TrainerOptions;
        Assert.IsNull(defaults.ModelConfig, "sized to the data by default");
        Assert.AreEqual(MblmTextClassifierTrainer.Options.DefaultMaxEpochs, defaults.MaxEpochs);
        Assert.AreEqual(("Label", "Text"), (defaults.LabelColumnName, defaults.TextColumnName));
        // Measured per task family: the patch-phase shift helps text and bytes, and costs colour accuracy on images.
        Assert.IsTrue(defaults.RandomPatchShift);
        Assert.IsFalse(new Mblm.MLNet.Vision.MblmAnswerClassifierTrainer.Options().RandomPatchShift);

        float[][] FitAndScore(List<string> logs)
        {
            var ml = new MLContext(seed: 3);
            ml.Log += (_, e) => { if (e.Source.Contains("Mblm")) lock (logs) logs.Add(e.Message); };
            var data = ml.Data.LoadFromEnumerable(Rows(16, seed: 8));
            // 4 steps of 8 over 16 rows: the second epoch reads random spans of the rows, seeded from the context too.
            var trainer = ml.MulticlassClassification.Trainers.MblmTextClassifier(TinyOptions with { MaxSteps = 4 });
            using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Append(trainer).Fit(data);
            return model.Transform(data).GetColumn<float[]>("Score").ToArray();
        }
        var (logsA, logsB) = (new List<string>(), new List<string>());
        var a = FitAndScore(logsA);
        var b = FitAndScore(logsB);
        for (int i = 0; i < a.Length; i++) CollectionAssert.AreEqual(a[i], b[i], "the MLContext's seed reaches a trainer made by the ML.NET catalog");
        Assert.IsTrue(logsA.Any(l => l.Contains("MBLM text: 16 rows")), string.Join("\n", logsA));
    }

    [TestMethod]
    public void ModelConfigNull_SizesTheContextToTwiceTheLongestRow_AndSaysSo()
    {
        var ml = new MLContext(seed: 1);
        var logs = new List<string>();
        ml.Log += (_, e) => { if (e.Source.Contains("Mblm")) lock (logs) logs.Add(e.Message); };
        var rows = Rows(8, seed: 12);
        rows[0].Text = new string('1', 400); // the pooled head reads the 400 bytes as they are
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Kind")
            .Append(ml.Mblm().TextClassifier(new MblmTextClassifierTrainer.Options { MaxSteps = 1 })).Fit(ml.Data.LoadFromEnumerable(rows));
        var classifier = model.LastTransformer;
        Assert.AreEqual(800, classifier.ModelConfig.MaxContext, "twice the longest sample, rounded up to patches of 8");
        CollectionAssert.AreEqual(new[] { 100, 8 }, classifier.ModelConfig.SeqLens.ToArray());
        CollectionAssert.AreEqual(MblmTextClassifierTrainer.BaseModelConfig.HiddenDims.ToArray(), classifier.ModelConfig.HiddenDims.ToArray());
        Assert.IsTrue(logs.Any(l => l.Contains("MBLM text: ModelConfig not set: sized to the data: context 800 tokens")), string.Join("\n", logs));
        // A row longer than any training row still fits the headroom.
        rows[0].Text = new string('1', 700);
        Assert.AreEqual(8, model.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Score").Count());
    }

    [TestMethod]
    public void CheckpointedFit_ResumesInANewContext_ToTheSameScores()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-textclf-ckpt-{Guid.NewGuid():N}");
        try
        {
            var rows = Rows(16, seed: 13);
            // 8 steps of 8 over 16 rows: epochs 1-3 read random spans.
            var options = TinyOptions with { MaxSteps = 8 };
            float[][] FitAndScore(MblmTextClassifierTrainer.Options o)
            {
                var ml = new MLContext(seed: 2);
                var data = ml.Data.LoadFromEnumerable(rows);
                using var model = Pipeline(ml, o).Fit(data) as IDisposable;
                return ((ITransformer)model!).Transform(data).GetColumn<float[]>("Score").ToArray();
            }
            var expected = FitAndScore(options);
            Assert.ThrowsExactly<InvalidOperationException>(() => FitAndScore(options with { CheckpointDirectory = dir, CheckpointEvery = 3, Progress = new StopAt(5) }));
            var resumed = FitAndScore(options with { CheckpointDirectory = dir, CheckpointEvery = 3 });
            for (int i = 0; i < expected.Length; i++) CollectionAssert.AreEqual(expected[i], resumed[i], $"row {i}");
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    private sealed class StopAt(long step) : IProgress<Mblm.Training.TrainingProgress>
    {
        public void Report(Mblm.Training.TrainingProgress p)
        {
            if (p.Warning is null && p.Step == step) throw new InvalidOperationException($"stopped at step {step}");
        }
    }

    [TestMethod]
    public void LabelLikelihood_StillFitsScoresAndSaves_WithoutAHead()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Rows(96, seed: 1));
        var test = ml.Data.LoadFromEnumerable(Rows(40, seed: 2));
        var options = TinyOptions with { MaxSteps = 120, Objective = Mblm.MLNet.Classification.MblmClassifierObjective.LabelLikelihood };
        var model = Pipeline(ml, options).Fit(train);
        string path = Path.Combine(Path.GetTempPath(), $"mblm-textclf-ll-{Guid.NewGuid():N}.zip");
        try
        {
            var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
            Assert.IsTrue(metrics.MicroAccuracy >= 0.8, $"accuracy {metrics.MicroAccuracy:F2} (chance 0.25)");
            ml.Mblm().SaveModel(model, train.Schema, path);
            using (var zip = System.IO.Compression.ZipFile.OpenRead(path))
                Assert.IsFalse(zip.Entries.Any(e => e.Name == "head.safetensors"), "label likelihood has no head");
            using var loaded = (TransformerChain<ITransformer>)new MLContext().Mblm().LoadModel(path, out _);
            Assert.AreEqual(options.Objective, ((MblmTextClassifierTransformer)loaded.ElementAt(1)).Options.Objective);
            var before = model.Transform(test).GetColumn<float[]>("Score").ToArray();
            var after = loaded.Transform(test).GetColumn<float[]>("Score").ToArray();
            for (int i = 0; i < before.Length; i++) CollectionAssert.AreEqual(before[i], after[i], $"row {i}");
        }
        finally { File.Delete(path); ((IDisposable)model).Dispose(); }
    }

    [TestMethod]
    public void FeaturesColumn_JoinsFeaturizeTextInAHybridPipeline_AndSurvivesSaveLoad()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Rows(96, seed: 1));
        var test = ml.Data.LoadFromEnumerable(Rows(40, seed: 2));
        var options = TinyOptions with { MaxSteps = 60, FeaturesColumnName = "MblmFeatures", ScoreColumnName = "MblmScore", PredictedLabelColumnName = "MblmLabel" };
        long width = TinyText.HiddenDims[0] + 2L * TinyText.HiddenDims[^1];
        var classifier = ml.MulticlassClassification.Trainers.MblmTextClassifier(options);
        var hybrid = ml.Transforms.Conversion.MapValueToKey("Label", "Kind")
            .Append(classifier)
            .Append(ml.Transforms.Text.FeaturizeText("TextFeatures", "Text"))
            .Append(ml.Transforms.Concatenate("Features", "TextFeatures", "MblmFeatures"))
            .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(labelColumnName: "Label", featureColumnName: "Features"));
        var shape = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Append(classifier).GetOutputSchema(MLNetTests.ShapeOf<LabelledText>(ml));
        var column = shape.Single(c => c.Name == "MblmFeatures");
        Assert.AreEqual(SchemaShape.Column.VectorKind.Vector, column.Kind);
        Assert.AreEqual(NumberDataViewType.Single, column.ItemType);
        var model = hybrid.Fit(train);
        string path = Path.Combine(Path.GetTempPath(), $"mblm-textclf-hybrid-{Guid.NewGuid():N}.zip");
        try
        {
            var scored = model.Transform(test);
            Assert.AreEqual(new VectorDataViewType(NumberDataViewType.Single, (int)width), scored.Schema["MblmFeatures"].Type);
            var features = scored.GetColumn<float[]>("MblmFeatures").ToArray();
            var fitted = (MblmTextClassifierTransformer)((IEnumerable<ITransformer>)model).ElementAt(1);
            var texts = ml.Data.CreateEnumerable<LabelledText>(test, false).Select(r => System.Text.Encoding.UTF8.GetBytes(r.Text).Select(b => (long)b).ToArray()).ToList();
            var direct = Mblm.Inference.PooledClassScorer.Features(fitted.Model, texts, batchSize: 5);
            for (int i = 0; i < features.Length; i++)
                for (int j = 0; j < width; j++) Assert.AreEqual(direct[i][j], features[i][j], 1e-5, $"row {i} feature {j}: the pooled features");
            var metrics = ml.MulticlassClassification.Evaluate(scored, labelColumnName: "Label");
            Assert.IsTrue(metrics.MicroAccuracy >= 0.8, $"hybrid accuracy {metrics.MicroAccuracy:F2}");
            ml.Mblm().SaveModel(model, train.Schema, path);
            using var loaded = (TransformerChain<ITransformer>)new MLContext().Mblm().LoadModel(path, out _);
            var again = loaded.Transform(test).GetColumn<float[]>("MblmFeatures").ToArray();
            for (int i = 0; i < features.Length; i++) CollectionAssert.AreEqual(features[i], again[i], $"row {i} after load");
        }
        finally { File.Delete(path); ((IDisposable)model).Dispose(); }
    }

    [TestMethod]
    public void AValidationSplit_StopsEarly_AndKeepsTheBestWeights()
    {
        var ml = new MLContext(seed: 1);
        var logs = new List<string>();
        ml.Log += (_, e) => { if (e.Source.Contains("Mblm")) lock (logs) logs.Add(e.Message); };
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-stop-{Guid.NewGuid():N}");
        var options = TinyOptions with { MaxSteps = null, MaxEpochs = 40, ValidationFraction = 0.25, EarlyStoppingPatience = 2, CheckpointDirectory = dir };
        var pipeline = Pipeline(ml, options);
        var data = ml.Data.LoadFromEnumerable(Rows(120, seed: 5));
        try
        {
            var model = pipeline.Fit(data);
            using var owner = (IDisposable)model;
            var classifier = (MblmTextClassifierTransformer)((IEnumerable<ITransformer>)model).ElementAt(1);
            string log = string.Join("\n", logs);
            StringAssert.Contains(log, "rows held out to validate");
            Assert.IsNotNull(classifier.Training.BestStep, log);
            Assert.IsNotNull(classifier.Training.ValidationLoss, log);
            Assert.IsTrue(classifier.Training.BestStep <= classifier.Training.Steps);
            Assert.IsTrue(classifier.Training.Steps < 40 * 12, $"90 training rows in batches of 8 for 40 epochs would be 480 steps; it stopped at {classifier.Training.Steps}; {log}");

            // Fit again over the finished run's checkpoints: nothing more is trained, and the best epoch's weights come back.
            var again = pipeline.Fit(data);
            using var againOwner = (IDisposable)again;
            var resumed = (MblmTextClassifierTransformer)((IEnumerable<ITransformer>)again).ElementAt(1);
            Assert.AreEqual((classifier.Training.Steps, classifier.Training.BestStep), (resumed.Training.Steps, resumed.Training.BestStep));
            Assert.AreEqual(classifier.Training.ValidationLoss!.Value, resumed.Training.ValidationLoss!.Value, 1e-9);
            var test = ml.Data.LoadFromEnumerable(Rows(30, seed: 6));
            var first = model.Transform(test).GetColumn<float[]>("Score").ToArray();
            var second = again.Transform(test).GetColumn<float[]>("Score").ToArray();
            for (int i = 0; i < first.Length; i++) CollectionAssert.AreEqual(first[i], second[i], $"row {i}");
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void BadOptionsAndColumns_AreNamed()
    {
        var ml = new MLContext();
        var trainers = ml.MulticlassClassification.Trainers;
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { ModelConfig = MLNetTests.Tiny }));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.ModelConfig needs num_tokens >= 260");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { MaxEpochs = 0 }));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.MaxEpochs must be positive");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { TransferFrom = "/nonexistent/lm.zip" }));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.TransferFrom names a file that does not exist");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { TextLossWeight = 2 }));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.TextLossWeight must be in [0, 1] (got 2)");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { ScoreColumnName = "PredictedLabel" }));
        StringAssert.Contains(e.Message, "output column names must differ");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { FeaturesColumnName = "Score" }));
        StringAssert.Contains(e.Message, "output column names must differ");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with
        {
            FeaturesColumnName = "F", Objective = Mblm.MLNet.Classification.MblmClassifierObjective.LabelLikelihood,
        }));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.FeaturesColumnName needs Objective PooledHead");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { Dropout = 1 }));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.Dropout must be in [0, 1) (got 1)");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { ValidationFraction = 0.5 }));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.ValidationFraction must be in [0, 0.5)");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { LabelSmoothing = -0.1 }));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.LabelSmoothing must be in [0, 1)");

        var data = ml.Data.LoadFromEnumerable(Rows(8, seed: 9));
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { LabelColumnName = "Kind" }).Fit(data));
        StringAssert.Contains(e.Message, "Schema mismatch for label column 'Kind': expected Key<UInt32>");
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(data).Transform(data);
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { TextColumnName = "Body" }).Fit(keyed));
        StringAssert.Contains(e.Message, "Could not find text column 'Body'");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainers.MblmTextClassifier(TinyOptions with { TextColumnName = "Label" }).Fit(keyed));
        StringAssert.Contains(e.Message, "Schema mismatch for text column 'Label': expected Text or Vector<Byte>");
    }

    [TestMethod]
    public void RowsLongerThanTheContext_AreErrorsNamingTheRowAndTheOption()
    {
        var ml = new MLContext(seed: 1);
        var rows = Rows(6, seed: 10);
        rows[3].Text = new string('7', 600); // TinyText's context is 512 tokens
        var e = Assert.ThrowsExactly<ArgumentException>(() => Pipeline(ml, TinyOptions with { MaxSteps = 1 }).Fit(ml.Data.LoadFromEnumerable(rows)));
        StringAssert.Matches(e.Message, new System.Text.RegularExpressions.Regex("row 3 of the training data gives a sample of 6[0-9][0-9] tokens, more than the model's context of 512"));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.ModelConfig has a context of 512 tokens; shorten the texts of column 'Text'");
        // Sized to the data (ModelConfig null): refused above the cap, naming it.
        rows[3].Text = new string('7', 5000);
        e = Assert.ThrowsExactly<ArgumentException>(() => Pipeline(ml, TinyOptions with { ModelConfig = null, MaxSteps = 1 }).Fit(ml.Data.LoadFromEnumerable(rows)));
        StringAssert.Matches(e.Message, new System.Text.RegularExpressions.Regex("row 3 of the training data gives a sample of 50[0-9][0-9] tokens, more than the model's context of 4096"));
        StringAssert.Contains(e.Message, "MblmTextClassifierTrainer.Options.MaxAutoContext");

        rows[3].Text = "123";
        using var model = (IDisposable)Pipeline(ml, TinyOptions with { MaxSteps = 1 }).Fit(ml.Data.LoadFromEnumerable(rows));
        rows[3].Text = new string('7', 600);
        var scored = ((ITransformer)model).Transform(ml.Data.LoadFromEnumerable(rows));
        var t = Assert.ThrowsExactly<InvalidDataException>(() => scored.GetColumn<float[]>("Score").ToArray());
        StringAssert.Contains(t.Message, "a row of column 'Text' has 600 bytes");
        StringAssert.Contains(t.Message, "MblmTextClassifierTrainer.Options.ModelConfig");
    }
}
