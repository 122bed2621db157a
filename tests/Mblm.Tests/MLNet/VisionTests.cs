using System.Text;
using Mblm.Config;
using Mblm.MLNet;
using Mblm.Examples;
using Mblm.MLNet.Vision;
using Mblm.Model;
using Mblm.Weights;
using Microsoft.ML;
using Microsoft.ML.Data;
using static TorchSharp.torch;

namespace Mblm.Tests;

public sealed class VqaPrediction
{
    public string PredictedAnswer { get; set; } = "";
    public float[] Score { get; set; } = [];
}

/// <summary>Images as bytes, the VQA layout and vocabulary, the CLEVR-like generator and the answer classifier.</summary>
[TestClass]
public sealed class VisionTests
{
    // 2×2 image: pixel (x, y) has R = 10x + y·100, G = 1 + x, B = 200 + y.
    private static RgbImage Tiny2x2() => new(2, 2, [0, 10, 100, 110, 1, 2, 1, 2, 200, 200, 201, 201]);

    [TestMethod]
    public void Pixels_ArePlanarRgb_RowMajor()
    {
        var bytes = ImageBytes.Encode(Tiny2x2(), new ImageByteOptions { Levels = null });
        CollectionAssert.AreEqual(new byte[] { 0, 10, 100, 110, 1, 2, 1, 2, 200, 200, 201, 201 }, bytes);
        // By default every channel is discretised into 8 levels first (the same bytes as Levels = 8).
        CollectionAssert.AreEqual(ImageBytes.Encode(Tiny2x2(), new ImageByteOptions { Levels = 8 }), ImageBytes.Encode(Tiny2x2(), new ImageByteOptions()));
        CollectionAssert.AreNotEqual(bytes, ImageBytes.Encode(Tiny2x2(), new ImageByteOptions()));
        // Through a PNG file and back (lossless): the same planes.
        var png = ImageBytes.Encode(Tiny2x2(), new ImageByteOptions { Encoding = ImageEncoding.Png, Levels = null });
        CollectionAssert.AreEqual(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png.Take(4).ToArray());
        CollectionAssert.AreEqual(bytes, RgbImage.Decode(png).Planar);
        var jpeg = ImageBytes.Encode(Tiny2x2(), new ImageByteOptions { Encoding = ImageEncoding.Jpeg, JpegQuality = 90 });
        CollectionAssert.AreEqual(new byte[] { 0xFF, 0xD8 }, jpeg.Take(2).ToArray());
    }

    [TestMethod]
    public void MLImage_BgraIsReadAsRgb()
    {
        // One pixel B=1, G=2, R=3, A=255.
        using var image = MLImage.CreateFromPixels(1, 1, MLPixelFormat.Bgra32, new byte[] { 1, 2, 3, 255 });
        CollectionAssert.AreEqual(new byte[] { 3, 2, 1 }, RgbImage.From(image).Planar);
    }

    [TestMethod]
    public void Crop_FollowsTheReferenceMarginRule_AndDiscretisationUsesBinMeans()
    {
        // 10x4 image, values = x + 10y in every channel; crop 25 % of the width (int(2.5) = 2 each side), 30 % of height (1 each side).
        var plane = Enumerable.Range(0, 40).Select(i => (byte)(i % 10 + 10 * (i / 10))).ToArray();
        var img = new RgbImage(10, 4, plane.Concat(plane).Concat(plane).ToArray());
        var cropped = ImageBytes.Crop(img, heightFraction: 0.3, widthFraction: 0.25);
        Assert.AreEqual(6, cropped.Width);
        Assert.AreEqual(2, cropped.Height);
        CollectionAssert.AreEqual(new byte[] { 12, 13, 14, 15, 16, 17, 22, 23, 24, 25, 26, 27 }, cropped.Planar.Take(12).ToArray());
        // 8 levels: bins of 32, value = bin mean rounded down (0..31 → 15, 32..63 → 47, …, 224..255 → 239).
        var d = ImageBytes.Discretise(new RgbImage(4, 1, [0, 31, 32, 255, 100, 128, 200, 224, 1, 2, 3, 4]), 8);
        CollectionAssert.AreEqual(new byte[] { 15, 15, 47, 239, 111, 143, 207, 239, 15, 15, 15, 15 }, d.Planar);
        // 3 levels: bins [0,85], [86,170], [171,255].
        CollectionAssert.AreEqual(new byte[] { 42, 42, 128, 128, 213, 213 },
            ImageBytes.Discretise(new RgbImage(2, 1, [0, 85, 86, 170, 171, 255]), 3).Planar);
        var resized = ImageBytes.Encode(img, new ImageByteOptions { ResizeWidth = 5, ResizeHeight = 2 });
        Assert.AreEqual(30, resized.Length);
    }

    [TestMethod]
    public void Layout_QuestionImageQuestionAnswer_WithOutOfByteSpecialTokens()
    {
        Assert.AreEqual(260, VqaLayout.NumTokens);
        var (ids, mask) = VqaLayout.Sample(Encoding.UTF8.GetBytes("Q?"), [128, 129, 130, 131], Encoding.UTF8.GetBytes("no"));
        CollectionAssert.AreEqual(new long[] { 258, 81, 63, 257, 259, 128, 129, 130, 131, 257, 258, 81, 63, 257, 258, 110, 111, 257 }, ids);
        CollectionAssert.AreEqual(Enumerable.Repeat(0f, 14).Concat(Enumerable.Repeat(1f, 4)).ToArray(), mask, "loss on the answer segment only");
        // Pixel values 128..131 stay bytes: no special id below 256.
        Assert.IsTrue(ids.Skip(5).Take(4).All(i => i < 256));
    }

    [TestMethod]
    public void Generator_IsSeededAndAnswersAreConsistent()
    {
        var a = new ClevrLikeGenerator(seed: 5).Generate(30, 5);
        var b = new ClevrLikeGenerator(seed: 5).Generate(30, 5);
        var c = new ClevrLikeGenerator(seed: 6).Generate(30, 5);
        CollectionAssert.AreEqual(a.Select(e => e.Question + "=" + e.Answer).ToArray(), b.Select(e => e.Question + "=" + e.Answer).ToArray());
        CollectionAssert.AreEqual(a[0].Image.Planar, b[0].Image.Planar);
        CollectionAssert.AreNotEqual(a.Select(e => e.Question).ToArray(), c.Select(e => e.Question).ToArray());
        CollectionAssert.AreEquivalent(ClevrLikeGenerator.Families, a.Select(e => e.Family).Distinct().ToArray());
        Assert.IsTrue(a.All(e => ClevrLikeGenerator.AllAnswers.Contains(e.Answer)), string.Join(", ", a.Select(e => e.Answer).Distinct()));
        Assert.AreEqual(64 * 48 * 3, a[0].Image.Planar.Length);
        Assert.IsTrue(a[0].Image.Planar.Distinct().Count() > 3, "objects are drawn");
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-clevr-{Guid.NewGuid():N}");
        try
        {
            ClevrLikeGenerator.WriteTo(dir, a.Take(10));
            var lines = File.ReadAllLines(Path.Combine(dir, "questions.tsv"));
            Assert.AreEqual(11, lines.Length);
            Assert.IsTrue(File.Exists(Path.Combine(dir, "images", "scene-00000.png")));
        }
        finally { Directory.Delete(dir, true); }
    }

    internal static readonly MblmConfig TinyVqa = TestData.Cfg([32, 16], [128, 4],
        [TestData.T(heads: 2, headDim: 8, pos: PosEmbType.None), TestData.T(heads: 2, headDim: 8)], numTokens: 260, pad: 256);

    internal static MblmAnswerClassifierTrainer.Options TinyOptions => new()
    {
        LabelColumnName = "Label", ModelConfig = TinyVqa, Image = new() { ResizeWidth = 8, ResizeHeight = 6, Levels = 8 }, MaxSteps = 12, BatchSize = 8, LearningRate = 5e-3,
    };

    private static (MLContext Ml, IDataView Train, IDataView Test, IEstimator<ITransformer> Pipeline) Setup(MblmAnswerClassifierTrainer.Options options)
    {
        var ml = new MLContext(seed: 1);
        var examples = new ClevrLikeGenerator(seed: 2).Generate(24, 3);
        var data = ClevrLikeGenerator.ToDataView(ml, examples);
        var keys = ClevrLikeGenerator.AnswerKeyData(ml);
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Answer", keyData: keys)
            .Append(ml.Mblm().AnswerClassifier(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedAnswer", "PredictedLabel"));
        var split = ml.Data.TrainTestSplit(data, 0.25, samplingKeyColumnName: "SceneId", seed: 1);
        return (ml, split.TrainSet, split.TestSet, pipeline);
    }

    [TestMethod]
    public void AnswerClassifier_TrainsEvaluatesAndRoundTrips()
    {
        var (ml, train, test, pipeline) = Setup(TinyOptions);
        var model = pipeline.Fit(train);
        var scored = model.Transform(test);
        var metrics = ml.MulticlassClassification.Evaluate(scored, labelColumnName: "Label");
        Assert.IsTrue(double.IsFinite(metrics.LogLoss), "Score holds probabilities");
        var scores = scored.GetColumn<float[]>("Score").ToArray();
        Assert.AreEqual(ClevrLikeGenerator.AllAnswers.Count, scores[0].Length);
        foreach (var s in scores) Assert.AreEqual(1.0, s.Sum(), 1e-4);
        var predicted = scored.GetColumn<string>("PredictedAnswer").ToArray();
        Assert.IsTrue(predicted.All(p => ClevrLikeGenerator.AllAnswers.Contains(p)));
        VBuffer<ReadOnlyMemory<char>> slots = default;
        scored.Schema["Score"].GetSlotNames(ref slots);
        CollectionAssert.AreEqual(ClevrLikeGenerator.AllAnswers.ToArray(), slots.DenseValues().Select(v => v.ToString()).ToArray());
        // Predicted = argmax of the scores.
        for (int i = 0; i < scores.Length; i++) Assert.AreEqual(ClevrLikeGenerator.AllAnswers[Array.IndexOf(scores[i], scores[i].Max())], predicted[i]);

        string path = Path.Combine(Path.GetTempPath(), $"mblm-vqa-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Mblm().SaveModel(model, train.Schema, path);
            var ml2 = new MLContext();
            using var loaded = (TransformerChain<ITransformer>)ml2.Mblm().LoadModel(path, out _);
            var classifier = (MblmAnswerClassifierTransformer)loaded.ElementAt(1);
            var fitted = (MblmAnswerClassifierTransformer)((IEnumerable<ITransformer>)model).ElementAt(1);
            Assert.AreEqual(MLNetPersistenceTests.Describe(fitted.Options, TinyVqa), MLNetPersistenceTests.Describe(classifier.Options, TinyVqa), "every option survives the file");
            CollectionAssert.AreEqual(fitted.Answers.ToArray(), classifier.Answers.ToArray());
            var again = loaded.Transform(test);
            CollectionAssert.AreEqual(predicted, again.GetColumn<string>("PredictedAnswer").ToArray());
            var s2 = again.GetColumn<float[]>("Score").ToArray();
            for (int i = 0; i < scores.Length; i++) CollectionAssert.AreEqual(scores[i], s2[i]);
            using var engine = ml2.Model.CreatePredictionEngine<VqaRow, VqaPrediction>(loaded, new PredictionEngineOptions { OwnsTransformer = false });
            var row = ml.Data.CreateEnumerable<VqaRow>(test, false).First();
            Assert.AreEqual(predicted[0], engine.Predict(row).PredictedAnswer);
            // No native tensors left behind by predictions.
            long before = TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
            for (int i = 0; i < 5; i++) engine.Predict(row);
            Assert.AreEqual(before, TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount, "live tensors after 5 more predictions");
        }
        finally { File.Delete(path); ((IDisposable)model).Dispose(); }
    }

    public sealed class ColourRow
    {
        public byte[] Image { get; set; } = [];
        public string Question { get; set; } = "";
        public string Answer { get; set; } = "";
    }

    // Solid-colour PNG images with per-image brightness noise: "what colour is it?" has one learnable answer per image.
    private static ColourRow[] ColourRows(int count, int seed)
    {
        var colours = new (string Name, byte R, byte G, byte B)[] { ("red", 200, 30, 30), ("green", 30, 190, 40), ("blue", 40, 40, 210), ("yellow", 210, 200, 40) };
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(i =>
        {
            var c = colours[rng.Next(colours.Length)];
            int d = rng.Next(-25, 26);
            using var bitmap = new SkiaSharp.SKBitmap(8, 6);
            bitmap.Erase(new SkiaSharp.SKColor((byte)Math.Clamp(c.R + d, 0, 255), (byte)Math.Clamp(c.G + d, 0, 255), (byte)Math.Clamp(c.B + d, 0, 255)));
            using var png = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
            return new ColourRow { Image = png.ToArray(), Question = "what colour is it?", Answer = c.Name };
        }).ToArray();
    }

    [TestMethod]
    public void AnswerClassifier_LearnsALearnableTask_WellAboveTheMajorityAnswer()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ColourRows(96, seed: 1));
        var testRows = ColourRows(32, seed: 2);
        var test = ml.Data.LoadFromEnumerable(testRows);
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Answer")
            .Append(ml.Mblm().AnswerClassifier(TinyOptions with { MaxSteps = 200, MaxEpochs = 100, LearningRate = 5e-3 }));
        using var model = (IDisposable)pipeline.Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(((ITransformer)model).Transform(test), labelColumnName: "Label");
        double majority = testRows.GroupBy(r => r.Answer).Max(g => g.Count()) / (double)testRows.Length;
        Assert.IsTrue(metrics.MicroAccuracy >= 0.8 && metrics.MicroAccuracy > majority + 0.3,
            $"accuracy {metrics.MicroAccuracy:F2} on held-out images, majority answer {majority:F2}");
    }

    [TestMethod]
    public void AnswerClassifier_ReadsMLImageAndRawFileBytes_Alike()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-vqa-files-{Guid.NewGuid():N}");
        try
        {
            ClevrLikeGenerator.WriteTo(dir, new ClevrLikeGenerator(seed: 4).Generate(12, 2));
            var ml = new MLContext(seed: 1);
            var tsv = ml.Data.LoadFromTextFile(Path.Combine(dir, "questions.tsv"),
                [new TextLoader.Column("Path", DataKind.String, 0), new TextLoader.Column("Question", DataKind.String, 1), new TextLoader.Column("Answer", DataKind.String, 2)],
                separatorChar: '\t', hasHeader: true);
            var keys = ml.Transforms.Conversion.MapValueToKey("Label", "Answer", keyData: ClevrLikeGenerator.AnswerKeyData(ml));
            var viaImages = keys.Append(ml.Transforms.LoadImages("Image", dir, "Path"));
            var viaBytes = keys.Append(ml.Transforms.LoadRawImageBytes("Image", dir, "Path"));
            using var model = viaImages.Append(ml.Mblm().AnswerClassifier(TinyOptions with { MaxSteps = 3 })).Fit(tsv);
            var classifier = model.LastTransformer;
            // The same fitted classifier over an MLImage column and over the PNG files' raw bytes.
            var sa = model.Transform(tsv).GetColumn<float[]>("Score").ToArray();
            var sb = classifier.Transform(viaBytes.Fit(tsv).Transform(tsv)).GetColumn<float[]>("Score").ToArray();
            Assert.AreEqual(24, sa.Length);
            for (int i = 0; i < sa.Length; i++) CollectionAssert.AreEqual(sa[i], sb[i], "the same pixels from an MLImage and from the PNG bytes");
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void AnswerClassifier_SchemaErrors()
    {
        var ml = new MLContext();
        var data = ClevrLikeGenerator.ToDataView(ml, new ClevrLikeGenerator(1).Generate(2, 1));
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Mblm().AnswerClassifier(TinyOptions with { LabelColumnName = "Answer" }).Fit(data));
        StringAssert.Contains(e.Message, "Schema mismatch for label column 'Answer': expected Key<UInt32>");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Mblm().AnswerClassifier(TinyOptions with { ImageColumnName = "Question" }).Fit(data));
        StringAssert.Contains(e.Message, "Schema mismatch for image column 'Question'");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Mblm().AnswerClassifier(TinyOptions with { ModelConfig = MLNetTests.Tiny }));
        StringAssert.Contains(e.Message, "num_tokens >= 260");
    }

    [TestMethod]
    public void Transfer_CopiesByteRows_AndInitialisesSpecialRowsFresh()
    {
        var lmConfig = TinyVqa with { NumTokens = 257 };
        var lm = TestData.RandomModel(lmConfig, seed: 3);
        manual_seed(9);
        using var vqa = new MblmModel(TinyVqa);
        var fresh = vqa.state_dict()["to_logits.weight"].clone();
        long old = ModelWeights.LoadGrowingVocabulary(vqa, lm.state_dict());
        Assert.AreEqual(257, old);
        var state = vqa.state_dict();
        foreach (var name in new[] { "to_logits.weight", "to_logits.bias", "token_embs_rev.0.weight", "token_embs_rev.1.0.weight" })
        {
            Assert.IsTrue(state[name][..257].allclose(lm.state_dict()[name], 0, 0), name);
            Assert.AreEqual(260, state[name].shape[0]);
        }
        Assert.IsTrue(state["to_logits.weight"][257..].allclose(fresh[257..], 0, 0), "special rows keep their fresh init");
        Assert.IsTrue(state["to_logits.weight"][..257].allclose(lm.state_dict()["to_logits.weight"], 0, 0));
        // A model that differs elsewhere is refused.
        var other = TestData.RandomModel(TestData.Cfg([32, 8], [128, 4], [TestData.T(heads: 2, headDim: 8, pos: PosEmbType.None), TestData.T(heads: 2, headDim: 4)]), seed: 1);
        Assert.ThrowsExactly<WeightsMismatchException>(() => ModelWeights.LoadGrowingVocabulary(vqa, other.state_dict()));
    }

    [TestMethod]
    public void AnswerClassifier_TransfersFromASavedLanguageModel()
    {
        string path = MLNetTests.SaveTinyLanguageModel(TinyVqa with { NumTokens = 257 });
        try
        {
            var logs = new List<string>();
            var (ml2, train, _, pipeline) = Setup(TinyOptions with { TransferFrom = path, MaxSteps = 1 });
            ml2.Log += (_, e) => { lock (logs) logs.Add(e.Message); };
            using var model = (IDisposable)pipeline.Fit(train);
            Assert.IsTrue(logs.Any(l => l.Contains("vocabulary 257 → 260")), string.Join("\n", logs.Where(l => l.Contains("MBLM"))));
        }
        finally { File.Delete(path); }
    }
}
