using System.Text.Json.Nodes;
using Mblm.Config;
using Mblm.Model;
using Mblm.Training;
using Mblm.Weights;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>Resume continues this run: fingerprints, numeric step order, damaged checkpoints, leftovers, dropout RNG.</summary>
[TestClass]
public sealed class ResumeTests
{
    private static readonly TrainerOptions Options = new() { Steps = 8, BatchSize = 3, LearningRate = 2e-3, Shuffle = true, Seed = 7, GradientAccumulation = 2 };

    private static MblmConfig TinyConfig => Cfg([16, 8], [4, 4], [S(), T()]);

    private static MblmConfig DropoutConfig
    {
        get
        {
            var block = new TransformerBlockConfig { AttnHeadDims = 4, AttnNumHeads = 2, AttnUseRotEmbs = true, AttnDropout = 0.1, FfDropout = 0.3, PosEmbType = PosEmbType.Fixed };
            return Cfg([16, 8], [6, 4], [block, block]);
        }
    }

    private static string NewDir() => Path.Combine(Path.GetTempPath(), $"mblm-resume-{Guid.NewGuid():N}");

    private static string DataFile()
    {
        var pattern = System.Text.Encoding.UTF8.GetBytes("the quick brown fox jumps over the lazy dog. ");
        string path = Path.Combine(Path.GetTempPath(), $"mblm-resume-data-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(path, Enumerable.Range(0, 3000).Select(i => pattern[i % pattern.Length]).ToArray());
        return path;
    }

    private static void Cleanup(string file, params string[] dirs)
    {
        File.Delete(file);
        foreach (var d in dirs) if (Directory.Exists(d)) Directory.Delete(d, true);
    }

    // Trains with checkpoints every `every` steps and stops (as a killed run would) right after step `stopAt`.
    private static void Interrupted(MblmModel model, ISampleSource data, TrainerOptions options, int stopAt)
    {
        using var cts = new CancellationTokenSource();
        Assert.ThrowsExactly<OperationCanceledException>(() => new Trainer(model, options)
            .Train(data, progress: new TrainingTests.SyncProgress(p => { if (p.Step == stopAt && p.Warning is null) cts.Cancel(); }), cancellationToken: cts.Token));
    }

    private static void AssertSameWeights(MblmModel expected, MblmModel actual)
    {
        var a = expected.state_dict();
        foreach (var (name, t) in actual.state_dict())
            Assert.IsTrue(a[name].eq(t).all().item<bool>(), $"{name} differs");
    }

    [TestMethod]
    public void Resume_RefusesAForeignRunsCheckpoint_NamingBothValues()
    {
        string path = DataFile(), dir = NewDir();
        try
        {
            using var data = new ByteFileDataset(path, 24);
            var options = Options with { Steps = 4, CheckpointEvery = 2, OutputDirectory = dir };
            new Trainer(RandomModel(TinyConfig, 1), options).Train(data);

            var e = Assert.ThrowsExactly<CheckpointMismatchException>(() =>
                new Trainer(RandomModel(TinyConfig, 1), options with { LearningRate = 1e-3 }).Train(data, resume: true));
            StringAssert.Contains(e.Message, "step-00000004");
            StringAssert.Contains(e.Message, "trainer.learning_rate is 0.002 in the checkpoint, 0.001 in this run");
            Assert.AreEqual(1, e.Differences.Count);

            var other = Cfg([24, 8], [4, 4], [S(), T()]);
            e = Assert.ThrowsExactly<CheckpointMismatchException>(() => new Trainer(RandomModel(other, 1), options).Train(data, resume: true));
            StringAssert.Contains(e.Message, "model.hidden_dims is [16,8] in the checkpoint, [24,8] in this run");

            e = Assert.ThrowsExactly<CheckpointMismatchException>(() =>
                new Trainer(RandomModel(TinyConfig, 1), options with { Steps = 6, Seed = 8, AdamW = true }).Train(data, resume: true));
            StringAssert.Contains(e.Message, "trainer.steps is 4 in the checkpoint, 6 in this run");
            StringAssert.Contains(e.Message, "trainer.seed is 7 in the checkpoint, 8 in this run");
            StringAssert.Contains(e.Message, "trainer.optimizer is \"adam\" in the checkpoint, \"adamw\" in this run");

            // What does not shape the run may change: checkpoint and validation frequency.
            var result = new Trainer(RandomModel(TinyConfig, 1), options with { CheckpointEvery = 3, ValidateEvery = 1 }).Train(data, resume: true);
            Assert.AreEqual(4L, result.ResumedFromStep);
        }
        finally { Cleanup(path, dir); }
    }

    [TestMethod]
    public void Checkpoints_AreOrderedByStepNumber_NotByName()
    {
        string path = DataFile(), dir = NewDir();
        try
        {
            using var data = new ByteFileDataset(path, 24);
            new Trainer(RandomModel(TinyConfig, 1), Options with { Steps = 2, CheckpointEvery = 1, OutputDirectory = dir }).Train(data);
            string root = Path.Combine(dir, "checkpoints");
            // Step numbers past 8 digits: text order would put step-99999999 after step-100000000.
            MakeCheckpointAt(Path.Combine(root, "step-00000001"), Path.Combine(root, "step-99999999"), 99_999_999);
            MakeCheckpointAt(Path.Combine(root, "step-00000002"), Path.Combine(root, "step-100000000"), 100_000_000);
            // Names that do not parse are ignored, whatever they hold.
            foreach (string name in new[] { "step-latest", "step-12x", "step--5", "step-" })
                CopyDirectory(Path.Combine(root, "step-100000000"), Path.Combine(root, name));
            Directory.CreateDirectory(Path.Combine(root, "step-500")); // no trainer.json: incomplete

            Assert.AreEqual("step-100000000", Path.GetFileName(CheckpointStore.Newest(dir)));
            CollectionAssert.AreEqual(new[] { "step-100000000", "step-99999999" }, CheckpointStore.Complete(dir).Select(Path.GetFileName).ToArray());
            Assert.AreEqual(7L, CheckpointStore.StepOf("step-7"));
            Assert.IsNull(CheckpointStore.StepOf("step-+7"));
            Assert.IsNull(CheckpointStore.StepOf("step-99999999999999999999"));
        }
        finally { Cleanup(path, dir); }
    }

    private static void MakeCheckpointAt(string from, string to, long step)
    {
        Directory.Move(from, to);
        string trainer = Path.Combine(to, "trainer.json");
        var meta = JsonNode.Parse(File.ReadAllText(trainer))!.AsObject();
        meta["step"] = step;
        File.WriteAllText(trainer, meta.ToJsonString());
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }

    [TestMethod]
    [DataRow("weights.safetensors", "truncate")]
    [DataRow("optimizer.safetensors", "truncate")]
    [DataRow("rng.bin", "flip")]
    [DataRow("weights.safetensors", "flip")]
    [DataRow("trainer.json", "truncate")]
    [DataRow("weights.safetensors", "truncate-legacy")]
    [DataRow("optimizer.safetensors", "truncate-legacy")]
    [DataRow("trainer.json", "link-to-device")]
    [DataRow("rng.bin", "link-to-device")]
    [DataRow("optimizer.safetensors", "scramble-and-rehash")]
    [DataRow("weights.safetensors", "scramble-and-rehash")]
    [DataRow("weights.safetensors", "nan-and-rehash")]
    [DataRow("weights.safetensors", "inf-and-rehash")]
    [DataRow("weights.safetensors", "f64-and-rehash")]
    [DataRow("optimizer.safetensors", "nan-and-rehash")]
    [DataRow("weights.safetensors", "huge-and-rehash")]
    [DataRow("rng.bin", "rng-state-and-rehash")]
    public void DamagedNewestCheckpoint_FallsBackToThePreviousOne_AndEndsBitIdentical(string file, string damage)
    {
        string path = DataFile(), dirA = NewDir(), dirB = NewDir();
        try
        {
            using var data = new ByteFileDataset(path, 24);
            var straight = RandomModel(TinyConfig, 1);
            new Trainer(straight, Options with { OutputDirectory = dirA }).Train(data);

            var options = Options with { OutputDirectory = dirB, CheckpointEvery = 2 };
            Interrupted(RandomModel(TinyConfig, 1), data, options, stopAt: 6);
            string newest = CheckpointStore.Newest(dirB)!;
            Assert.AreEqual("step-00000006", Path.GetFileName(newest));
            if (damage.EndsWith("legacy", StringComparison.Ordinal))
            {
                // A checkpoint of the previous format: no fingerprint, no sizes or hashes to check against.
                string trainer = Path.Combine(newest, "trainer.json");
                var meta = JsonNode.Parse(File.ReadAllText(trainer))!.AsObject();
                meta.Remove("fingerprint");
                meta.Remove("files");
                File.WriteAllText(trainer, meta.ToJsonString());
            }
            string target = Path.Combine(newest, file);
            byte[] bytes = File.ReadAllBytes(target);
            if (damage == "flip") { bytes[bytes.Length / 2] ^= 0x40; File.WriteAllBytes(target, bytes); }
            else if (damage == "link-to-device") { File.Delete(target); File.CreateSymbolicLink(target, "/dev/zero"); }
            else if (damage.EndsWith("and-rehash", StringComparison.Ordinal))
            {
                // Damage that the recorded size and SHA-256 cannot catch (they are updated to match): the reader must.
                // Fuzz seed 4242: non-finite values and F64 tensors once resumed and then stopped on non-finite losses.
                if (damage == "scramble-and-rehash")
                    for (int i = 8; i < Math.Min(bytes.Length, 200); i += 3) bytes[i] ^= 0x5A;
                else if (damage == "rng-state-and-rehash")
                    System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), 0); // mt19937 'left' = 0: libtorch aborts
                else
                {
                    var tensors = SafeTensors.Load(target).ToDictionary(kv => kv.Key, kv => kv.Value);
                    string name = tensors.Keys.Where(k => tensors[k].is_floating_point()).OrderBy(k => k, StringComparer.Ordinal).Last();
                    var t = tensors[name];
                    tensors[name] = damage switch
                    {
                        "nan-and-rehash" => t.clone().index_fill_(0, TorchSharp.torch.tensor(new long[] { 0 }), double.NaN),
                        "inf-and-rehash" => t.clone().index_fill_(0, TorchSharp.torch.tensor(new long[] { 0 }), double.PositiveInfinity),
                        "huge-and-rehash" => t.clone().fill_(3e38),
                        _ => t.to(TorchSharp.torch.ScalarType.Float64),
                    };
                    SafeTensors.Save(tensors, target);
                    bytes = File.ReadAllBytes(target);
                }
                File.WriteAllBytes(target, bytes);
                string trainer = Path.Combine(newest, "trainer.json");
                var meta = JsonNode.Parse(File.ReadAllText(trainer))!.AsObject();
                meta["files"]![file] = new JsonObject
                {
                    ["bytes"] = bytes.Length, ["sha256"] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)),
                };
                File.WriteAllText(trainer, meta.ToJsonString());
            }
            else File.WriteAllBytes(target, bytes[..(bytes.Length / 2)]);

            var warnings = new List<string>();
            var resumed = RandomModel(TinyConfig, 2);
            var result = new Trainer(resumed, options).Train(data, progress: new TrainingTests.SyncProgress(p => { if (p.Warning is not null) warnings.Add(p.Warning); }), resume: true);
            Assert.AreEqual(4L, result.ResumedFromStep);
            Assert.AreEqual(8L, result.Steps);
            Assert.IsTrue(warnings.Any(w => w.Contains("step-00000006") && w.Contains("damaged")), string.Join("\n", warnings));
            Assert.IsTrue(warnings.Any(w => w.Contains("step-00000004")), string.Join("\n", warnings));
            CollectionAssert.AreEqual(warnings, result.Warnings.ToList());
            AssertSameWeights(straight, resumed);
            // The damaged checkpoint was written again on the way.
            Assert.AreEqual(6L, CheckpointStore.StepOf(CheckpointStore.Complete(dirB)[1]));
        }
        finally { Cleanup(path, dirA, dirB); }
    }

    [TestMethod]
    public void EveryCheckpointDamaged_StartsFresh_WithAWarning()
    {
        string path = DataFile(), dirA = NewDir(), dirB = NewDir();
        try
        {
            using var data = new ByteFileDataset(path, 24);
            var straight = RandomModel(TinyConfig, 1);
            new Trainer(straight, Options with { Steps = 4, OutputDirectory = dirA }).Train(data);
            var options = Options with { Steps = 4, OutputDirectory = dirB, CheckpointEvery = 2 };
            Interrupted(RandomModel(TinyConfig, 1), data, options, stopAt: 2);
            File.WriteAllText(Path.Combine(CheckpointStore.Newest(dirB)!, "trainer.json"), "{\"step\": ");

            var fresh = RandomModel(TinyConfig, 1);
            var result = new Trainer(fresh, options).Train(data, resume: true);
            Assert.IsNull(result.ResumedFromStep);
            Assert.IsTrue(result.Warnings.Any(w => w.Contains("starts from step 0")), string.Join("\n", result.Warnings));
            AssertSameWeights(straight, fresh);
        }
        finally { Cleanup(path, dirA, dirB); }
    }

    [TestMethod]
    public void LeftoversOfAKilledRun_AreRemovedAtTheNextStart()
    {
        string path = DataFile(), dir = NewDir();
        try
        {
            using var data = new ByteFileDataset(path, 24);
            string root = Path.Combine(dir, "checkpoints");
            string tmpFolder = Path.Combine(root, ".tmp-step-00000003-0123456789abcdef0123456789abcdef");
            Directory.CreateDirectory(tmpFolder);
            File.WriteAllBytes(Path.Combine(tmpFolder, "weights.safetensors"), new byte[100]);
            string tmpWeights = Path.Combine(dir, "weights.safetensors.tmp-1a2b3c4d");
            File.WriteAllBytes(tmpWeights, new byte[100]);
            string keep = Path.Combine(dir, "notes.txt");
            File.WriteAllText(keep, "mine");

            var result = new Trainer(RandomModel(TinyConfig, 1), Options with { Steps = 1, OutputDirectory = dir }).Train(data);
            Assert.IsFalse(Directory.Exists(tmpFolder), "temporary checkpoint folder removed");
            Assert.IsFalse(File.Exists(tmpWeights), "temporary weights file removed");
            Assert.IsTrue(File.Exists(keep), "other files are left alone");
            Assert.AreEqual(0, Directory.GetFileSystemEntries(root, ".tmp-*").Length);
            Assert.IsTrue(result.Warnings.Any(w => w.Contains("removed 2 temporary file(s)")), string.Join("\n", result.Warnings));
        }
        finally { Cleanup(path, dir); }
    }

    [TestMethod]
    public void StopAndResume_WithDropout_IsBitIdentical()
    {
        string path = DataFile(), dirA = NewDir(), dirB = NewDir(), dirC = NewDir();
        try
        {
            using var data = new ByteFileDataset(path, 24);
            var straight = RandomModel(DropoutConfig, 1);
            new Trainer(straight, Options with { OutputDirectory = dirA }).Train(data);

            // Dropout really draws from the generator: another seed (same initial weights, same data order) ends elsewhere.
            var otherSeed = RandomModel(DropoutConfig, 1);
            new Trainer(otherSeed, Options with { OutputDirectory = dirC, Seed = 8, Shuffle = false }).Train(data);
            var reference = RandomModel(DropoutConfig, 1);
            new Trainer(reference, Options with { OutputDirectory = dirC, Shuffle = false }).Train(data);
            Assert.IsTrue(reference.parameters().Zip(otherSeed.parameters()).Any(x => !x.First.eq(x.Second).all().item<bool>()), "dropout changes the result");

            var options = Options with { OutputDirectory = dirB, CheckpointEvery = 3 };
            Interrupted(RandomModel(DropoutConfig, 1), data, options, stopAt: 3);
            Assert.AreEqual("step-00000003", Path.GetFileName(CheckpointStore.Newest(dirB)));
            manual_seed(12345); // whatever the generator holds before the resume must not matter
            var resumed = RandomModel(DropoutConfig, 2);
            var result = new Trainer(resumed, options).Train(data, resume: true);
            Assert.AreEqual(3L, result.ResumedFromStep);
            AssertSameWeights(straight, resumed);
        }
        finally { Cleanup(path, dirA, dirB, dirC); }
    }

    [TestMethod]
    public void GeneratorState_OfThisLibtorch_PassesTheCheck_AndDamagedOnesAreNamed()
    {
        using var state = get_rng_state();
        byte[] bytes = state.data<byte>().ToArray();
        Assert.IsNull(CheckpointStore.GeneratorStateProblem(bytes), "a real state");
        foreach (var (offset, value) in new[] { (8, 0L), (8, 625L), (12, 0L), (16, 625L) })
        {
            var damaged = (byte[])bytes.Clone();
            if (offset == 16) System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(damaged.AsSpan(offset), (ulong)value);
            else System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(damaged.AsSpan(offset), (int)value);
            StringAssert.Contains(CheckpointStore.GeneratorStateProblem(damaged), "not a valid mt19937 generator state");
        }
    }
}
