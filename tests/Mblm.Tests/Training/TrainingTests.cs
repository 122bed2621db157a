using Mblm.Model;
using Mblm.Training;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

[TestClass]
public sealed class TrainingTests
{
    private static string TempFile(byte[] content)
    {
        string path = Path.Combine(Path.GetTempPath(), $"mblm-data-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(path, content);
        return path;
    }

    private static byte[] Text(int length)
    {
        var pattern = System.Text.Encoding.UTF8.GetBytes("the quick brown fox jumps over the lazy dog. ");
        return Enumerable.Range(0, length).Select(i => pattern[i % pattern.Length]).ToArray();
    }

    private static MblmModel TinyModel(int seed) => RandomModel(Cfg([16, 8], [4, 4], [S(), T()]), seed);

    [TestMethod]
    public void Schedule_WarmsUpFromTenthThenCosineToZero()
    {
        var s = new LearningRateSchedule(1e-3, 100, 0.1);
        Assert.AreEqual(10, s.WarmupSteps);
        Assert.AreEqual(1e-4, s.At(0), 1e-12);
        Assert.AreEqual(1e-4 + 0.9e-3 * 5 / 10, s.At(5), 1e-12);
        Assert.AreEqual(1e-3, s.At(10), 1e-12);
        Assert.AreEqual(0.5e-3, s.At(55), 1e-12);
        Assert.AreEqual(0, s.At(100), 1e-12);
    }

    [TestMethod]
    public void Dataset_NonOverlappingWindows_ShiftByOneBytePerEpoch()
    {
        string path = TempFile(Enumerable.Range(0, 100).Select(i => (byte)i).ToArray());
        try
        {
            using var data = new ByteFileDataset(path, 16);
            Assert.AreEqual(6, data.Count(0));
            Assert.AreEqual(6, data.Count(1));
            Assert.AreEqual(5, data.Count(5)); // (100 - 5) / 16
            CollectionAssert.AreEqual(Enumerable.Range(16, 16).Select(i => (long)i).ToArray(), data.Get(0, 1).Ids);
            CollectionAssert.AreEqual(Enumerable.Range(17, 16).Select(i => (long)i).ToArray(), data.Get(1, 1).Ids);
            var (train, val) = ByteFileDataset.Split(path, 16, 0.2);
            Assert.AreEqual(80, train.Length);
            Assert.AreEqual(20, val.Length);
            Assert.AreEqual(80L, val.Get(0, 0).Ids[0]);
            train.Dispose(); val.Dispose();
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void Training_ReducesLoss_AndWritesWeights()
    {
        string path = TempFile(Text(4000));
        string outDir = Path.Combine(Path.GetTempPath(), $"mblm-train-{Guid.NewGuid():N}");
        try
        {
            var (train, val) = ByteFileDataset.Split(path, 32, 0.1);
            var model = TinyModel(1);
            double before = Evaluator.Evaluate(model, val, 4).BitsPerByte;
            var reports = new List<TrainingProgress>();
            var result = new Trainer(model, new TrainerOptions { Steps = 40, BatchSize = 4, LearningRate = 3e-3, OutputDirectory = outDir })
                .Train(train, val, new SyncProgress(reports.Add));
            Assert.AreEqual(40, result.Steps);
            Assert.IsTrue(result.ValidationBitsPerByte < before - 1, $"validation bpb {before:F2} -> {result.ValidationBitsPerByte:F2}");
            Assert.AreEqual(40, reports.Count(r => r.Warning is null));
            Assert.IsTrue(File.Exists(Path.Combine(outDir, "weights.safetensors")));
            Assert.IsTrue(Directory.Exists(Path.Combine(outDir, "checkpoints", "step-00000040")));
            train.Dispose(); val.Dispose();
        }
        finally
        {
            File.Delete(path);
            if (Directory.Exists(outDir)) Directory.Delete(outDir, true);
        }
    }

    [TestMethod]
    public void StopAndResume_GivesBitwiseTheSameWeightsAsStraightTraining()
    {
        string path = TempFile(Text(3000));
        string dirA = Path.Combine(Path.GetTempPath(), $"mblm-a-{Guid.NewGuid():N}");
        string dirB = Path.Combine(Path.GetTempPath(), $"mblm-b-{Guid.NewGuid():N}");
        try
        {
            using var data = new ByteFileDataset(path, 24);
            var options = new TrainerOptions { Steps = 8, BatchSize = 3, LearningRate = 2e-3, Shuffle = true, Seed = 7, GradientAccumulation = 2 };

            var straight = TinyModel(1);
            new Trainer(straight, options with { OutputDirectory = dirA }).Train(data);

            // Run B: interrupted after step 4 (a checkpoint every 4 steps), then resumed into a differently initialised model.
            var first = TinyModel(1);
            using var cts = new CancellationTokenSource();
            Assert.ThrowsExactly<OperationCanceledException>(() =>
                new Trainer(first, options with { OutputDirectory = dirB, CheckpointEvery = 4 })
                    .Train(data, progress: new SyncProgress(p => { if (p.Step == 4) cts.Cancel(); }), cancellationToken: cts.Token));
            Assert.AreEqual("step-00000004", Path.GetFileName(CheckpointStore.Newest(dirB)));
            var resumed = TinyModel(2);
            var result = new Trainer(resumed, options with { OutputDirectory = dirB, CheckpointEvery = 4 }).Train(data, resume: true);
            Assert.AreEqual(4L, result.ResumedFromStep);

            var a = straight.state_dict();
            foreach (var (name, t) in resumed.state_dict())
                Assert.IsTrue(a[name].eq(t).all().item<bool>(), $"{name} differs after resume");
        }
        finally
        {
            File.Delete(path);
            foreach (var d in new[] { dirA, dirB }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }

    [TestMethod]
    public void GradientAccumulation_EqualsOneLargerBatch()
    {
        string path = TempFile(Text(2000));
        try
        {
            using var data = new ByteFileDataset(path, 16);
            var a = TinyModel(3);
            var b = TinyModel(3);
            new Trainer(a, new TrainerOptions { Steps = 1, BatchSize = 4, GradientClipping = null }).Train(data);
            new Trainer(b, new TrainerOptions { Steps = 1, BatchSize = 2, GradientAccumulation = 2, GradientClipping = null }).Train(data);
            var sa = a.state_dict();
            foreach (var (name, t) in b.state_dict())
                Assert.IsTrue((sa[name] - t).abs().max().item<float>() < 1e-6, name);
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void Bf16WorkingCopy_TrainsTheFp32MasterLikeFp32Training()
    {
        string path = TempFile(Text(3000));
        try
        {
            using var data = new ByteFileDataset(path, 32);
            var options = new TrainerOptions { Steps = 12, BatchSize = 4, LearningRate = 3e-3 };
            var fp32 = TinyModel(1);
            var fp32Result = new Trainer(fp32, options).Train(data);
            var mixed = TinyModel(1);
            var before = mixed.parameters().Select(p => p.clone()).ToList();
            var mixedResult = new Trainer(mixed, options with { Bf16 = true }).Train(data);
            Assert.IsTrue(mixed.parameters().All(p => p.dtype == ScalarType.Float32), "master weights stay fp32");
            Assert.IsTrue(mixed.parameters().Zip(before).Any(x => !x.First.eq(x.Second).all().item<bool>()), "master weights were updated");
            Assert.IsTrue(double.IsFinite(mixedResult.FinalLoss));
            Assert.AreEqual(fp32Result.FinalLoss, mixedResult.FinalLoss, 0.1, "bf16 loss trajectory stays close to fp32");
            // Bf16 must change the computation: the same seed and data in fp32 end elsewhere (CPU runs are deterministic)...
            Assert.AreNotEqual(fp32Result.FinalLoss, mixedResult.FinalLoss, "Bf16 = true trained exactly like fp32: was the working copy used?");
            Assert.IsTrue(mixed.parameters().Zip(fp32.parameters()).Any(x => !x.First.eq(x.Second).all().item<bool>()), "bf16 and fp32 runs ended with identical weights");
            // ...while the master keeps fp32 precision: its updated values are not all representable in bf16.
            Assert.IsTrue(mixed.parameters().Any(p => !p.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32).eq(p).all().item<bool>()),
                "every master weight equals its bf16 round trip: the master was stored in bf16");
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void NonFiniteLosses_AreSkippedThenStopTraining()
    {
        string path = TempFile(Text(2000));
        try
        {
            using var data = new ByteFileDataset(path, 16);
            var model = TinyModel(1);
            using (no_grad()) foreach (var p in model.parameters()) p.fill_(float.NaN);
            var warnings = new List<string>();
            var e = Assert.ThrowsExactly<InvalidOperationException>(() =>
                new Trainer(model, new TrainerOptions { Steps = 3, MaxConsecutiveNonFinite = 3 })
                    .Train(data, progress: new SyncProgress(p => { if (p.Warning is not null) warnings.Add(p.Warning); })));
            StringAssert.Contains(e.Message, "non-finite");
            Assert.AreEqual(2, warnings.Count);
        }
        finally { File.Delete(path); }
    }

    /// <summary>IProgress that reports synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    internal sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
