using System.Text.Json;
using Mblm.Config;
using Mblm.MLNet;
using Mblm.Model;
using Mblm.Pretraining;
using Microsoft.ML;
using TorchSharp;

namespace Mblm.Tests;

/// <summary>
/// Pretrained model folders: saving (F32 and BF16), finding by name or path, loading into a model with a larger vocabulary
/// or another context, the estimators' <c>Pretrained</c> option, and the CLI's <c>--model</c>.
/// </summary>
[TestClass]
public sealed class MblmPretrainedTests
{
    // Positions from rotary attention only (no learned table), like the shipped base model: any context fits.
    private static readonly MblmConfig Base = TestData.Cfg([32, 16], [16, 4],
        [TestData.T(heads: 2, headDim: 8, pos: PosEmbType.None), TestData.T(heads: 2, headDim: 8, pos: PosEmbType.None)]);

    private static string NewFolder() => Path.Combine(Path.GetTempPath(), $"mblm-pretrained-{Guid.NewGuid():N}");

    private static Dictionary<string, float[]> Values(MblmModel model) =>
        model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.to(torch.float32).data<float>().ToArray());

    [TestMethod]
    public void Save_F32AndBf16_LoadBackExactly_BF16AtHalfTheSize()
    {
        string f32 = NewFolder(), bf16 = NewFolder();
        try
        {
            using var model = TestData.RandomModel(Base, seed: 3);
            MblmPretrained.Save(model, f32, card: "# card\n");
            MblmPretrained.Save(model, bf16, bfloat16: true);
            Assert.AreEqual("# card\n", File.ReadAllText(Path.Combine(f32, "README.md")));
            Assert.IsFalse(File.Exists(Path.Combine(bf16, "README.md")), "no card given, none written");
            long sizeF32 = new FileInfo(Path.Combine(f32, "model.safetensors")).Length, sizeBf16 = new FileInfo(Path.Combine(bf16, "model.safetensors")).Length;
            Assert.IsTrue(sizeBf16 < 0.55 * sizeF32, $"BF16 {sizeBf16} bytes vs F32 {sizeF32}");

            using var same = MblmPretrained.Load(f32);
            Assert.AreEqual(ConfigWriter.ToJson(Base), ConfigWriter.ToJson(same.Config));
            var expected = Values(model);
            foreach (var (name, v) in Values(same)) CollectionAssert.AreEqual(expected[name], v, name);
            // BF16 loads as F32 holding exactly the BF16-rounded values.
            using var rounded = MblmPretrained.Load(bf16);
            foreach (var (name, t) in model.state_dict())
            {
                var want = t.to(torch.bfloat16).to(torch.float32).data<float>().ToArray();
                var got = rounded.state_dict()[name];
                Assert.AreEqual(torch.float32, got.dtype, name);
                CollectionAssert.AreEqual(want, got.data<float>().ToArray(), name);
            }
        }
        finally
        {
            foreach (var d in new[] { f32, bf16 }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }

    [TestMethod]
    public void Resolve_FindsANameInMBLM_MODELS_AndSaysWhereItLooked()
    {
        string root = NewFolder(), name = $"base-{Guid.NewGuid():N}";
        string? before = Environment.GetEnvironmentVariable("MBLM_MODELS");
        try
        {
            using var model = TestData.RandomModel(Base);
            MblmPretrained.Save(model, Path.Combine(root, name));
            var missing = Assert.ThrowsExactly<DirectoryNotFoundException>(() => MblmPretrained.Resolve(name));
            StringAssert.Contains(missing.Message, name);
            StringAssert.Contains(missing.Message, "MBLM_MODELS");
            Environment.SetEnvironmentVariable("MBLM_MODELS", root);
            Assert.AreEqual(Path.Combine(root, name), MblmPretrained.Resolve(name));
            Assert.AreEqual(Path.Combine(root, name), MblmPretrained.Resolve(Path.Combine(root, name)), "a folder is itself");
            Assert.ThrowsExactly<DirectoryNotFoundException>(() => MblmPretrained.Resolve(Path.Combine(root, "nope", "x")));
            var noWeights = Path.Combine(root, "no-weights");
            Directory.CreateDirectory(noWeights);
            File.Copy(Path.Combine(root, name, "config.json"), Path.Combine(noWeights, "config.json"));
            var e = Assert.ThrowsExactly<FileNotFoundException>(() => MblmPretrained.Load(noWeights));
            StringAssert.Contains(e.Message, "model.safetensors");
        }
        finally
        {
            Environment.SetEnvironmentVariable("MBLM_MODELS", before);
            if (Directory.Exists(root)) Directory.Delete(root, true);
        }
    }

    [TestMethod]
    public void LoadInto_GrowsTheVocabulary_ChangesTheContext_AndCutsALearnedPositionTable()
    {
        string dir = NewFolder(), learned = NewFolder();
        try
        {
            using var pretrained = TestData.RandomModel(Base, seed: 5);
            MblmPretrained.Save(pretrained, dir);
            using var task = TestData.RandomModel(Base with { NumTokens = 260, SeqLens = [64, 4] }, seed: 6);
            string line = MblmPretrained.LoadInto(task, dir);
            StringAssert.Contains(line, "vocabulary 257 → 260");
            StringAssert.Contains(line, "context 64 → 256");
            var want = Values(pretrained);
            foreach (var (name, got) in Values(task))
                if (want[name].Length == got.Length) CollectionAssert.AreEqual(want[name], got, name);
                else CollectionAssert.AreEqual(want[name], got.Take(want[name].Length).ToArray(), $"{name}: the first rows are the pretrained ones");

            // A learned position table (pos_emb_type fixed) gives its first rows to a shorter context and refuses a longer one.
            var withTable = Base with { Blocks = [TestData.T(heads: 2, headDim: 8, pos: PosEmbType.Fixed), Base.Blocks[1]] };
            using var tabled = TestData.RandomModel(withTable, seed: 7);
            MblmPretrained.Save(tabled, learned);
            using var shorter = TestData.RandomModel(withTable with { SeqLens = [8, 4] }, seed: 8);
            MblmPretrained.LoadInto(shorter, learned);
            CollectionAssert.AreEqual(Values(tabled)["pos_embs.0.weight"].Take(8 * 32).ToArray(), Values(shorter)["pos_embs.0.weight"]);
            using var longer = TestData.RandomModel(withTable with { SeqLens = [32, 4] }, seed: 8);
            var e = Assert.ThrowsExactly<ArgumentException>(() => MblmPretrained.LoadInto(longer, learned));
            StringAssert.Contains(e.Message, "learned 16 positions");

            using var other = TestData.RandomModel(Base with { HiddenDims = [32, 8] }, seed: 1);
            e = Assert.ThrowsExactly<ArgumentException>(() => MblmPretrained.LoadInto(other, dir));
            StringAssert.Contains(e.Message, "shape differs");
        }
        finally
        {
            foreach (var d in new[] { dir, learned }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }

    [TestMethod]
    public void Estimators_StartFromThePretrainedWeights_WithItsShape()
    {
        string dir = NewFolder();
        try
        {
            using var pretrained = TestData.RandomModel(Base, seed: 11);
            MblmPretrained.Save(pretrained, dir);
            var ml = new MLContext(seed: 1);
            var rows = ml.Data.LoadFromEnumerable(TextClassifierTests.Rows(32, seed: 1));
            // A learning rate so small that one step leaves the weights where they started.
            var options = new MblmTextClassifierTrainer.Options { Pretrained = dir, MaxSteps = 1, BatchSize = 4, LearningRate = 1e-12, MaxEpochs = 1 };
            var model = ml.Transforms.Conversion.MapValueToKey("Label", "Kind").Append(ml.MulticlassClassification.Trainers.MblmTextClassifier(options)).Fit(rows);
            var classifier = model.LastTransformer;
            var (config, values) = classifier.UseModel(m => (m.Config, Values(m)));
            CollectionAssert.AreEqual(Base.HiddenDims.ToArray(), config.HiddenDims.ToArray(), "the shape is the pretrained model's");
            Assert.AreEqual(260, config.NumTokens, "the vocabulary grew by the task tokens");
            var want = Values(pretrained);
            int compared = 0;
            foreach (var (name, got) in values)
            {
                var w = want[name];
                for (int i = 0; i < w.Length; i++) Assert.AreEqual(w[i], got[i], 1e-5, $"{name}[{i}]");
                compared++;
            }
            Assert.AreEqual(want.Count, compared);

            // The language model too, and the option's errors name it.
            var lm = ml.Mblm().LanguageModel(new MblmLanguageModelTrainer.Options { Pretrained = dir, MaxSteps = 1, BatchSize = 2, LearningRate = 1e-12, MaxEpochs = 1 })
                .Fit(ml.Data.LoadFromEnumerable(new[] { new TextRow { Text = "the pretrained start" }, new TextRow { Text = "another row of text" } }));
            var lmValues = lm.UseModel(Values);
            foreach (var (name, w) in want) Assert.AreEqual(w[0], lmValues[name][0], 1e-5, name);
            lm.Dispose();

            // The VQA answer classifier: images and questions as bytes, the same start.
            var scenes = Mblm.Examples.ClevrLikeGenerator.ToDataView(ml, new Mblm.Examples.ClevrLikeGenerator(seed: 2).Generate(8, 2));
            var vqa = ml.Transforms.Conversion.MapValueToKey("Label", "Answer", keyData: Mblm.Examples.ClevrLikeGenerator.AnswerKeyData(ml))
                .Append(ml.Mblm().AnswerClassifier(VisionTests.TinyOptions with { ModelConfig = null, Pretrained = dir, MaxSteps = 1, LearningRate = 1e-12 }))
                .Fit(scenes).LastTransformer;
            var (vqaConfig, vqaValues) = vqa.UseModel(m => (m.Config, Values(m)));
            CollectionAssert.AreEqual(Base.HiddenDims.ToArray(), vqaConfig.HiddenDims.ToArray());
            foreach (var (name, w) in want) Assert.AreEqual(w[0], vqaValues[name][0], 1e-5, name);
            var e = Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.MblmTextClassifier(options with { Pretrained = Path.Combine(dir, "missing") }));
            Assert.AreEqual(nameof(MblmTrainingOptions.Pretrained), e.ParamName);
            var both = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.MblmTextClassifier(options with { BaseModel = Base }));
            StringAssert.Contains(both.Message, "BaseModel");
            // A saved pipeline does not need the folder.
            string saved = Path.Combine(dir, "..", $"{Path.GetFileName(dir)}.zip");
            ml.Mblm().SaveModel(model, rows.Schema, saved);
            Directory.Delete(dir, true);
            var loaded = ml.Mblm().LoadModel(saved, out _);
            Assert.AreEqual(32, ml.Data.CreateEnumerable<TextPredictionKey>(loaded.Transform(rows), reuseRowObject: false).Count());
            File.Delete(saved);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    private sealed class TextRow
    {
        public string Text { get; set; } = "";
    }

    private sealed class TextPredictionKey
    {
        public uint PredictedLabel { get; set; }
    }

    [TestMethod]
    public void TheShippedBaseModel_LoadsByName_AndKnowsText()
    {
        // models/mblm-base is found from the test's folder by walking up to the repository.
        string dir = MblmPretrained.Resolve(MblmPretrained.BaseName);
        Assert.AreEqual(Path.Combine(TestData.RepoRoot, "models", MblmPretrained.BaseName), dir);
        Assert.IsTrue(new DirectoryInfo(dir).EnumerateFiles().Sum(f => f.Length) <= 16L << 20, "the shipped model folder is at most 16 MiB");
        StringAssert.Contains(File.ReadAllText(Path.Combine(dir, "README.md")), "bits per byte");
        using var model = MblmPretrained.Load(MblmPretrained.BaseName);
        // Held-out English prose it never saw (this test's own words): far better than the 8 bits of a uniform guess.
        var text = System.Text.Encoding.UTF8.GetBytes("The base model was trained on files installed on a Debian machine: manual pages, " +
            "documentation, source code and binaries. This sentence was written for the test and is in none of them, yet the " +
            "model should still find most of its bytes easy to predict, because it has read a great deal of English text.");
        using var scope = torch.NewDisposeScope();
        var ids = torch.tensor(text.Select(b => (long)b).ToArray(), new long[] { 1, text.Length });
        double bitsPerByte = model.Loss(ids).item<float>() / Math.Log(2);
        Assert.IsTrue(bitsPerByte < 3.5, $"{bitsPerByte:F3} bits per byte on English prose");
    }

    [TestMethod]
    public void Cli_GenerateEvalAndTrain_TakeAModelFolder()
    {
        string dir = NewFolder(), outDir = NewFolder();
        string data = Path.Combine(Path.GetTempPath(), $"mblm-pretrained-{Guid.NewGuid():N}.txt");
        try
        {
            using var pretrained = TestData.RandomModel(Base, seed: 2);
            MblmPretrained.Save(pretrained, dir);
            File.WriteAllText(data, string.Concat(Enumerable.Repeat("a model folder for the tool. ", 20)));
            var (code, stdout, stderr) = CliTests.Mblm("eval", "--model", dir, "--data", data);
            Assert.AreEqual(0, code, stderr);
            double viaModel = JsonDocument.Parse(stdout.Trim().Split('\n')[^1]).RootElement.GetProperty("bits_per_byte").GetDouble();
            (code, stdout, stderr) = CliTests.Mblm("eval", "--config", Path.Combine(dir, "config.json"), "--weights", Path.Combine(dir, "model.safetensors"), "--data", data);
            Assert.AreEqual(0, code, stderr);
            Assert.AreEqual(JsonDocument.Parse(stdout.Trim().Split('\n')[^1]).RootElement.GetProperty("bits_per_byte").GetDouble(), viaModel, "--model is --config + --weights");

            (code, stdout, stderr) = CliTests.Mblm("generate", "--model", dir, "--prompt", "a ", "--max-bytes", "5", "--temperature", "0");
            Assert.AreEqual(0, code, stderr);
            (code, _, stderr) = CliTests.Mblm("train", "--model", dir, "--data", data, "--steps", "2", "--batch", "2", "--out", outDir);
            Assert.AreEqual(0, code, stderr);
            Assert.IsTrue(File.Exists(Path.Combine(outDir, "weights.safetensors")));

            (code, _, stderr) = CliTests.Mblm("eval", "--model", dir, "--config", Path.Combine(dir, "config.json"), "--data", data);
            Assert.AreEqual(1, code);
            StringAssert.Contains(stderr, "not both");
            (code, _, stderr) = CliTests.Mblm("eval", "--model", Path.Combine(dir, "missing"), "--data", data);
            Assert.AreEqual(2, code, stderr);
            StringAssert.Contains(stderr, "--model");
        }
        finally
        {
            foreach (var d in new[] { dir, outDir }) if (Directory.Exists(d)) Directory.Delete(d, true);
            File.Delete(data);
        }
    }
}
