using System.Text.Json;
using Mblm.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.Tests;

/// <summary>
/// Pipeline files written by an earlier Mblm.MLNet keep loading: <c>Fixtures/v1-*.zip</c> were saved by format version 1
/// (the code of commit "test fixtures: pipeline files saved by format version 1") with their outputs for a few rows in
/// <c>Fixtures/v1-*.json</c>. They were written by <c>tests/FixtureWriter</c>
/// (<c>dotnet run --project tests/FixtureWriter -- tests/Mblm.Tests/Fixtures</c>); do not regenerate them to make this test
/// pass — they stand for files users already have.
/// </summary>
[TestClass]
public sealed class FixtureTests
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    private static string Fixture(string name) => Path.Combine(TestData.RepoRoot, "tests", "Mblm.Tests", "Fixtures", name);

    private sealed record LanguageModelRow(string Text, float BitsPerByte, float[] Features, float[] Scaled, string Completion);
    private sealed record LanguageModelFixture(int FormatVersion, List<LanguageModelRow> Rows);
    private sealed record AnswerClassifierRow(string ImagePng, string Question, string Answer, float[] Score, string PredictedAnswer);
    private sealed record AnswerClassifierFixture(int FormatVersion, List<AnswerClassifierRow> Rows);

    private sealed record TextClassifierRow(string Text, float[] Score, string PredictedKind);
    private sealed record TextClassifierFixture(int FormatVersion, List<TextClassifierRow> Rows);

    private sealed class TextKindRow
    {
        public string Text { get; set; } = "";
        public string Kind { get; set; } = "";
    }

    private sealed class ImageQuestion
    {
        [VectorType]
        public byte[] Image { get; set; } = [];
        public string Question { get; set; } = "";
        public string Answer { get; set; } = "";
    }

    private static T Read<T>(string name) => JsonSerializer.Deserialize<T>(File.ReadAllText(Fixture(name)), Json)!;

    private static void AreClose(float[] expected, float[] actual, string what)
    {
        Assert.AreEqual(expected.Length, actual.Length, what);
        for (int i = 0; i < expected.Length; i++) Assert.AreEqual(expected[i], actual[i], 1e-5, $"{what}[{i}]");
    }

    [TestMethod]
    public void AnOldStage_WithoutTheLevelsKey_KeepsAll256Levels_WhileNewOptionsDefaultTo8()
    {
        Assert.AreEqual(8, new Mblm.MLNet.Vision.ImageByteOptions().Levels);
        Assert.AreEqual(8, new Mblm.MLNet.Vision.MblmAnswerClassifierTrainer.Options().Image.Levels);
        // Files written before nulls were written out left Levels out when it was null (all 256 levels): such a file must not
        // take today's default. The v1 fixture with its "levels" key removed stands for one.
        string copy = Path.Combine(Path.GetTempPath(), $"mblm-fixture-levels-{Guid.NewGuid():N}.zip");
        File.Copy(Fixture("v1-answer-classifier.zip"), copy);
        try
        {
            using (var zip = System.IO.Compression.ZipFile.Open(copy, System.IO.Compression.ZipArchiveMode.Update))
            {
                var entry = zip.GetEntry("stages/001/stage.json")!;
                System.Text.Json.Nodes.JsonObject stage;
                using (var reader = new StreamReader(entry.Open())) stage = System.Text.Json.Nodes.JsonNode.Parse(reader.ReadToEnd())!.AsObject();
                Assert.AreEqual(8, (int)stage["image"]!["levels"]!, "the fixture sets 8 levels");
                Assert.IsTrue(stage["image"]!.AsObject().Remove("levels"));
                entry.Delete();
                using var writer = new StreamWriter(zip.CreateEntry("stages/001/stage.json").Open());
                writer.Write(stage.ToJsonString());
            }
            var ml = new MLContext();
            using var model = (TransformerChain<ITransformer>)ml.Mblm().LoadModel(copy, out _);
            var image = ((Mblm.MLNet.Vision.MblmAnswerClassifierTransformer)model.ElementAt(1)).Options.Image;
            Assert.IsNull(image.Levels, "a stage without the key was written when Levels was null");
            Assert.IsNull(image.MaxPixels, "and without maxPixels when images kept their size");
        }
        finally { File.Delete(copy); }
    }

    [TestMethod]
    public void Fixture_pipelines_saved_by_format_version_1_still_load()
    {
        var ml = new MLContext();

        // (a) NormalizeText -> MBLM language model (with completions) -> NormalizeMinMax.
        var lm = Read<LanguageModelFixture>("v1-language-model.json");
        Assert.AreEqual(1, lm.FormatVersion);
        using (var model = (TransformerChain<ITransformer>)ml.Mblm().LoadModel(Fixture("v1-language-model.zip"), out var lmSchema))
        {
            Assert.AreEqual(3, model.Count());
            Assert.IsInstanceOfType<MblmLanguageModelTransformer>(model.ElementAt(1));
            Assert.AreEqual("Text", lmSchema.Single(c => !c.IsHidden).Name);
            var scored = model.Transform(ml.Data.LoadFromEnumerable(lm.Rows.Select(r => new TextRow { Text = r.Text }).ToList()));
            var bpb = scored.GetColumn<float>("BitsPerByte").ToArray();
            var features = scored.GetColumn<float[]>("Features").ToArray();
            var scaled = scored.GetColumn<float[]>("Scaled").ToArray();
            var completion = scored.GetColumn<string>("Completion").ToArray();
            for (int i = 0; i < lm.Rows.Count; i++)
            {
                var want = lm.Rows[i];
                Assert.AreEqual(want.BitsPerByte, bpb[i], 1e-5, $"row {i} bits per byte");
                AreClose(want.Features, features[i], $"row {i} features");
                AreClose(want.Scaled, scaled[i], $"row {i} scaled");
                Assert.AreEqual(want.Completion, completion[i], $"row {i} completion");
            }
        }

        // (b) MapValueToKey -> MBLM answer classifier -> MapKeyToValue, images as PNG file bytes.
        var vqa = Read<AnswerClassifierFixture>("v1-answer-classifier.json");
        Assert.AreEqual(1, vqa.FormatVersion);
        using (var model = (TransformerChain<ITransformer>)ml.Mblm().LoadModel(Fixture("v1-answer-classifier.zip"), out _))
        {
            Assert.AreEqual(3, model.Count());
            Assert.IsInstanceOfType<Mblm.MLNet.Vision.MblmAnswerClassifierTransformer>(model.ElementAt(1));
            Assert.IsNull(((Mblm.MLNet.Vision.MblmAnswerClassifierTransformer)model.ElementAt(1)).Options.Image.MaxPixels,
                "files written before MaxPixels keep their images' sizes");
            var rows = vqa.Rows.Select(r => new ImageQuestion { Image = Convert.FromBase64String(r.ImagePng), Question = r.Question, Answer = r.Answer }).ToList();
            var scored = model.Transform(ml.Data.LoadFromEnumerable(rows));
            var scores = scored.GetColumn<float[]>("Score").ToArray();
            var predicted = scored.GetColumn<string>("PredictedAnswer").ToArray();
            for (int i = 0; i < vqa.Rows.Count; i++)
            {
                AreClose(vqa.Rows[i].Score, scores[i], $"row {i} score");
                Assert.AreEqual(vqa.Rows[i].PredictedAnswer, predicted[i], $"row {i} predicted answer");
            }
            Assert.AreEqual(Mblm.MLNet.Classification.MblmClassifierObjective.LabelLikelihood,
                ((Mblm.MLNet.Vision.MblmAnswerClassifierTransformer)model.ElementAt(1)).Options.Objective, "a layout-1 stage is read as label likelihood");
        }

        // (c) MapValueToKey -> MBLM text classifier (layout 1: label likelihood, written at commit 08bbcb0) -> MapKeyToValue.
        var text = Read<TextClassifierFixture>("v1-text-classifier.json");
        Assert.AreEqual(1, text.FormatVersion);
        using (var model = (TransformerChain<ITransformer>)ml.Mblm().LoadModel(Fixture("v1-text-classifier.zip"), out _))
        {
            var classifier = (Mblm.MLNet.Text.MblmTextClassifierTransformer)model.ElementAt(1);
            Assert.AreEqual(Mblm.MLNet.Classification.MblmClassifierObjective.LabelLikelihood, classifier.Options.Objective, "a layout-1 stage is read as label likelihood");
            var scored = model.Transform(ml.Data.LoadFromEnumerable(text.Rows.Select(r => new TextKindRow { Text = r.Text, Kind = "code" }).ToList()));
            var scores = scored.GetColumn<float[]>("Score").ToArray();
            var predicted = scored.GetColumn<string>("PredictedKind").ToArray();
            for (int i = 0; i < text.Rows.Count; i++)
            {
                AreClose(text.Rows[i].Score, scores[i], $"text row {i} score");
                Assert.AreEqual(text.Rows[i].PredictedKind, predicted[i], $"text row {i} predicted kind");
            }
        }
    }
}
