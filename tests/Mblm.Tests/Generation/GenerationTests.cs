using System.Text.Json;
using Mblm.Config;
using Mblm.Generation;
using Mblm.Model;
using Mblm.Weights;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

[TestClass]
public sealed class GenerationTests
{
    public static IEnumerable<object[]> Models() =>
    [
        ["1 stage T", Cfg([16], [40], [T()])],
        ["1 stage S", Cfg([16], [40], [S()])],
        ["2 stages T,T", Cfg([16, 8], [10, 4], [T(), T()])],
        ["2 stages S,T", Cfg([16, 8], [10, 4], [S(), T()])],
        ["2 stages T,S", Cfg([16, 8], [10, 4], [T(), S()])],
        ["2 stages T,T without rotary", Cfg([16, 8], [10, 4], [T(rot: false), T(rot: false)])],
        ["2 stages S,S rope", Cfg([16, 8], [10, 4], [S(pos: PosEmbType.Rope), S(pos: PosEmbType.Fixed)])],
        ["3 stages T,T,T", Cfg([24, 16, 8], [5, 3, 2], [T(), T(pos: PosEmbType.Rope), T()], layers: [2, 1, 1])],
        ["3 stages S,T,S", Cfg([24, 16, 8], [5, 3, 2], [S(), T(), S()], layers: [1, 2, 1])],
        .. BlockExamples.Hierarchies([40], [10, 4]), // every registered causal block, plug-ins included
    ];

    [TestMethod]
    [DynamicData(nameof(Models))]
    public void CachedLogits_EqualFullForward_AtEveryStep(string name, MblmConfig config)
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(config, seed: 8);
        manual_seed(3);
        long total = Math.Min(config.MaxContext, 30);
        var sequence = randint(0, 256, new[] { 2, total });
        foreach (long promptLength in new long[] { 0, 1, 7, 13 })
        {
            using var decoder = new IncrementalDecoder(model, 2);
            decoder.Start(sequence[.., ..(int)promptLength]);
            for (long t = promptLength; t <= total; t++)
            {
                Tensor expected;
                using (no_grad())
                    expected = t == 0 ? model.Logits(sequence[.., ..1]).StartLogits : model.forward(sequence[.., ..(int)t])[.., -1, ..];
                double diff = (decoder.NextLogits - expected).abs().max().item<float>();
                Assert.IsTrue(diff <= 1e-4, $"{name}, prompt {promptLength}: logits after {t} tokens differ by {diff}");
                if (t < total) decoder.Append(sequence[.., (int)t]);
            }
        }
    }

    [TestMethod]
    [DataRow("v1_t2")]
    [DataRow("v2_t3")]
    [DataRow("v3_s2")]
    public void GoldenGreedyContinuation_Matches(string caseName)
    {
        string dir = TestData.Golden(caseName);
        using var scope = NewDisposeScope();
        var model = new MblmModel(ConfigReader.LoadModel(Path.Combine(dir, "config.json")));
        ModelWeights.Load(model, Path.Combine(dir, "weights.safetensors"));
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var greedy = expected.RootElement.GetProperty("greedy");
        int promptLength = greedy.GetProperty("prompt_len").GetInt32();
        var want = greedy.GetProperty("generated").EnumerateArray().Select(x => x.GetInt64()).ToArray();
        var (ids, _) = ReadInput(Path.Combine(dir, "input.json"));
        var generated = new MblmGenerator(model).Generate(ids[..1, ..promptLength], new SamplingOptions { MaxNewTokens = want.Length, TopK = 1 });
        CollectionAssert.AreEqual(want, generated[0]);
    }

    [TestMethod]
    public void Decoder_RestoresTrainingMode_AndWorksInFloat64()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [10, 4], [S(), T()]), seed: 3);
        model.train();
        using (var decoder = new IncrementalDecoder(model, 1)) decoder.Start(tensor(new long[] { 1, 2, 3 }).view(1, 3));
        Assert.IsTrue(model.training, "decoding must not leave a training model in eval mode");
        TorchSharp.ModuleExtensionMethods.to(model, ScalarType.Float64);
        var ids = randint(0, 256, new long[] { 1, 9 });
        using var d64 = new IncrementalDecoder(model, 1);
        d64.Start(ids);
        using var noGrad = no_grad();
        Assert.IsTrue((d64.NextLogits - model.forward(ids)[.., -1, ..]).abs().max().item<double>() < 1e-9);
    }
}

/// <summary>Scoring candidate continuations: the cached path (prefix decoded once, state repeated) equals the full forward.</summary>
[TestClass]
public sealed class ContinuationScorerTests
{
    public static IEnumerable<object[]> Models() =>
    [
        ["T,T", TestData.Cfg([16, 8], [8, 4], [TestData.T(), TestData.T()])],
        ["S,T", TestData.Cfg([16, 8], [8, 4], [TestData.S(), TestData.T()])],
        ["T,S,T", TestData.Cfg([16, 12, 8], [4, 3, 2], [TestData.T(), TestData.S(), TestData.T()])],
    ];

    [TestMethod]
    [DynamicData(nameof(Models))]
    public void Cached_EqualsRecompute(string name, Mblm.Config.MblmConfig config)
    {
        using var model = TestData.RandomModel(config, seed: 11);
        var rng = new Random(3);
        long[][] candidates = [[258, 121, 101, 115, 257], [258, 57, 257], [258, 110, 111, 257], [7]];
        foreach (int promptLength in new[] { 0, 1, 5, 13, 22 })
        {
            var prompt = Enumerable.Range(0, promptLength).Select(_ => (long)rng.Next(256)).ToArray();
            var cands = candidates.Select(c => c.Select(t => t % config.NumTokens == config.PadTokenId ? 1 : t % config.NumTokens).ToArray()).ToArray();
            if (prompt.Length + cands.Max(c => c.Length) > config.MaxContext) continue;
            var cached = Mblm.Inference.ContinuationScorer.LogLikelihoods(model, prompt, cands, cached: true);
            var full = Mblm.Inference.ContinuationScorer.LogLikelihoods(model, prompt, cands, cached: false);
            for (int i = 0; i < cands.Length; i++) Assert.AreEqual(full[i], cached[i], 1e-4, $"{name}, prompt {promptLength}, candidate {i}");
            Assert.IsTrue(full.All(x => x < 0));
        }
    }
}
