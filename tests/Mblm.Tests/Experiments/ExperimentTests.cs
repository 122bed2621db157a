using Mblm.MLNet;
using Mblm.MLNet.Experiments;
using Mblm.Training;
using Microsoft.ML;

namespace Mblm.Tests;

/// <summary>
/// AutoML-style experiments: the warm-up–stable–decay schedule and trial extension, random/grid/ASHA tuners over options
/// and model shape, failed trials skipped, the time budget inside a trial, resume after a crash, results as table/CSV/plot.
/// </summary>
[TestClass]
public sealed class ExperimentTests
{
    /// <summary>A monitor that records events as they happen (Progress&lt;T&gt; would post them later).</summary>
    internal sealed class Events(Action<MblmExperimentEvent> on) : IProgress<MblmExperimentEvent>
    {
        public void Report(MblmExperimentEvent value) => on(value);
    }

    private static string NewDir() => Path.Combine(Path.GetTempPath(), $"mblm-exp-{Guid.NewGuid():N}");

    private static IDataView Text(MLContext ml, IEnumerable<string> rows) => ml.Data.LoadFromEnumerable(rows.Select(t => new TextRow { Text = t }).ToList());

    private static (IDataView Train, IDataView Validation) Split(MLContext ml) =>
        (Text(ml, MLNetTests.Corpus.Take(32)), Text(ml, MLNetTests.Corpus.Skip(32)));

    private static MblmLanguageModelTrainer.Options Tiny(long steps) => MLNetTests.TinyOptions(0) with { MaxSteps = steps };

    [TestMethod]
    public void WarmupStableDecay_HoldsThePeak_ThenDecaysToZero()
    {
        var s = new LearningRateSchedule(1e-2, 100) { Kind = LearningRateScheduleKind.WarmupStableDecay, DecayFraction = 0.2, FixedWarmupSteps = 10 };
        Assert.AreEqual(80L, s.DecayStart);
        Assert.AreEqual(1e-3, s.At(0), 1e-12);
        Assert.AreEqual(1e-2, s.At(10), 1e-12);
        Assert.AreEqual(1e-2, s.At(79), 1e-12);
        Assert.AreEqual(1e-2 * 20 / 20, s.At(80), 1e-12);
        Assert.AreEqual(1e-2 * 1 / 20, s.At(99), 1e-12);
        // Before the decay, the rate does not depend on the total: a longer run is the same run up to there.
        var longer = s with { TotalSteps = 300 };
        for (int step = 0; step < 80; step++) Assert.AreEqual(s.At(step), longer.At(step));
        // The reference's cosine stays the default.
        Assert.AreEqual(LearningRateScheduleKind.WarmupCosine, new LearningRateSchedule(1e-2, 100).Kind);
    }

    [TestMethod]
    public void WarmupStableDecay_ALongerFitContinuesAShorterOne_BitForBit()
    {
        string extended = NewDir(), fresh = NewDir();
        try
        {
            var wsd = Tiny(6) with { Schedule = LearningRateScheduleKind.WarmupStableDecay, WarmupSteps = 1, DecayFraction = 0.5 };
            MblmLanguageModelTransformer Fit(string dir, long steps)
            {
                var ml = new MLContext(seed: 1);
                return ml.Mblm().LanguageModel(wsd with { MaxSteps = steps, CheckpointDirectory = dir }).Fit(Split(ml).Train);
            }
            using (Fit(extended, 6)) { }
            Assert.IsTrue(Directory.Exists(Path.Combine(extended, "checkpoints", CheckpointStore.FolderName(3))), "a checkpoint where the decay starts (step 3)");
            using var continued = Fit(extended, 10);   // continues from step 3 (the 6-step run's decay start), not from its decayed step 6
            using var direct = Fit(fresh, 10);
            Assert.AreEqual(10L, continued.Training.Steps);
            var a = direct.Model.state_dict();
            foreach (var (name, t) in continued.Model.state_dict())
                Assert.IsTrue(a[name].eq(t).all().item<bool>(), $"{name}: the extended fit differs from a 10-step fit");
        }
        finally
        {
            foreach (var d in new[] { extended, fresh }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }

    [TestMethod]
    public void Random_SearchesOptionsAndShape_ReportsEvents_WritesTableCsvAndPlot()
    {
        string dir = NewDir();
        try
        {
            var ml = new MLContext(seed: 1);
            var (train, validation) = Split(ml);
            var space = new MblmSearchSpace()
                .Range(nameof(MblmTrainingOptions.LearningRate), 1e-3, 1e-2, logScale: true)
                .Choice(MblmShape.GlobalBlock, "transformer", "mamba2")
                .Choice(MblmShape.PatchSize, 2, 4)
                .Range(MblmShape.GlobalLayers, 1, 2);
            var events = new List<MblmExperimentEvent>();
            var experiment = ml.Mblm().LanguageModelExperiment(train, validation, Tiny(4), space,
                new MblmExperimentSettings { Directory = dir, MaxTrials = 3, Seed = 5 });
            experiment.Monitor = new Events(events.Add);
            using var result = experiment.Run();

            Assert.AreEqual(3, result.Trials.Count);
            Assert.IsTrue(result.Trials.All(t => t.Status == MblmTrialStatus.Completed), result.ToTable());
            Assert.AreEqual(0, result.Trials[0].Parameters.Count, "trial 0 runs the base options");
            Assert.IsTrue(result.Trials.Skip(1).All(t => t.Parameters.Count == 4));
            Assert.IsNotNull(result.BestModel);
            Assert.AreEqual(result.Trials.Min(t => t.Objective), result.Best!.Objective);
            // the shape was applied: a trial's model has the drawn patch size
            var bestPatch = result.Best.Parameters.TryGetValue(MblmShape.PatchSize, out var p) ? Convert.ToInt32(p) : 4;
            Assert.AreEqual(bestPatch, result.BestModel!.ModelConfig.SeqLens[^1]);
            for (int i = 0; i < 3; i++) Assert.IsTrue(Directory.Exists(Path.Combine(dir, $"trial-{i:D4}", "checkpoints")), $"trial {i}'s own checkpoint folder");
            Assert.AreEqual(3, events.Count(e => e.Kind == MblmExperimentEventKind.TrialStarted));
            Assert.AreEqual(3, events.Count(e => e.Kind == MblmExperimentEventKind.TrialCompleted));
            Assert.IsTrue(events.Any(e => e.Kind == MblmExperimentEventKind.NewBest));

            StringAssert.Contains(result.ToTable(), "| trial | rung | steps | status | BitsPerByte | seconds | parameters |");
            StringAssert.Contains(result.ToTable(), "(base options)");
            string csv = Path.Combine(dir, "results.csv"), svg = Path.Combine(dir, "results.svg");
            result.WriteCsv(csv);
            result.WritePlot(svg);
            var lines = File.ReadAllLines(csv);
            Assert.AreEqual(4, lines.Length);
            StringAssert.StartsWith(lines[0], "trial,rung,steps,status,BitsPerByte,seconds,ended_at,LearningRate,GlobalBlock,PatchSize,GlobalLayers");
            Assert.AreEqual(3, File.ReadAllText(svg).Split("<circle").Length - 1);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [TestMethod]
    public void Asha_PromotesTheBestOfARung_ByContinuingItsCheckpoint()
    {
        string dir = NewDir();
        try
        {
            var ml = new MLContext(seed: 1);
            var (train, validation) = Split(ml);
            var space = new MblmSearchSpace().Range(nameof(MblmTrainingOptions.LearningRate), 1e-4, 3e-2, logScale: true);
            var settings = new MblmExperimentSettings { Directory = dir, Tuner = MblmTuner.Asha, MaxTrials = 4, MinSteps = 3, ReductionFactor = 2, Rungs = 2, Seed = 2 };
            using var result = ml.Mblm().LanguageModelExperiment(train, validation, Tiny(3), space, settings).Run();

            var rung0 = result.Trials.Where(t => t.Rung == 0).ToList();
            var rung1 = result.Trials.Where(t => t.Rung == 1).ToList();
            Assert.AreEqual(4, rung0.Count, result.ToTable());
            Assert.AreEqual(2, rung1.Count, "the best half of 4 rung-0 runs is promoted: " + result.ToTable());
            Assert.IsTrue(rung1.All(t => t.Steps == 6 && t.Status == MblmTrialStatus.Completed));
            foreach (var promoted in rung1)
            {
                var own = rung0.Single(t => t.Id == promoted.Id);
                // promoted only once at least one other run of its rung had finished, and only if among the best half then
                var before = rung0.Where(t => t.EndedAt <= promoted.EndedAt - promoted.Seconds).ToList();
                Assert.IsTrue(before.Count >= 2 && before.OrderBy(t => t.Objective).Take(before.Count / 2).Any(t => t.Id == own.Id), result.ToTable());
                // the promoted run continued its checkpoint (taken at the rung-0 run's decay start), not a fresh start
                string checkpoints = Path.Combine(dir, $"trial-{promoted.Id:D4}", "checkpoints");
                long decayStart = LearningRateSchedule.DecayStartOf(3, 0.2);
                Assert.IsTrue(Directory.Exists(Path.Combine(checkpoints, CheckpointStore.FolderName(decayStart))), "the branch point of rung 0");
                Assert.IsTrue(Directory.Exists(Path.Combine(checkpoints, CheckpointStore.FolderName(6))), "rung 1's end");
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [TestMethod]
    public void FailedOrDivergedTrials_AreReportedAndSkipped()
    {
        string dir = NewDir();
        try
        {
            var ml = new MLContext(seed: 1);
            var (train, validation) = Split(ml);
            // Grid: a sane rate; an absurd one (the loss goes non-finite); a width the Mamba2 block cannot split into heads.
            var space = new MblmSearchSpace().Choice(nameof(MblmTrainingOptions.LearningRate), 5e-3, 1e30).Choice(MblmShape.GlobalBlock, "transformer", "mamba2")
                .Choice(MblmShape.GlobalDim, 32, 36);
            var events = new List<MblmExperimentEvent>();
            var experiment = ml.Mblm().LanguageModelExperiment(train, validation, Tiny(8), space,
                new MblmExperimentSettings { Directory = dir, Tuner = MblmTuner.Grid, MaxTrials = 8 });
            experiment.Monitor = new Events(events.Add);
            using var result = experiment.Run();

            Assert.AreEqual(8, result.Trials.Count, result.ToTable());
            var failed = result.Trials.Where(t => t.Status == MblmTrialStatus.Failed).ToList();
            Assert.IsTrue(failed.Any(t => (double)t.Parameters["LearningRate"] > 1), "the absurd rate fails: " + result.ToTable());
            Assert.IsTrue(failed.Any(t => (string)t.Parameters[MblmShape.GlobalBlock] == "mamba2" && (double)t.Parameters[MblmShape.GlobalDim] == 36),
                "the width Mamba2 cannot use fails: " + result.ToTable());
            Assert.IsTrue(failed.All(t => !string.IsNullOrEmpty(t.Error)));
            Assert.AreEqual(failed.Count, events.Count(e => e.Kind == MblmExperimentEventKind.TrialFailed));
            Assert.AreEqual(MblmTrialStatus.Completed, result.Best!.Status);
            Assert.AreEqual(5e-3, (double)result.Best.Parameters["LearningRate"]);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [TestMethod]
    public void TimeBudget_StopsTheRunningTrial_WhichALaterRunContinues()
    {
        string dir = NewDir();
        try
        {
            var ml = new MLContext(seed: 1);
            var (train, validation) = Split(ml);
            var space = new MblmSearchSpace().Range(nameof(MblmTrainingOptions.LearningRate), 1e-3, 1e-2);
            var settings = new MblmExperimentSettings { Directory = dir, MaxTrials = 2, TimeBudget = TimeSpan.FromSeconds(1.5), CheckpointEvery = 5 };
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using (var first = ml.Mblm().LanguageModelExperiment(train, validation, Tiny(100_000) with { MaxEpochs = 100_000 }, space, settings).Run())
            {
                Assert.IsTrue(clock.Elapsed < TimeSpan.FromSeconds(30), $"a 100,000-step trial was not stopped by a 1.5 s budget ({clock.Elapsed})");
                var stopped = first.Trials.Single();
                Assert.AreEqual(MblmTrialStatus.Stopped, stopped.Status);
                StringAssert.Contains(stopped.Error, "time budget");
                Assert.IsNull(first.Best);
            }
            Assert.IsTrue(CheckpointStore.Complete(Path.Combine(dir, "trial-0000")).Count > 0, "the stopped trial left a checkpoint");

            // The same experiment with shorter trials would be another experiment: refused, naming the difference.
            var other = ml.Mblm().LanguageModelExperiment(train, validation, Tiny(3), space, settings);
            var e = Assert.ThrowsExactly<InvalidOperationException>(() => other.Run());
            StringAssert.Contains(e.Message, "maxSteps");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [TestMethod]
    public void AfterACrash_TheExperimentResumes_KeepingFinishedTrials_AndContinuingTheInterruptedOne()
    {
        string dir = NewDir();
        try
        {
            var ml = new MLContext(seed: 1);
            var (train, validation) = Split(ml);
            var space = new MblmSearchSpace().Range(nameof(MblmTrainingOptions.LearningRate), 1e-3, 1e-2, logScale: true);
            var settings = new MblmExperimentSettings { Directory = dir, MaxTrials = 3, Seed = 9, CheckpointEvery = 2 };
            // The process "dies" while trial 1 trains (after 2 of its steps; nothing after that line runs), mid-way through
            // writing a journal line.
            var crashing = ml.Mblm().LanguageModelExperiment(train, validation, Tiny(6) with
            {
                Progress = new TrainingTests.SyncProgress(p => { if (p.Step == 4 && Directory.Exists(Path.Combine(dir, "trial-0001"))) throw new SimulatedCrash(); }),
            }, space, settings);
            Assert.ThrowsExactly<SimulatedCrash>(() => crashing.Run());
            File.AppendAllText(Path.Combine(dir, "trials.jsonl"), "{\"id\": 1, \"ru");
            var journal = File.ReadAllLines(Path.Combine(dir, "trials.jsonl"));
            Assert.AreEqual(4, journal.Length, "trial 0 started and completed, trial 1 started, a torn line");

            var events = new List<MblmExperimentEvent>();
            var resumed = ml.Mblm().LanguageModelExperiment(train, validation, Tiny(6), space, settings);
            resumed.Monitor = new Events(events.Add);
            using var result = resumed.Run();
            Assert.AreEqual(3, result.Trials.Count, result.ToTable());
            Assert.IsTrue(result.Trials.All(t => t.Status == MblmTrialStatus.Completed), result.ToTable());
            Assert.AreEqual(2, events.Count(e => e.Kind == MblmExperimentEventKind.TrialStarted), "trial 0 is not run again; 1 is continued, 2 is new");
            Assert.AreEqual(1, events.First().Trial.Id);
            Assert.IsNotNull(result.BestModel);

            // Nothing left: a third run returns the same results without training, with the best model refitted from its checkpoint.
            using var again = ml.Mblm().LanguageModelExperiment(train, validation, Tiny(6), space, settings).Run();
            Assert.AreEqual(result.Best!.Id, again.Best!.Id);
            Assert.AreEqual(result.Best.Objective, again.Best.Objective);
            Assert.AreEqual(result.BestModel!.Training.Steps, again.BestModel!.Training.Steps);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    // What the experiment never catches (as a kill -9 never lets it): it escapes Run like the end of the process.
    private sealed class SimulatedCrash : OutOfMemoryException;

    [TestMethod]
    public void TextClassifier_CanBeSearched_ByMacroAccuracy()
    {
        string dir = NewDir();
        try
        {
            var ml = new MLContext(seed: 1);
            var keys = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Fit(ml.Data.LoadFromEnumerable(TextClassifierTests.Rows(64, seed: 3)));
            var train = keys.Transform(ml.Data.LoadFromEnumerable(TextClassifierTests.Rows(48, seed: 3)));
            var validation = keys.Transform(ml.Data.LoadFromEnumerable(TextClassifierTests.Rows(16, seed: 4)));
            var space = new MblmSearchSpace().Choice(nameof(MblmTrainingOptions.LearningRate), 1e-2, 3e-3);
            using var result = ml.Mblm().TextClassifierExperiment(train, validation, TextClassifierTests.TinyOptions with { MaxSteps = 20 }, space,
                new MblmExperimentSettings { Directory = dir, Tuner = MblmTuner.Grid, MaxTrials = 2 }).Run();
            Assert.AreEqual(2, result.Trials.Count(t => t.Status == MblmTrialStatus.Completed), result.ToTable());
            Assert.AreEqual("MacroAccuracy", result.Objective.Name);
            Assert.AreEqual(result.Trials.Max(t => t.Objective), result.Best!.Objective, "higher is better for accuracy");
            Assert.IsTrue(result.Best.Objective is >= 0 and <= 1);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
