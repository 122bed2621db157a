using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using Mblm.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Text;

namespace Mblm.Tests;

public sealed class MixedOutput
{
    public string Text { get; set; } = "";
    public float BitsPerByte { get; set; }
    [VectorType(16)]
    public float[] Scaled { get; set; } = [];
    public string Completion { get; set; } = "";
}

/// <summary>Whole-pipeline save/load: mixed ML.NET + MBLM stages, a new process, atomic writes, format errors.</summary>
[TestClass]
public sealed class MLNetPersistenceTests
{
    private static string Temp(string name) => Path.Combine(Path.GetTempPath(), $"mblm-{Guid.NewGuid():N}-{name}");

    private static IDataView Data(MLContext ml, IEnumerable<string> rows) => ml.Data.LoadFromEnumerable(rows.Select(t => new TextRow { Text = t }).ToList());

    // ML.NET transforms before and after the MBLM stage.
    private static EstimatorChain<ColumnConcatenatingTransformer> MixedPipeline(MLContext ml) =>
        ml.Transforms.Text.NormalizeText("Text", caseMode: TextNormalizingEstimator.CaseMode.Lower)
            .Append(ml.Mblm().LanguageModel(MLNetTests.TinyOptions() with { MaxSteps = 6 }))
            .Append(ml.Transforms.NormalizeMinMax("Scaled", "Features"))
            .Append(ml.Transforms.Concatenate("Both", "Scaled", "Features"));

    private static (float[] Bpb, float[][] Scaled, string[] Completion, float[][] Both) Outputs(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        return (scored.GetColumn<float>("BitsPerByte").ToArray(), scored.GetColumn<float[]>("Scaled").ToArray(),
            scored.GetColumn<string>("Completion").ToArray(), scored.GetColumn<float[]>("Both").ToArray());
    }

    [TestMethod]
    public void MixedPipeline_RoundTrips_InThisProcessAndInANewOne()
    {
        var ml = new MLContext(seed: 3);
        var train = Data(ml, MLNetTests.Corpus);
        var model = MixedPipeline(ml).Fit(train);
        var rows = MLNetTests.Corpus.Take(5).Append("A NEW ROW, Never Seen").ToArray();
        var before = Outputs(model, Data(ml, rows));
        string path = Temp("pipeline.zip"), rowsFile = Temp("rows.txt");
        try
        {
            ml.Mblm().SaveModel(model, train.Schema, path);
            model.Dispose();

            var ml2 = new MLContext();
            using (var loaded = (TransformerChain<ITransformer>)ml2.Mblm().LoadModel(path, out var schema))
            {
                Assert.AreEqual("Text", schema.Single(c => !c.IsHidden).Name);
                Assert.AreEqual(4, loaded.Count(), "NormalizeText, MBLM, NormalizeMinMax, Concatenate");
                var after = Outputs(loaded, Data(ml2, rows));
                CollectionAssert.AreEqual(before.Bpb, after.Bpb);
                CollectionAssert.AreEqual(before.Completion, after.Completion);
                for (int i = 0; i < rows.Length; i++)
                {
                    CollectionAssert.AreEqual(before.Scaled[i], after.Scaled[i]);
                    CollectionAssert.AreEqual(before.Both[i], after.Both[i]);
                }
                // PredictionEngine over the loaded chain.
                using var engine = ml2.Model.CreatePredictionEngine<TextRow, MixedOutput>(loaded, new PredictionEngineOptions { OwnsTransformer = false });
                var p = engine.Predict(new TextRow { Text = rows[^1] });
                Assert.AreEqual(before.Bpb[^1], p.BitsPerByte, 1e-5);
                Assert.AreEqual("a new row, never seen", p.Text, "the ML.NET stage before ours ran");
            }

            // A new process: the mblm tool loads the file and prints the same numbers.
            File.WriteAllLines(rowsFile, rows);
            var (code, stdout, stderr) = CliTests.MblmProcess(AppContext.BaseDirectory, new Dictionary<string, string?>(),
                "predict", "--model", path, "--input-file", rowsFile);
            Assert.AreEqual(0, code, stderr);
            var lines = stdout.Trim().Split('\n');
            Assert.AreEqual(rows.Length, lines.Length, stdout);
            for (int i = 0; i < rows.Length; i++)
            {
                using var doc = JsonDocument.Parse(lines[i]);
                Assert.AreEqual(before.Bpb[i], doc.RootElement.GetProperty("BitsPerByte").GetSingle(), $"row {i}: {lines[i]}");
                Assert.AreEqual(before.Completion[i], doc.RootElement.GetProperty("Completion").GetString());
                var both = doc.RootElement.GetProperty("Both").EnumerateArray().Select(x => x.GetSingle()).ToArray();
                CollectionAssert.AreEqual(before.Both[i], both);
            }
        }
        finally
        {
            File.Delete(path);
            File.Delete(rowsFile);
        }
    }

    [TestMethod]
    public void FileLayout_IsTheDocumentedOne()
    {
        var ml = new MLContext(seed: 3);
        var train = Data(ml, MLNetTests.Corpus.Take(8));
        string path = Temp("layout.zip");
        try
        {
            using var model = MixedPipeline(ml).Fit(train);
            ml.Mblm().SaveModel(model, train.Schema, path);
            using var zip = ZipFile.OpenRead(path);
            CollectionAssert.AreEquivalent(new[]
            {
                "input-schema.zip", "stages/000/mlnet.zip", "stages/001/stage.json", "stages/001/model.json", "stages/001/model.safetensors",
                "stages/002/mlnet.zip", "mblm-pipeline.json",
            }, zip.Entries.Select(e => e.FullName).ToArray());
            using var manifest = JsonDocument.Parse(new StreamReader(zip.GetEntry("mblm-pipeline.json")!.Open()).ReadToEnd());
            Assert.AreEqual("mblm-mlnet-pipeline", manifest.RootElement.GetProperty("format").GetString());
            Assert.AreEqual(1, manifest.RootElement.GetProperty("version").GetInt32());
            CollectionAssert.AreEqual(new[] { "mlnet", "language-model", "mlnet" },
                manifest.RootElement.GetProperty("stages").EnumerateArray().Select(s => s.GetProperty("kind").GetString()).ToArray());
            // The documentation lists every entry.
            string doc = File.ReadAllText(Path.Combine(TestData.RepoRoot, "docs", "pipeline-format.md"));
            foreach (var name in new[] { "mblm-pipeline.json", "input-schema.zip", "mlnet.zip", "stage.json", "model.json", "model.safetensors" })
                StringAssert.Contains(doc, name);
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void MLNetModelSave_ThrowsNotSupported_NamingSaveModel()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, MLNetTests.Corpus.Take(8));
        using var model = ml.Transforms.CopyColumns("Copy", "Text").Append(ml.Mblm().LanguageModel(MLNetTests.TinyOptions() with { MaxSteps = 1 })).Fit(data);
        string path = Temp("mlnet.zip");
        try
        {
            var e = Assert.ThrowsExactly<NotSupportedException>(() => ml.Model.Save(model, data.Schema, path));
            StringAssert.Contains(e.Message, "mlContext.Mblm().SaveModel");
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void FailedSave_KeepsThePreviousFile()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, MLNetTests.Corpus.Take(8));
        using var good = ml.Mblm().LanguageModel(MLNetTests.TinyOptions() with { MaxSteps = 1 }).Fit(data);
        string path = Temp("keep.zip");
        try
        {
            ml.Mblm().SaveModel(good, data.Schema, path);
            var bytes = File.ReadAllBytes(path);
            // A CustomMapping without a contract name cannot be saved by ML.NET.
            var unsaveable = new TransformerChain<ITransformer>(good,
                ml.Transforms.CustomMapping<TextRow, TextRow>((i, o) => o.Text = i.Text, contractName: null).Fit(data));
            var e = Assert.ThrowsExactly<NotSupportedException>(() => ml.Mblm().SaveModel(unsaveable, data.Schema, path));
            StringAssert.Contains(e.Message, "CustomMappingTransformer");
            CollectionAssert.AreEqual(bytes, File.ReadAllBytes(path), "the old file is untouched");
            Assert.AreEqual(0, Directory.GetFiles(Path.GetDirectoryName(path)!, Path.GetFileName(path) + ".tmp-*").Length, "no temp file left");
            using var reloaded = (IDisposable)ml.Mblm().LoadModel(path, out _);
        }
        finally { File.Delete(path); }
    }

    // Options as JSON, for comparing two option records whatever their members (arrays and lists compare by value).
    internal static string Describe(MblmTrainingOptions options, Mblm.Config.MblmConfig sameConfig) =>
        JsonSerializer.Serialize(options with { ModelConfig = sameConfig }, options.GetType(),
            new JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals });

    [TestMethod]
    public void EveryOption_RoundTripsThroughTheFile()
    {
        var ml = new MLContext(seed: 1);
        var train = Data(ml, MLNetTests.Corpus.Take(8));
        var options = MLNetTests.TinyOptions(maxNewBytes: 5) with
        {
            InputColumnName = "Text", BitsPerByteColumnName = "Bpb", FeaturesColumnName = "Vec", CompletionColumnName = "More",
            MaxEpochs = 7, MaxSteps = 1, BatchSize = 3, LearningRate = 1.5e-3, WarmupFraction = 0.25, GradientClipping = null, ScoringBatchSize = 3,
            Sampling = new Mblm.Generation.SamplingOptions { Temperature = 0.7, TopK = 5, TopP = 0.9, Seed = 11, StopSequences = [[10L], [46L, 32L]] },
        };
        string path = Temp("options.zip");
        try
        {
            using (var model = ml.Mblm().LanguageModel(options).Fit(train))
                ml.Mblm().SaveModel(model, train.Schema, path);
            using var loaded = (TransformerChain<ITransformer>)new MLContext().Mblm().LoadModel(path, out _);
            var lm = (MblmLanguageModelTransformer)loaded.Single();
            Assert.AreEqual(Describe(options, MLNetTests.Tiny), Describe(lm.Options, MLNetTests.Tiny));
            Assert.AreEqual(Mblm.Config.ConfigWriter.ToJson(MLNetTests.Tiny), Mblm.Config.ConfigWriter.ToJson(lm.ModelConfig));
        }
        finally { File.Delete(path); }
    }

    // A copy of a version-1 fixture file with one entry's text edited.
    private static string EditedFixture(string entry, Func<string, string> edit)
    {
        string path = Temp("edited.zip");
        File.Copy(Path.Combine(TestData.RepoRoot, "tests", "Mblm.Tests", "Fixtures", "v1-language-model.zip"), path);
        using var zip = ZipFile.Open(path, ZipArchiveMode.Update);
        var old = zip.GetEntry(entry)!;
        string text;
        using (var r = new StreamReader(old.Open())) text = r.ReadToEnd();
        string edited = edit(text);
        Assert.AreNotEqual(text, edited, "the edit changed the entry");
        old.Delete();
        using var w = new StreamWriter(zip.CreateEntry(entry).Open());
        w.Write(edited);
        return path;
    }

    [TestMethod]
    public void NewerStageLayoutsAndUnknownKinds_GiveClearErrors()
    {
        var ml = new MLContext();
        foreach (var (edit, expected) in new (Func<string, string>, string)[]
                 {
                     (m => m.Replace("\"kind\": \"language-model\",", "\"kind\": \"language-model\", \"version\": 99,"), "layout version 99"),
                     (m => m.Replace("\"kind\": \"language-model\"", "\"kind\": \"speech-recognizer\""), "stage kind 'speech-recognizer'"),
                 })
        {
            string path = EditedFixture("mblm-pipeline.json", edit);
            try
            {
                var e = Assert.ThrowsExactly<MblmFormatException>(() => ml.Mblm().LoadModel(path, out _));
                StringAssert.Contains(e.Message, expected);
                StringAssert.Contains(e.Message, path);
            }
            finally { File.Delete(path); }
        }
    }

    [TestMethod]
    public void Version1Stage_WithoutGradientClipping_LoadsAsNone()
    {
        // Version-1 writers left null options out of stage.json: a missing gradientClipping meant "none".
        string path = EditedFixture("stages/001/stage.json", s => s.Replace("\"gradientClipping\": 1,", ""));
        try
        {
            using var loaded = (TransformerChain<ITransformer>)new MLContext().Mblm().LoadModel(path, out _);
            Assert.IsNull(((MblmLanguageModelTransformer)loaded.ElementAt(1)).Options.GradientClipping);
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void ForeignOrNewerFiles_GiveClearErrors()
    {
        var ml = new MLContext();
        string text = Temp("not-a-zip.zip"), newer = Temp("newer.zip");
        try
        {
            File.WriteAllText(text, "hello");
            var e = Assert.ThrowsExactly<MblmFormatException>(() => ml.Mblm().LoadModel(text, out _));
            StringAssert.Contains(e.Message, text);
            using (var zip = ZipFile.Open(newer, ZipArchiveMode.Create))
            using (var w = new StreamWriter(zip.CreateEntry("mblm-pipeline.json").Open()))
                w.Write("""{"format": "mblm-mlnet-pipeline", "version": 99, "library": "Mblm.MLNet 9", "stages": []}""");
            e = Assert.ThrowsExactly<MblmFormatException>(() => ml.Mblm().LoadModel(newer, out _));
            StringAssert.Contains(e.Message, "version 99");
            Assert.ThrowsExactly<FileNotFoundException>(() => ml.Mblm().LoadModel(Temp("missing.zip"), out _));
        }
        finally
        {
            File.Delete(text);
            File.Delete(newer);
        }
    }
}
