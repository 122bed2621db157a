using Mblm.Config;
using Mblm.Inference;
using Mblm.Model;
using Mblm.Training;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>
/// The classification objective through the one trainer: a pooled head learns a task, resumes exactly from checkpoints
/// (head and optimiser included), stops early and restores its best weights; scoring is batch-invariant.
/// </summary>
[TestClass]
public sealed class ClassificationObjectiveTests
{
    private static MblmConfig Config => Cfg([16, 8], [4, 4], [T(pos: PosEmbType.None), T()]);

    // Class 1 rows hold a 'z' somewhere; class 0 rows do not. Lengths 3..14, so padding and partial patches occur.
    private static List<ByteSample> Rows(int count, int seed, bool flip = false)
    {
        var rng = new Random(seed);
        var rows = new List<ByteSample>();
        for (int i = 0; i < count; i++)
        {
            int label = i % 2, length = rng.Next(3, 15);
            var ids = Enumerable.Range(0, length).Select(_ => (long)rng.Next('a', 'y')).ToArray();
            if (label == 1) ids[rng.Next(length)] = 'z';
            rows.Add(new ByteSample(ids, Enumerable.Repeat(1f, length).ToArray(), flip ? 1 - label : label));
        }
        return rows;
    }

    private sealed class Source(List<ByteSample> rows) : ISampleSource
    {
        public long Count(int epoch) => rows.Count;
        public ByteSample Get(int epoch, long index) => rows[(int)index];
    }

    private static (MblmModel Model, PooledClassifierHead Head) New(int seed)
    {
        var model = RandomModel(Config, seed);
        manual_seed(seed + 100);
        return (model, new PooledClassifierHead(model.PooledWidth, 2, dropout: 0.1));
    }

    private static double Accuracy(MblmModel model, PooledClassifierHead head, List<ByteSample> rows)
    {
        var p = PooledClassScorer.Probabilities(model, head, rows.Select(r => r.Ids).ToList(), batchSize: 7);
        return rows.Select((r, i) => (p[i][1] > p[i][0] ? 1 : 0) == r.Label ? 1.0 : 0.0).Average();
    }

    [TestMethod]
    public void APooledHead_LearnsATaskTheUntrainedModelCannot()
    {
        var (model, head) = New(seed: 1);
        using (model) using (head)
        {
            var test = Rows(200, seed: 99);
            double before = Accuracy(model, head, test);
            var objective = new ClassificationObjective(head, labelSmoothing: 0.05, nextByteWeight: 0.1);
            var result = new Trainer(model, new TrainerOptions { Steps = 300, BatchSize = 16, LearningRate = 5e-3, Seed = 1, Shuffle = true }, objective)
                .Train(new Source(Rows(400, seed: 2)));
            double after = Accuracy(model, head, test);
            Assert.IsTrue(after >= 0.9 && after > before + 0.2, $"accuracy {before:F3} → {after:F3}, loss {result.FinalLoss:F4}");
        }
    }

    [TestMethod]
    public void RandomPatchShift_StillLearnsTheTask_AndChangesTraining()
    {
        var (model, head) = New(seed: 1);
        var (plain, plainHead) = New(seed: 1);
        using (model) using (head) using (plain) using (plainHead)
        {
            var options = new TrainerOptions { Steps = 300, BatchSize = 16, LearningRate = 5e-3, Seed = 1, Shuffle = true };
            var shifted = new Trainer(model, options, new ClassificationObjective(head, 0.05, 0.1, randomPatchShift: true)).Train(new Source(Rows(400, seed: 2)));
            var unshifted = new Trainer(plain, options, new ClassificationObjective(plainHead, 0.05, 0.1)).Train(new Source(Rows(400, seed: 2)));
            Assert.AreNotEqual(unshifted.FinalLoss, shifted.FinalLoss, "the shift changes what is trained on");
            double accuracy = Accuracy(model, head, Rows(200, seed: 99));
            Assert.IsTrue(accuracy >= 0.9, $"accuracy {accuracy:F3}");
        }
    }

    [TestMethod]
    public void PooledFeaturesAndLoss_EqualPooledFeaturesAndLoss()
    {
        using var model = RandomModel(Config, seed: 3);
        using var scope = NewDisposeScope();
        var rows = Rows(4, seed: 5);
        var (ids, mask) = Batching.Collate(rows, Config.PadTokenId, model.Device);
        var lengths = tensor(rows.Select(r => (long)r.Ids.Length).ToArray());
        using var eval = model.EvalMode();
        var (pooled, loss) = model.PooledFeaturesAndLoss(ids, lengths, mask);
        Assert.IsTrue((pooled - model.PooledFeatures(ids, lengths)).abs().max().item<float>() < 1e-6);
        Assert.AreEqual(model.Loss(ids, mask).item<float>(), loss.item<float>(), 1e-6);
    }

    [TestMethod]
    public void Scoring_DoesNotDependOnTheOtherRowsOfABatch_AndKeepsTheInputOrder()
    {
        var (model, head) = New(seed: 4);
        using (model) using (head)
        {
            var rows = Rows(9, seed: 6).Select(r => r.Ids).ToList();
            var together = PooledClassScorer.Probabilities(model, head, rows, batchSize: 4);
            for (int i = 0; i < rows.Count; i++)
            {
                var alone = PooledClassScorer.Probabilities(model, head, [rows[i]], batchSize: 1)[0];
                for (int k = 0; k < 2; k++) Assert.AreEqual(alone[k], together[i][k], 1e-5, $"row {i} class {k}");
                Assert.AreEqual(1.0, together[i].Sum(), 1e-5);
            }
            Assert.IsTrue(head.training, "scoring leaves the head's mode as it was");
            var features = PooledClassScorer.Features(model, rows, batchSize: 4);
            Assert.AreEqual(model.PooledWidth, features[0].Length);
        }
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void KilledAndResumed_EqualsStraight(bool shift)
    {
        string straightDir = Path.Combine(Path.GetTempPath(), $"mblm-cls-{Guid.NewGuid():N}"), resumedDir = straightDir + "-r";
        var data = new Source(Rows(60, seed: 7));
        var options = new TrainerOptions { Steps = 6, BatchSize = 5, LearningRate = 3e-3, Seed = 3, Shuffle = true, CheckpointEvery = 3, AdamW = true };
        try
        {
            var (a, headA) = New(seed: 8);
            var (b, headB) = New(seed: 8);
            using (a) using (headA) using (b) using (headB)
            {
                new Trainer(a, options with { OutputDirectory = straightDir }, new ClassificationObjective(headA, 0.1, 0.2, shift)).Train(data);
                using (var cts = new CancellationTokenSource())
                    Assert.ThrowsExactly<OperationCanceledException>(() => new Trainer(b, options with { OutputDirectory = resumedDir }, new ClassificationObjective(headB, 0.1, 0.2, shift))
                        .Train(data, progress: new TrainingTests.SyncProgress(p => { if (p.Step == 3) cts.Cancel(); }), cancellationToken: cts.Token));
                var (c, headC) = New(seed: 9);
                using (c) using (headC)
                {
                    var result = new Trainer(c, options with { OutputDirectory = resumedDir }, new ClassificationObjective(headC, 0.1, 0.2, shift)).Train(data, resume: true);
                    Assert.AreEqual(3L, result.ResumedFromStep);
                    foreach (var (name, t) in a.state_dict()) Assert.IsTrue(t.eq(c.state_dict()[name]).all().item<bool>(), $"model {name}");
                    foreach (var (name, t) in headA.state_dict()) Assert.IsTrue(t.eq(headC.state_dict()[name]).all().item<bool>(), $"head {name}");
                    Assert.IsTrue(File.Exists(Path.Combine(resumedDir, "head.safetensors")));
                    // A head of another size is another run: its checkpoints are refused.
                    using var other = new PooledClassifierHead(c.PooledWidth, 3, 0.1);
                    Assert.ThrowsExactly<CheckpointMismatchException>(() =>
                        new Trainer(c, options with { OutputDirectory = resumedDir }, new ClassificationObjective(other, 0.1, 0.2, shift)).Train(data, resume: true));
                }
            }
        }
        finally
        {
            foreach (var d in new[] { straightDir, resumedDir }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }

    [TestMethod]
    public void ANaNValidation_NeverBecomesTheBest()
    {
        var (model, head) = New(seed: 13);
        using (model) using (head)
        {
            // An empty validation set validates to NaN every time: no step is "best", nothing is restored, and patience runs out.
            var options = new TrainerOptions { Steps = 50, BatchSize = 8, LearningRate = 3e-3, Seed = 1, ValidateEvery = 5, EarlyStoppingPatience = 2, RestoreBestWeights = true };
            var result = new Trainer(model, options, new ClassificationObjective(head)).Train(new Source(Rows(40, seed: 14)), new Source([]));
            Assert.IsNull(result.BestStep);
            Assert.IsTrue(result.StoppedEarly);
            Assert.AreEqual(10L, result.Steps, "two validations without a usable figure");
        }
    }

    [TestMethod]
    public void DataFingerprint_CoversTheLabels_SoAResumeOverRelabelledDataIsRefused()
    {
        var rows = Rows(10, seed: 1);
        string labelled = DataFingerprint.Of(new Source(rows)).Sha256;
        Assert.AreNotEqual(labelled, DataFingerprint.Of(new Source(Rows(10, seed: 1, flip: true))).Sha256);
        Assert.AreNotEqual(labelled, DataFingerprint.Of(new Source(rows.Select(r => new ByteSample(r.Ids, r.LossMask)).ToList())).Sha256);
    }

    [TestMethod]
    public void EarlyStopping_StopsWhenValidationWorsens_AndRestoresTheBestWeights()
    {
        var (model, head) = New(seed: 10);
        using (model) using (head)
        {
            // The validation rows carry the opposite labels: the better the model learns, the worse it validates.
            var validation = new Source(Rows(40, seed: 12, flip: true));
            var options = new TrainerOptions
            {
                Steps = 400, BatchSize = 16, LearningRate = 3e-3, Seed = 1, Shuffle = true, ValidateEvery = 10, EarlyStoppingPatience = 3, RestoreBestWeights = true,
            };
            var objective = new ClassificationObjective(head);
            var result = new Trainer(model, options, objective).Train(new Source(Rows(400, seed: 11)), validation);
            Assert.IsTrue(result.StoppedEarly, $"ran {result.Steps} steps");
            Assert.IsTrue(result.Steps < 400);
            Assert.IsNotNull(result.BestStep);
            Assert.AreEqual(result.Steps - 30, result.BestStep, "three validations after the best");
            Assert.IsNull(result.ValidationBitsPerByte);
            Assert.AreEqual(result.ValidationLoss!.Value, objective.Validate(model, validation, 16, null), 1e-6, "the restored weights give the best validation");
        }
    }

    // A run that learns the training rows while its validation rows carry the opposite labels: it stops early.
    private static readonly TrainerOptions Stopping = new()
    {
        Steps = 400, BatchSize = 16, LearningRate = 3e-3, Seed = 1, Shuffle = true, ValidateEvery = 10, EarlyStoppingPatience = 3,
        RestoreBestWeights = true, CheckpointEvery = 50,
    };

    private static TrainingResult TrainStopping(MblmModel model, PooledClassifierHead head, string dir, bool resume = false,
        IProgress<TrainingProgress>? progress = null, CancellationToken token = default) =>
        new Trainer(model, Stopping with { OutputDirectory = dir }, new ClassificationObjective(head))
            .Train(new Source(Rows(400, seed: 11)), new Source(Rows(40, seed: 12, flip: true)), progress, resume, token);

    private static void AssertSameWeights(nn.Module expected, nn.Module actual, string what)
    {
        foreach (var (name, t) in expected.state_dict()) Assert.IsTrue(t.eq(actual.state_dict()[name]).all().item<bool>(), $"{what} {name}");
    }

    [TestMethod]
    public void EarlyStopping_IsKeptInCheckpoints_SoAResumeRestoresTheBestOfTheWholeRun()
    {
        string straightDir = Path.Combine(Path.GetTempPath(), $"mblm-stop-{Guid.NewGuid():N}"), killedDir = straightDir + "-k";
        try
        {
            var (a, headA) = New(seed: 10);
            using (a) using (headA)
            {
                var straight = TrainStopping(a, headA, straightDir);
                Assert.IsTrue(straight.StoppedEarly && straight.BestStep is long && straight.BestStep < straight.Steps,
                    $"stopped {straight.StoppedEarly} at {straight.Steps}, best {straight.BestStep}");

                // Re-fitting over the finished run trains nothing and returns the best step's weights, from its checkpoint.
                var (b, headB) = New(seed: 20);
                using (b) using (headB)
                {
                    var again = TrainStopping(b, headB, straightDir, resume: true);
                    Assert.AreEqual(straight.Steps, again.ResumedFromStep);
                    Assert.AreEqual(straight.Steps, again.Steps, "a run that stopped early stays stopped");
                    Assert.IsTrue(again.StoppedEarly);
                    Assert.AreEqual(straight.BestStep, again.BestStep);
                    Assert.AreEqual(straight.ValidationLoss!.Value, again.ValidationLoss!.Value, 1e-9);
                    AssertSameWeights(a, b, "model");
                    AssertSameWeights(headA, headB, "head");
                }

                // Killed after the best and before the stop, then resumed: the same stop and the same best weights.
                var (c, headC) = New(seed: 10);
                using (c) using (headC)
                using (var cts = new CancellationTokenSource())
                {
                    long killAt = straight.BestStep!.Value + 15;
                    Assert.ThrowsExactly<OperationCanceledException>(() => TrainStopping(c, headC, killedDir,
                        progress: new TrainingTests.SyncProgress(p => { if (p.Step == killAt) cts.Cancel(); }), token: cts.Token));
                }
                var (d, headD) = New(seed: 30);
                using (d) using (headD)
                {
                    var resumed = TrainStopping(d, headD, killedDir, resume: true);
                    Assert.AreEqual(straight.BestStep + 15, resumed.ResumedFromStep);
                    Assert.AreEqual((straight.Steps, straight.BestStep, true), (resumed.Steps, resumed.BestStep, resumed.StoppedEarly));
                    AssertSameWeights(a, d, "model");
                    AssertSameWeights(headA, headD, "head");
                }

                // The best step's checkpoint gone: the resume says so and returns the last step's weights.
                Directory.Delete(Path.Combine(killedDir, "checkpoints", CheckpointStore.FolderName(straight.BestStep!.Value)), recursive: true);
                var (e, headE) = New(seed: 40);
                using (e) using (headE)
                {
                    var lost = TrainStopping(e, headE, killedDir, resume: true);
                    Assert.IsNull(lost.BestStep);
                    string bestFolder = CheckpointStore.FolderName(straight.BestStep!.Value);
                    Assert.IsTrue(lost.Warnings.Any(w => w.Contains("best validation", StringComparison.Ordinal) && w.Contains(bestFolder, StringComparison.Ordinal)),
                        string.Join(" | ", lost.Warnings));
                }
            }
        }
        finally
        {
            foreach (var dir in new[] { straightDir, killedDir }) if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [TestMethod]
    public void ACheckpoint_WhoseHeadHasAnotherShapeBehindACorrectHash_IsSkippedForThePreviousOne()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-head-{Guid.NewGuid():N}"), straightDir = dir + "-s";
        var data = new Source(Rows(60, seed: 7));
        var options = new TrainerOptions { Steps = 6, BatchSize = 5, LearningRate = 3e-3, Seed = 3, Shuffle = true, CheckpointEvery = 3 };
        try
        {
            var (a, headA) = New(seed: 8);
            var (b, headB) = New(seed: 8);
            using (a) using (headA) using (b) using (headB)
            {
                new Trainer(a, options with { OutputDirectory = straightDir }, new ClassificationObjective(headA)).Train(data);
                new Trainer(b, options with { OutputDirectory = dir }, new ClassificationObjective(headB)).Train(data);

                // Step 6's head replaced by a three-class head, and trainer.json's size and SHA-256 updated to match it.
                string folder = Path.Combine(dir, "checkpoints", CheckpointStore.FolderName(6)), headPath = Path.Combine(folder, "head.safetensors");
                using (var wrong = new PooledClassifierHead(b.PooledWidth, 3, 0.1)) Mblm.Weights.ModelWeights.Save(wrong, headPath);
                string trainerPath = Path.Combine(folder, "trainer.json");
                var meta = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(trainerPath))!.AsObject();
                byte[] bytes = File.ReadAllBytes(headPath);
                meta["files"]!["head.safetensors"] = new System.Text.Json.Nodes.JsonObject
                {
                    ["bytes"] = bytes.Length, ["sha256"] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)),
                };
                File.WriteAllText(trainerPath, meta.ToJsonString());

                var (c, headC) = New(seed: 9);
                using (c) using (headC)
                {
                    var result = new Trainer(c, options with { OutputDirectory = dir }, new ClassificationObjective(headC)).Train(data, resume: true);
                    Assert.AreEqual(3L, result.ResumedFromStep, "step 6 refused, step 3 resumed");
                    Assert.IsTrue(result.Warnings.Any(w => w.Contains("head.safetensors", StringComparison.Ordinal) && w.Contains("damaged", StringComparison.Ordinal)),
                        string.Join(" | ", result.Warnings));
                    AssertSameWeights(a, c, "model");
                    AssertSameWeights(headA, headC, "head");
                }
            }
        }
        finally
        {
            foreach (var d in new[] { dir, straightDir }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }

    [TestMethod]
    public void ADamagedEarlyStoppingRecord_MakesTheCheckpointDamaged()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-rec-{Guid.NewGuid():N}");
        try
        {
            var (a, headA) = New(seed: 10);
            using (a) using (headA)
            {
                var straight = TrainStopping(a, headA, dir);
                string trainerPath = Path.Combine(CheckpointStore.Newest(dir)!, "trainer.json");
                var meta = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(trainerPath))!.AsObject();
                Assert.AreEqual(straight.BestStep, (long)meta["validation"]!["best_step"]!);
                Assert.IsTrue((bool)meta["validation"]!["stopped_early"]!);
                meta["validation"]!["best_step"] = straight.Steps + 1; // after the checkpoint's own step
                File.WriteAllText(trainerPath, meta.ToJsonString());
                var (b, headB) = New(seed: 20);
                using (b) using (headB)
                {
                    var result = TrainStopping(b, headB, dir, resume: true);
                    Assert.IsTrue(result.Warnings.Any(w => w.Contains("best_step", StringComparison.Ordinal)), string.Join(" | ", result.Warnings));
                    Assert.IsTrue(result.ResumedFromStep < straight.Steps);
                    Assert.AreEqual((straight.Steps, straight.BestStep), (result.Steps, result.BestStep), "the previous checkpoint continues to the same stop");
                }
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
