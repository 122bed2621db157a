using Mblm.Config;
using Mblm.MLNet;
using Mblm.MLNet.Vision;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.Tests;

/// <summary>Workflows around Fit: models sized to the data, resumable Fit.</summary>
[TestClass]
public sealed class MLNetWorkflowTests
{
    private static IDataView Data(MLContext ml, IEnumerable<string> rows) => ml.Data.LoadFromEnumerable(rows.Select(t => new TextRow { Text = t }).ToList());

    private static string NewDir() => Path.Combine(Path.GetTempPath(), $"mblm-fit-{Guid.NewGuid():N}");

    private sealed class KillAt(long step) : IProgress<TrainingProgress>
    {
        public bool Killed { get; private set; }
        public void Report(TrainingProgress p)
        {
            if (Killed || p.Warning is not null || p.Step != step) return;
            Killed = true;
            throw new InvalidOperationException($"killed at step {step}");
        }
    }

    private static void AssertSameWeights(Mblm.Model.MblmModel expected, Mblm.Model.MblmModel actual)
    {
        var a = expected.state_dict();
        var b = actual.state_dict();
        Assert.AreEqual(a.Count, b.Count);
        foreach (var (name, t) in b)
            Assert.IsTrue(a[name].eq(t).all().item<bool>(), $"{name} differs");
    }

    // ---- sizing ----

    [TestMethod]
    public void ContextSizing_RoundsTheLongestSampleUpToThePatchGrid_WithinTheCap()
    {
        var small = MblmPresets.Small; // patches of 8
        Assert.AreEqual(8, ContextSizing.For(0, small, 512).MaxContext, "at least one patch");
        Assert.AreEqual(8, ContextSizing.For(1, small, 512).MaxContext);
        Assert.AreEqual(8, ContextSizing.For(8, small, 512).MaxContext);
        Assert.AreEqual(16, ContextSizing.For(9, small, 512).MaxContext);
        Assert.AreEqual(2376, ContextSizing.For(2370, MblmPresets.SmallVqa, 4096).MaxContext);
        CollectionAssert.AreEqual(new[] { 297, 8 }, ContextSizing.For(2370, MblmPresets.SmallVqa, 4096).SeqLens.ToArray());
        Assert.AreEqual(512, ContextSizing.For(100_000, small, 512).MaxContext, "longer samples: the cap");
        Assert.AreEqual(504, ContextSizing.For(100_000, small, 510).MaxContext, "a cap off the grid is rounded down");
        // Everything but the global patch count is the preset's.
        var sized = ContextSizing.For(100, small, 512);
        Assert.AreEqual(ConfigWriter.ToJson(small with { SeqLens = [13, 8] }), ConfigWriter.ToJson(sized));
        Assert.AreEqual(small.CountParameters(), sized.CountParameters(), "rotary positions: no weight depends on the context");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ContextSizing.For(-1, small, 512));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ContextSizing.For(10, small, 4));
    }

    [TestMethod]
    public void LanguageModel_WithoutModelConfig_SizesItsContextToTheData_AndSaysSo()
    {
        var ml = new MLContext(seed: 1);
        var logs = new List<string>();
        ml.Log += (_, e) => { if (e.Message.Contains("MBLM")) lock (logs) logs.Add(e.Message); };
        var rows = new[] { "short row", "a somewhat longer row of thirty-one", "x" };
        var options = new MblmLanguageModelTrainer.Options { MaxSteps = 1 };
        Assert.IsNull(options.ModelConfig, "the default is sized to the data");
        using var lm = ml.Mblm().LanguageModel(options).Fit(Data(ml, rows));
        Assert.AreEqual(40, lm.ModelConfig.MaxContext, "35 bytes rounded up to whole patches of 8");
        Assert.AreEqual(ConfigWriter.ToJson(MblmPresets.Small with { SeqLens = [5, 8] }), ConfigWriter.ToJson(lm.ModelConfig));
        Assert.AreSame(lm.ModelConfig, lm.Options.ModelConfig, "the transformer keeps the concrete config");
        Assert.IsTrue(logs.Any(l => l.Contains("sized to the data: context 40 tokens (seq_lens [5, 8], patches of 8)") && l.Contains("parameters")), string.Join("\n", logs));

        // Rows longer than the cap are cut into windows of the cap.
        string longRow = string.Concat(Enumerable.Repeat("abcdefghij", 60)); // 600 bytes
        using var windowed = ml.Mblm().LanguageModel(options).Fit(Data(ml, [longRow, "short"]));
        Assert.AreEqual(MblmLanguageModelTrainer.Options.MaxAutoContext, windowed.ModelConfig.MaxContext);
        Assert.IsTrue(logs.Any(l => l.Contains("in 3 windows of at most 512 bytes")), string.Join("\n", logs));
    }

    [TestMethod]
    public void AnswerClassifier_WithoutModelConfig_RefusesASampleLongerThanTheCap_NamingTheRowAndTheOption()
    {
        string dir = NewDir();
        Directory.CreateDirectory(dir);
        try
        {
            var ml = new MLContext(seed: 1);
            var rows = VqaDefaultsTests.Scenes(dir, 3, seed: 5);
            var data = ml.Data.LoadFromEnumerable(rows);
            var keys = ml.Transforms.Conversion.MapValueToKey("Label", "Answer");
            // Images kept at 64×48 (9,216 bytes): no sample fits the cap of 4,096.
            var big = ml.Transforms.LoadImages("Image", dir, "Path").Append(ml.Transforms.ResizeImages("Image", 64, 48)).Append(keys)
                .Append(ml.Mblm().AnswerClassifier(new MblmAnswerClassifierTrainer.Options { MaxSteps = 1, Image = new() { MaxPixels = null } }));
            var e = Assert.ThrowsExactly<ArgumentException>(() => big.Fit(data));
            StringAssert.Matches(e.Message, new System.Text.RegularExpressions.Regex(@"^row \d of the training data gives a sample of 92\d\d tokens, more than the model's context of 4096"));
            StringAssert.Contains(e.Message, "MblmAnswerClassifierTrainer.Options.MaxAutoContext");
            StringAssert.Contains(e.Message, "ResizeWidth/ResizeHeight");
            // A config set by hand that is too short: the message names ModelConfig.
            var shortConfig = new MblmAnswerClassifierTrainer.Options { MaxSteps = 1, ModelConfig = MblmPresets.SmallVqa };
            var small = ml.Transforms.LoadImages("Image", dir, "Path").Append(keys).Append(ml.Mblm().AnswerClassifier(shortConfig with { Image = new() { ResizeWidth = 40, ResizeHeight = 30 } }));
            e = Assert.ThrowsExactly<ArgumentException>(() => small.Fit(data));
            StringAssert.Contains(e.Message, "MblmAnswerClassifierTrainer.Options.ModelConfig has a context of 2048 tokens");
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void Images_AreDownscaledToMaxPixels_UnlessASizeIsGiven()
    {
        Assert.AreEqual((16, 12), ImageBytes.Bounded(32, 24, ImageByteOptions.DefaultMaxPixels));
        Assert.AreEqual((16, 12), ImageBytes.Bounded(64, 48, 192));
        Assert.AreEqual((10, 10), ImageBytes.Bounded(10, 10, 192), "small images keep their size");
        Assert.AreEqual((64, 48), ImageBytes.Bounded(64, 48, null));
        Assert.AreEqual((2, 1), ImageBytes.Bounded(4000, 1, 2), "never below one pixel, never above the limit");
        Assert.AreEqual((1, 3), ImageBytes.Bounded(1, 4000, 3));
        Assert.AreEqual((1, 1), ImageBytes.Bounded(7, 5, 1));
        var image = new RgbImage(32, 24, new byte[3 * 32 * 24]);
        Assert.AreEqual(3 * 16 * 12, ImageBytes.Encode(image, new ImageByteOptions()).Length);
        Assert.AreEqual(3 * 32 * 24, ImageBytes.Encode(image, new ImageByteOptions { MaxPixels = null }).Length);
        Assert.AreEqual(3 * 20 * 20, ImageBytes.Encode(image, new ImageByteOptions { ResizeWidth = 20, ResizeHeight = 20 }).Length, "an explicit size wins");
    }

    // ---- resumable Fit ----

    // MLContext.CancelExecution() is internal in Microsoft.ML (AutoML and Microsoft.ML.Experimental call it): reached here as they do.
    private static void CancelExecution(MLContext ml) =>
        typeof(MLContext).GetMethod("CancelExecution", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic)!
            .Invoke(ml, null);

    private sealed class CancelAt(MLContext ml, long step) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress p)
        {
            if (p.Warning is null && p.Step == step) CancelExecution(ml);
        }
    }

    [TestMethod]
    public void LanguageModel_FitOfACancelledContext_StopsWithinAStep_AndResumesToTheSameModel()
    {
        string dir = NewDir();
        try
        {
            var options = MLNetTests.TinyOptions(0) with { MaxSteps = 8, BatchSize = 4 };
            var mlExpected = new MLContext(seed: 5);
            var expectedData = Data(mlExpected, MLNetTests.Corpus);
            using var expected = mlExpected.Mblm().LanguageModel(options).Fit(expectedData);

            // Cancelled after step 3 (no checkpoint is due before step 8): the Fit stops before step 4 and leaves step 3.
            var ml = new MLContext(seed: 5);
            var data = Data(ml, MLNetTests.Corpus);
            var e = Assert.ThrowsExactly<OperationCanceledException>(() =>
                ml.Mblm().LanguageModel(options with { CheckpointDirectory = dir, CheckpointEvery = 100, Progress = new CancelAt(ml, 3) }).Fit(data));
            StringAssert.Contains(e.Message, "cancelled");
            StringAssert.Contains(e.Message, dir);
            Assert.AreEqual(3, CheckpointStore.StepOf(CheckpointStore.Newest(dir)!));
            // A cancelled context refuses the next Fit at once.
            Assert.ThrowsExactly<OperationCanceledException>(() => ml.Mblm().LanguageModel(options).Fit(data));

            // The same program again (a fresh context, same seed) resumes from step 3 to the model of an uninterrupted Fit.
            var again = new MLContext(seed: 5);
            var logs = new List<string>();
            again.Log += (_, ev) => { if (ev.Message.Contains("MBLM")) lock (logs) logs.Add(ev.Message); };
            var againData = Data(again, MLNetTests.Corpus); // in the same order as above: the estimator's seed comes after the data's
            using var resumed = again.Mblm().LanguageModel(options with { CheckpointDirectory = dir, CheckpointEvery = 100 }).Fit(againData);
            Assert.IsTrue(logs.Any(l => l.Contains("resumed from the checkpoint of step 3")), string.Join("\n", logs));
            AssertSameWeights(expected.Model, resumed.Model);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void Transform_OfACancelledContext_StopsAtTheNextBatch(bool reloaded)
    {
        var ml = new MLContext(seed: 6);
        var options = MLNetTests.TinyOptions(0) with { MaxSteps = 2, BatchSize = 4, ScoringBatchSize = 2 };
        var data = Data(ml, MLNetTests.Corpus);
        using var fitted = ml.Mblm().LanguageModel(options).Fit(data);
        ITransformer model = fitted;
        string path = Path.Combine(Path.GetTempPath(), $"mblm-cancel-{Guid.NewGuid():N}.zip");
        try
        {
            if (reloaded)
            {
                ml.Mblm().SaveModel(fitted, data.Schema, path);
                ml = new MLContext(seed: 6);
                data = Data(ml, MLNetTests.Corpus);
                model = ml.Mblm().LoadModel(path, out _);
            }
            var scored = model.Transform(data);
            using var cursor = scored.GetRowCursor(scored.Schema);
            var bits = cursor.GetGetter<float>(scored.Schema["BitsPerByte"]);
            float value = 0;
            Assert.IsTrue(cursor.MoveNext());
            bits(ref value);
            CancelExecution(ml);
            Assert.IsTrue(cursor.MoveNext(), "the rest of the batch already scored is served");
            Assert.ThrowsExactly<OperationCanceledException>(() => cursor.MoveNext());
        }
        finally
        {
            if (reloaded) (model as IDisposable)?.Dispose();
            if (File.Exists(path)) File.Delete(path);
        }
    }

    [TestMethod]
    public void CancelledContext_StopsACompletionWithinABatch()
    {
        // 65,536 new bytes take far longer than the test waits; a cancelled context must stop them within a byte or so.
        var ml = new MLContext(seed: 2);
        using var model = ml.Mblm().LanguageModel(MLNetTests.TinyOptions(0) with { MaxSteps = 1 }).Fit(Data(ml, MLNetTests.Corpus));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var generating = Task.Run(() => model.Complete("Row 1: the quick", MblmLanguageModelTrainer.Options.MaxNewBytesLimit));
        Thread.Sleep(300);
        Assert.IsFalse(generating.IsCompleted, "the completion ended before it could be cancelled");
        CancelExecution(ml);
        var e = Assert.ThrowsExactly<AggregateException>(() => generating.Wait(TimeSpan.FromSeconds(20)));
        Assert.IsInstanceOfType<OperationCanceledException>(e.InnerException);
        StringAssert.Contains(e.InnerException!.Message, "while generating completions");
        Assert.IsTrue(clock.Elapsed < TimeSpan.FromSeconds(10), $"stopped after {clock.Elapsed}");
    }

    [TestMethod]
    public void LanguageModel_FitKilledAndStartedAgain_ResumesToTheSameModel()
    {
        string dir = NewDir();
        try
        {
            var options = MLNetTests.TinyOptions(0) with { MaxSteps = 8, BatchSize = 4 };
            // The seed an estimator draws depends on what was created in its MLContext before: the same program draws the same.
            var mlExpected = new MLContext(seed: 3);
            var dataExpected = Data(mlExpected, MLNetTests.Corpus);
            using var expected = mlExpected.Mblm().LanguageModel(options).Fit(dataExpected);
            var ml = new MLContext(seed: 3);
            var data = Data(ml, MLNetTests.Corpus);

            var logs = new List<string>();
            var kill = new KillAt(5);
            ml.Log += (_, e) => { if (e.Message.Contains("MBLM")) lock (logs) logs.Add(e.Message); };
            var estimator = ml.Mblm().LanguageModel(options with { CheckpointDirectory = dir, CheckpointEvery = 2, Progress = kill });
            var killed = Assert.ThrowsExactly<InvalidOperationException>(() => estimator.Fit(data));
            StringAssert.Contains(killed.Message, "killed at step 5");
            Assert.IsNotNull(CheckpointStore.Newest(dir));
            Assert.AreEqual(4, CheckpointStore.StepOf(CheckpointStore.Newest(dir)!));

            // Fit again on the same estimator: it keeps its seed and resumes from step 4.
            using var resumed = estimator.Fit(data);
            Assert.IsTrue(logs.Any(l => l.Contains("resumed from the checkpoint of step 4")), string.Join("\n", logs));
            Assert.AreEqual(8, resumed.Training.Steps);
            Assert.AreEqual(expected.Training.Seed, resumed.Training.Seed);
            Assert.IsNull(resumed.Options.CheckpointDirectory, "the folder is where the fit wrote, not a setting of the model");
            AssertSameWeights(expected.Model, resumed.Model);
            CollectionAssert.AreEqual(expected.Transform(data).GetColumn<float>("BitsPerByte").ToArray(), resumed.Transform(data).GetColumn<float>("BitsPerByte").ToArray());

            // Checkpoints of another run are refused, naming the difference (and only it).
            MblmLanguageModelTransformer FitIn(int seed, MblmLanguageModelTrainer.Options o, IEnumerable<string> rows)
            {
                var c = new MLContext(seed);
                var d = Data(c, rows);
                return c.Mblm().LanguageModel(o with { CheckpointDirectory = dir }).Fit(d);
            }
            var e = Assert.ThrowsExactly<CheckpointMismatchException>(() => FitIn(3, options with { LearningRate = 4e-3 }, MLNetTests.Corpus));
            StringAssert.Contains(e.Message, "trainer.learning_rate is 0.005 in the checkpoint, 0.004 in this run");
            Assert.AreEqual(1, e.Differences.Count, e.Message);
            e = Assert.ThrowsExactly<CheckpointMismatchException>(() => FitIn(3, options, MLNetTests.Corpus.Skip(1)));
            CollectionAssert.AreEqual(new[] { "data.samples", "data.sha256", "data.tokens" }, e.Differences.Select(d => d.Setting).ToArray(), e.Message);
            e = Assert.ThrowsExactly<CheckpointMismatchException>(() => FitIn(4, options, MLNetTests.Corpus));
            CollectionAssert.AreEqual(new[] { "trainer.seed" }, e.Differences.Select(d => d.Setting).ToArray(), e.Message);
            // The same settings in "another process": the finished run is returned as it is.
            using var again = FitIn(3, options, MLNetTests.Corpus);
            AssertSameWeights(expected.Model, again.Model);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void AnswerClassifier_PipelineFitInANewProcess_ResumesToTheSameScores()
    {
        string images = NewDir(), dir = NewDir();
        Directory.CreateDirectory(images);
        try
        {
            var rows = VqaDefaultsTests.Scenes(images, 12, seed: 7);
            var options = VisionTests.TinyOptions with { MaxSteps = 6, BatchSize = 4 };
            (EstimatorChain<MblmAnswerClassifierTransformer> Pipeline, IDataView Data) Setup(MLContext ml, MblmAnswerClassifierTrainer.Options o) =>
                (ml.Transforms.LoadImages("Image", images, "Path").Append(ml.Transforms.Conversion.MapValueToKey("Label", "Answer"))
                    .Append(ml.Mblm().AnswerClassifier(o)), ml.Data.LoadFromEnumerable(rows));

            var (p0, d0) = Setup(new MLContext(seed: 2), options);
            using var expected = p0.Fit(d0);
            var expectedScores = expected.Transform(d0).GetColumn<float[]>("Score").ToArray();

            var (p1, d1) = Setup(new MLContext(seed: 2), options with { CheckpointDirectory = dir, CheckpointEvery = 3, Progress = new KillAt(4) });
            Assert.ThrowsExactly<InvalidOperationException>(() => p1.Fit(d1));
            // "Another process": a new context with the same seed, a new pipeline, the same options and data.
            var (p2, d2) = Setup(new MLContext(seed: 2), options with { CheckpointDirectory = dir, CheckpointEvery = 3 });
            using var resumed = p2.Fit(d2);
            var classifier = resumed.LastTransformer;
            Assert.AreEqual(6, classifier.Training.Steps);
            AssertSameWeights(expected.LastTransformer.Model, classifier.Model);
            var scores = resumed.Transform(d2).GetColumn<float[]>("Score").ToArray();
            for (int i = 0; i < scores.Length; i++) CollectionAssert.AreEqual(expectedScores[i], scores[i]);
        }
        finally
        {
            Directory.Delete(images, true);
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    // ---- cross-validation ----

    [TestMethod]
    public void CrossValidateLanguageModel_FitsAndEvaluatesEveryFold_OverMLNetsSplit()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, MLNetTests.Corpus);
        var options = MLNetTests.TinyOptions(0) with { MaxSteps = 2 };
        var folds = ml.Mblm().CrossValidateLanguageModel(data, options, numberOfFolds: 2, seed: 5);
        try
        {
            Assert.AreEqual(2, folds.Count);
            CollectionAssert.AreEqual(new[] { 0, 1 }, folds.Select(f => f.Fold).ToArray());
            // The folds are ML.NET's split with the same seed: every row is held out exactly once.
            var split = ml.Data.CrossValidationSplit(data, 2, seed: 5);
            long rows = 0;
            for (int k = 0; k < 2; k++)
            {
                var f = folds[k];
                var heldOut = split[k].TestSet.GetColumn<string>("Text").ToArray();
                Assert.AreEqual(heldOut.Length, f.Metrics.RowCount);
                Assert.AreEqual(heldOut.Sum(t => (long)System.Text.Encoding.UTF8.GetByteCount(t)), f.Metrics.ByteCount);
                Assert.AreEqual(ml.Mblm().Evaluate(f.Model.Transform(split[k].TestSet)).BitsPerByte, f.Metrics.BitsPerByte, 1e-9);
                Assert.IsTrue(f.Metrics.BitsPerByte is > 0 and < 12, $"fold {k}: {f.Metrics.BitsPerByte}");
                Assert.AreEqual(2, f.Model.Training.Steps);
                rows += f.Metrics.RowCount;
            }
            Assert.AreEqual(MLNetTests.Corpus.Length, rows);
            Assert.AreNotEqual(folds[0].Metrics.BitsPerByte, folds[1].Metrics.BitsPerByte);
        }
        finally { foreach (var f in folds) f.Model.Dispose(); }
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Mblm().CrossValidateLanguageModel(data, options, numberOfFolds: 1));
    }

    [TestMethod]
    public void AnswerClassifier_WorksWithMLNetsMulticlassCrossValidate()
    {
        string images = NewDir();
        Directory.CreateDirectory(images);
        try
        {
            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(VqaDefaultsTests.Scenes(images, 10, seed: 9));
            var pipeline = ml.Transforms.LoadImages("Image", images, "Path")
                .Append(ml.Transforms.Conversion.MapValueToKey("Label", "Answer"))
                .Append(ml.Mblm().AnswerClassifier(VisionTests.TinyOptions with { MaxSteps = 2, BatchSize = 4 }));
            var folds = ml.MulticlassClassification.CrossValidate(data, pipeline, numberOfFolds: 2, labelColumnName: "Label");
            try
            {
                Assert.AreEqual(2, folds.Count);
                foreach (var f in folds)
                {
                    Assert.IsTrue(double.IsFinite(f.Metrics.LogLoss), "Score holds probabilities");
                    Assert.IsTrue(f.Metrics.MicroAccuracy is >= 0 and <= 1);
                    // Classes: the answers of the fold's training rows (MapValueToKey is fitted per fold), one score each.
                    Assert.AreEqual(f.ScoredHoldOutSet.GetColumn<float[]>("Score").First().Length, f.Metrics.ConfusionMatrix.NumberOfClasses);
                    Assert.IsTrue(f.Metrics.ConfusionMatrix.NumberOfClasses is >= 4 and <= 6);
                }
                Assert.AreEqual(20, folds.Sum(f => f.ScoredHoldOutSet.GetColumn<float[]>("Score").Count()), "every row held out once");
            }
            finally { foreach (var f in folds) (f.Model as IDisposable)?.Dispose(); }
        }
        finally { Directory.Delete(images, true); }
    }
}
