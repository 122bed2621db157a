using Mblm.Cli;
using Mblm.Config;
using Mblm.MLNet;
using Mblm.Model;
using Mblm.Weights;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.Tests;

/// <summary>
/// <c>mblm export</c> and <see cref="MblmLanguageModelTransformer.ExportReference"/>: the reference layout (training YAML +
/// <c>.pth</c>) and safetensors round-trip to equal logits, settings come from flags, the config file or defaults, and a
/// failed export leaves existing files alone. (That the reference itself reads the export is checked in
/// <see cref="ExternalTests"/>, category reference-harness.)
/// </summary>
[TestClass]
public sealed class ExportTests
{
    private static string Fixture(string name) => PyTorchCheckpointTests.Fixture(name);

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-export-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static byte[] Logits(string dir, string config, string weights)
    {
        string logits = Path.Combine(dir, $"logits-{Guid.NewGuid():N}.bin");
        var (code, _, err) = CliTests.Mblm("forward", "--config", config, "--weights", weights, "--input", Fixture("input.json"), "--logits-out", logits);
        Assert.AreEqual(0, code, err);
        return File.ReadAllBytes(logits);
    }

    [TestMethod]
    public void CliExport_Reference_ThenImport_GivesEqualLogits()
    {
        string dir = TempDir();
        try
        {
            string outDir = Path.Combine(dir, "ref");
            var (code, stdout, err) = CliTests.Mblm("export", "--config", Fixture("config.json"), "--weights", Fixture("checkpoint.pth"),
                "--format", "reference", "--out", outDir, "--batch-size", "3", "--learning-rate", "2e-5", "--input-seq-len", "20",
                "--target-elements", "5000", "--dataset-dir", "/data/pg19", "--dataset-id", "pg19");
            Assert.AreEqual(0, code, err);
            StringAssert.Contains(stdout, "model.pth");

            var file = ConfigReader.LoadFile(Path.Combine(outDir, ModelExport.ReferenceConfigFile));
            Assert.AreEqual(ConfigWriter.ToJson(ConfigReader.LoadModel(Fixture("config.json"))), ConfigWriter.ToJson(file.Model));
            Assert.AreEqual(20L, file.InputSeqLen);
            Assert.AreEqual(3, file.Train!.BatchSize);
            Assert.AreEqual(2e-5, file.Train.LearningRate);
            Assert.AreEqual(5000L, file.Train.TargetElements);
            Assert.AreEqual(1, file.Train.GradientAccumulateEvery);
            Assert.AreEqual(0.1, file.Train.WarmupStepsPerc);
            Assert.AreEqual("/data/pg19", file.Io["dataset_dir"]);
            Assert.AreEqual("pg19", file.Io["dataset_id"]);
            Assert.AreEqual("output", file.Io["output_dir"]);

            var contents = PyTorchCheckpoint.Load(Path.Combine(outDir, ModelExport.ReferenceWeightsFile));
            foreach (var t in contents.Tensors.Values) t.Dispose();
            Assert.IsTrue(contents.IsTrainerCheckpoint);
            Assert.IsNull(contents.Loss);

            var original = Logits(dir, Fixture("config.json"), Fixture("checkpoint.pth"));
            var exported = Logits(dir, Path.Combine(outDir, "config.yaml"), Path.Combine(outDir, "model.pth"));
            CollectionAssert.AreEqual(original, exported, "logits after export and import differ");
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void CliExport_Resume_PointsTheReferenceTrainerAtTheCheckpoint()
    {
        string dir = TempDir();
        try
        {
            string outDir = Path.Combine(dir, "handoff");
            var (code, _, err) = CliTests.Mblm("export", "--config", Fixture("config.json"), "--weights", Fixture("checkpoint.pth"), "--out", outDir, "--resume");
            Assert.AreEqual(0, code, err);
            string yaml = File.ReadAllText(Path.Combine(outDir, "config.yaml"));
            StringAssert.Contains(yaml, $"resume:\n  checkpoint_file: {System.Text.Json.JsonSerializer.Serialize(Path.Combine(outDir, "model.pth"))}\n  next_epoch_index: 0\n  next_batch_index: 0\n");
            Assert.IsNotNull(ConfigReader.LoadFile(Path.Combine(outDir, "config.yaml")).Train);
            var contents = PyTorchCheckpoint.Load(Path.Combine(outDir, "model.pth"));
            foreach (var t in contents.Tensors.Values) t.Dispose();
            Assert.AreEqual(double.PositiveInfinity, contents.Loss, "the reference's trainer formats LOSS as a float: --resume stores inf, not None");
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void CliExport_SafeTensors_ThenImport_GivesEqualLogits()
    {
        string dir = TempDir();
        try
        {
            string outDir = Path.Combine(dir, "st");
            var (code, _, err) = CliTests.Mblm("export", "--config", Fixture("config.json"), "--weights", Fixture("state-dict-proto4.pth"),
                "--format", "safetensors", "--out", outDir);
            Assert.AreEqual(0, code, err);
            CollectionAssert.AreEqual(Logits(dir, Fixture("config.json"), Fixture("state-dict-proto4.pth")),
                Logits(dir, Path.Combine(outDir, "config.json"), Path.Combine(outDir, "weights.safetensors")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void CliExport_TakesTrainValuesFromATrainingYaml_AndFlagsWin()
    {
        string dir = TempDir();
        try
        {
            var model = ConfigReader.LoadModel(Fixture("config.json"));
            string yaml = Path.Combine(dir, "train.yaml");
            File.WriteAllText(yaml, ConfigWriter.ToTrainingYaml(model, new ReferenceTrainingSettings
            {
                InputSeqLen = 12, BatchSize = 5, GradientAccumulateEvery = 4, DatasetId = "clevr", NameModel = "run-7",
            }));
            var (code, _, err) = CliTests.Mblm("export", "--config", yaml, "--weights", Fixture("checkpoint.pth"), "--out", Path.Combine(dir, "out"), "--batch-size", "6");
            Assert.AreEqual(0, code, err);
            var file = ConfigReader.LoadFile(Path.Combine(dir, "out", "config.yaml"));
            Assert.AreEqual(12L, file.InputSeqLen);
            Assert.AreEqual(6, file.Train!.BatchSize);
            Assert.AreEqual(4, file.Train.GradientAccumulateEvery);
            Assert.AreEqual("clevr", file.Io["dataset_id"]);
            Assert.AreEqual("run-7", file.Io["name_model"]);
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void FailedExport_LeavesExistingFilesAlone_AndNoTemporaryFiles()
    {
        string dir = TempDir();
        try
        {
            string outDir = Path.Combine(dir, "out");
            Directory.CreateDirectory(outDir);
            File.WriteAllText(Path.Combine(outDir, "config.yaml"), "old config");
            File.WriteAllText(Path.Combine(outDir, "model.pth"), "old weights");
            // Weights that do not fit the config: refused after the settings are checked, before anything is written.
            string bigger = Path.Combine(dir, "bigger.json");
            File.WriteAllText(bigger, ConfigWriter.ToJson(ConfigReader.LoadModel(Fixture("config.json")) with { HiddenDims = [32, 16] }));
            var (code, _, err) = CliTests.Mblm("export", "--config", bigger, "--weights", Fixture("checkpoint.pth"), "--out", outDir);
            Assert.AreEqual(ExitCodes.InvalidInput, code, err);
            StringAssert.Contains(err, "do not match the model");
            // A folder in place of one of the files: the move fails after both were written under temporary names.
            File.Delete(Path.Combine(outDir, "model.pth"));
            Directory.CreateDirectory(Path.Combine(outDir, "model.pth"));
            (code, _, err) = CliTests.Mblm("export", "--config", Fixture("config.json"), "--weights", Fixture("checkpoint.pth"), "--out", outDir);
            Assert.AreNotEqual(0, code, err);
            Assert.AreEqual("old config", File.ReadAllText(Path.Combine(outDir, "config.yaml")));
            CollectionAssert.AreEquivalent(new[] { "config.yaml", "model.pth" }, Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName).ToArray());
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    [DataRow("--format", "onnx", "--format must be reference or safetensors")]
    [DataRow("--input-seq-len", "25", "--input-seq-len must be at most the model's maximum context 24")]
    [DataRow("--batch-size", "0", "--batch-size must be an integer in [1,")]
    [DataRow("--learning-rate", "-1", "--learning-rate must be")]
    public void CliExport_BadFlags_AreUsageErrors(string flag, string value, string message)
    {
        var (code, _, err) = CliTests.Mblm("export", "--config", Fixture("config.json"), "--weights", Fixture("checkpoint.pth"), "--out", Path.Combine(Path.GetTempPath(), "never"), flag, value);
        Assert.AreEqual(ExitCodes.Usage, code, err);
        StringAssert.Contains(err, message);
    }

    [TestMethod]
    public void CliExport_TrainingFlagsWithSafeTensors_AreUsageErrors()
    {
        var (code, _, err) = CliTests.Mblm("export", "--config", Fixture("config.json"), "--weights", Fixture("checkpoint.pth"), "--out", Path.Combine(Path.GetTempPath(), "never"),
            "--format", "safetensors", "--dataset-id", "pg19");
        Assert.AreEqual(ExitCodes.Usage, code, err);
        StringAssert.Contains(err, "--dataset-id");
    }

    [TestMethod]
    public void TrainingYaml_FloatsAlwaysCarryADecimalPoint()
    {
        var model = ConfigReader.LoadModel(Fixture("config.json"));
        string yaml = ConfigWriter.ToTrainingYaml(model, new ReferenceTrainingSettings { LearningRate = 1e-5, WarmupStepsPerc = 0, GradientClipping = 1 });
        StringAssert.Contains(yaml, "learning_rate: 1.0e-05\n");
        StringAssert.Contains(yaml, "warmup_steps_perc: 0.0\n");
        StringAssert.Contains(yaml, "gradient_clipping: 1.0\n");
        Assert.AreEqual(1e-5, ConfigReader.Parse(yaml).Train!.LearningRate);
    }

    [TestMethod]
    public void TrainingSettings_WrittenAndReadBack_AreOneEqualValue()
    {
        // One type both ways: what the writer writes, the reader reads back as an equal record (every train and io key).
        var model = ConfigReader.LoadModel(Fixture("config.json"));
        var settings = new ReferenceTrainingSettings
        {
            InputSeqLen = 20, TargetElements = 123_456_789, TargetElementsStrategy = "batch", BatchSize = 3, LearningRate = 2e-5,
            GradientAccumulateEvery = 4, WarmupStepsPerc = 0.25, GradientClipping = 0.5, ShuffleTrain = true, ShuffleEval = true,
            MaxEvalSteps = 7, NameModel = "run-9", OutputDir = "out", DatasetDir = "/data/x", DatasetId = "clevr",
            NumModelsToSave = 2, ValidateAmount = 5, LogTrainLossAmount = 9,
        };
        Assert.AreEqual(settings, ConfigReader.Parse(ConfigWriter.ToTrainingYaml(model, settings)).Train);
        Assert.AreEqual(new ReferenceTrainingSettings { InputSeqLen = model.MaxContext },
            ConfigReader.Parse(ConfigWriter.ToTrainingYaml(model)).Train, "defaults round-trip too");
    }

    [TestMethod]
    [DataRow("target_elements")]
    [DataRow("batch_size")]
    [DataRow("learning_rate")]
    [DataRow("gradient_accumulate_every")]
    public void TrainSection_WithoutAKeyTheReferenceRequires_IsAConfigErrorNamingIt(string key)
    {
        var model = ConfigReader.LoadModel(Fixture("config.json"));
        string yaml = string.Join("\n", ConfigWriter.ToTrainingYaml(model).Split('\n').Where(l => !l.StartsWith($"  {key}:", StringComparison.Ordinal)));
        var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse(yaml));
        Assert.AreEqual("train." + key, e.Key);
        StringAssert.Contains(e.Message, "required");
    }

    [TestMethod]
    public void TargetElements_GiveOptimizerSteps_ByTheReferenceRule()
    {
        // sequence: a batch counts batch × sample bytes; batch: it counts samples. ceil, then per accumulated step, at least 1.
        var s = new ReferenceTrainingSettings { TargetElements = 100_000 };
        Assert.AreEqual(13L, s.OptimizerSteps(batchSize: 8, gradientAccumulation: 1, sampleLength: 1000)); // ceil(100000 / 8000)
        Assert.AreEqual(6L, s.OptimizerSteps(8, 2, 1000));
        Assert.AreEqual(1L, s.OptimizerSteps(8, 64, 1000));
        Assert.AreEqual(12_500L, (s with { TargetElementsStrategy = "batch" }).OptimizerSteps(8, 1, 1000));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => s.OptimizerSteps(0, 1, 1000));
    }

    [TestMethod]
    public void IoValueThatIsNotACount_IsAConfigErrorNamingIt()
    {
        var model = ConfigReader.LoadModel(Fixture("config.json"));
        string yaml = ConfigWriter.ToTrainingYaml(model).Replace("  validate_amount: 10\n", "  validate_amount: ten\n");
        var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse(yaml));
        Assert.AreEqual("io.validate_amount", e.Key);
    }

    [TestMethod]
    public void FittedLanguageModel_ExportReference_WritesWeightsThatLoadBackEqual()
    {
        string dir = TempDir();
        try
        {
            var ml = new MLContext(seed: 2);
            var options = MLNetTests.TinyOptions(0) with { MaxSteps = 2 };
            var data = ml.Data.LoadFromEnumerable(MLNetTests.Corpus.Select(t => new TextRow { Text = t }).ToList());
            using var transformer = ml.Mblm().LanguageModel(options).Fit(data);
            var files = transformer.ExportReference(dir);
            CollectionAssert.AreEqual(new[] { Path.Combine(dir, "config.yaml"), Path.Combine(dir, "model.pth") }, files.ToArray());

            var file = ConfigReader.LoadFile(files[0]);
            Assert.AreEqual(options.BatchSize, file.Train!.BatchSize);
            Assert.AreEqual(options.LearningRate, file.Train.LearningRate);
            using var back = new MblmModel(file.Model);
            ModelWeights.Load(back, files[1]);
            var expected = transformer.Model.state_dict();
            foreach (var (name, t) in back.state_dict()) Assert.IsTrue(PyTorchCheckpointTests.Same(t, expected[name]), name);

            // The way back: a new language-model stage that starts from the exported checkpoint (as it would from one the
            // reference trained further) scores rows exactly as the stage it came from, once trained with a zero learning rate.
            var again = options with { ModelConfig = file.Model, InitialWeights = files[1], MaxSteps = 1, LearningRate = 1e-30, WarmupFraction = 0 };
            using var resumed = ml.Mblm().LanguageModel(again).Fit(data);
            var before = transformer.Transform(data).GetColumn<float>("BitsPerByte").ToArray();
            var after = resumed.Transform(data).GetColumn<float>("BitsPerByte").ToArray();
            double worst = before.Zip(after, (a, b) => Math.Abs(a - b)).Max();
            Assert.IsTrue(worst <= 1e-5, $"bits per byte differ by {worst} after the round trip");
        }
        finally { Directory.Delete(dir, true); }
    }
}
