using System.Text;
using System.Text.Json;
using Mblm.Generation;
using Mblm.Weights;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

[TestClass]
public sealed class SamplingTests
{
    private static Tensor Logits() => tensor(new float[] { 0, 3, 1, 2, -1, 2.5f }).view(1, 6);

    [TestMethod]
    public void Greedy_TopK1_AndTemperatureZero_PickTheArgmax()
    {
        Assert.AreEqual(1L, new Sampler(new SamplingOptions { TopK = 1, Temperature = 5 }).Next(Logits()).item<long>());
        Assert.AreEqual(1L, new Sampler(new SamplingOptions { Temperature = 0 }).Next(Logits()).item<long>());
    }

    [TestMethod]
    public void TopK_And_TopP_RestrictTheSupport_AndSeedsRepeat()
    {
        var top2 = new Sampler(new SamplingOptions { TopK = 2, Seed = 1 });
        var seen = Enumerable.Range(0, 200).Select(_ => top2.Next(Logits()).item<long>()).ToHashSet();
        CollectionAssert.AreEquivalent(new long[] { 1, 5 }, seen.ToArray());
        // softmax mass: 3 → 0.44, 2.5 → 0.27, 2 → 0.16 …; p = 0.6 keeps {1, 5}, p = 0.8 keeps {1, 5, 3}.
        var topP = new Sampler(new SamplingOptions { TopP = 0.8, Seed = 2 });
        seen = Enumerable.Range(0, 300).Select(_ => topP.Next(Logits()).item<long>()).ToHashSet();
        CollectionAssert.AreEquivalent(new long[] { 1, 3, 5 }, seen.ToArray());
        long[] Draw(long seed) { var s = new Sampler(new SamplingOptions { Seed = seed }); return Enumerable.Range(0, 50).Select(_ => s.Next(Logits()).item<long>()).ToArray(); }
        CollectionAssert.AreEqual(Draw(7), Draw(7));
        CollectionAssert.AreNotEqual(Draw(7), Draw(8));
    }

    [TestMethod]
    public void InvalidOptions_NameTheOption()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => new SamplingOptions { TopP = 1.5 }.Validate());
        Assert.AreEqual("TopP", e.ParamName);
        Assert.ThrowsExactly<ArgumentException>(() => new SamplingOptions { TopK = 0 }.Validate());
    }

    [TestMethod]
    public void StopSequence_EndsGeneration_AndIsIncluded()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [10, 4], [S(), T()]), seed: 2);
        var generator = new MblmGenerator(model);
        var prompt = tensor(new long[] { 72, 105 }).view(1, 2);
        var free = generator.Generate(prompt, new SamplingOptions { MaxNewTokens = 12, TopK = 1 })[0];
        var stop = free.Skip(3).Take(2).ToArray();
        var stopped = generator.GenerateDetailed(prompt, new SamplingOptions { MaxNewTokens = 12, TopK = 1, StopSequences = [stop] })[0];
        Assert.AreEqual(StopReason.StopSequence, stopped.StopReason);
        CollectionAssert.AreEqual(free.Take(stopped.Tokens.Length).ToArray(), stopped.Tokens);
        CollectionAssert.AreEqual(stop, stopped.Tokens[^2..]);
    }

    [TestMethod]
    public void RaggedPrompts_EqualGeneratingEachAlone()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [10, 4], [T(), S()]), seed: 4);
        var generator = new MblmGenerator(model);
        long[][] prompts = [[1, 2, 3], [9], [4, 5, 6], []];
        var options = new SamplingOptions { MaxNewTokens = 6, TopK = 1 };
        var together = generator.Generate(prompts, options);
        for (int i = 0; i < prompts.Length; i++)
            CollectionAssert.AreEqual(generator.Generate(tensor(prompts[i], new long[] { 1, prompts[i].Length }), options)[0], together[i].Tokens, $"prompt {i}");
    }

    [TestMethod]
    public void ContextFull_StopsWithReason_OrSlidesTheWindow()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [3, 4], [T(), T()]), seed: 2); // max context 12 with fixed stage-0 positions
        var generator = new MblmGenerator(model);
        var prompt = randint(0, 256, new long[] { 1, 8 });
        var stopped = generator.GenerateDetailed(prompt, new SamplingOptions { MaxNewTokens = 10, TopK = 1 })[0];
        Assert.AreEqual(StopReason.ContextFull, stopped.StopReason);
        Assert.AreEqual(4, stopped.Tokens.Length);
        var slid = generator.GenerateDetailed(prompt, new SamplingOptions { MaxNewTokens = 10, TopK = 1, Overflow = ContextOverflow.SlidingWindow })[0];
        Assert.AreEqual(10, slid.Tokens.Length);
        CollectionAssert.AreEqual(stopped.Tokens, slid.Tokens[..4]);
    }

    [TestMethod]
    public async Task StreamText_EqualsDecodingAllBytes_AndCancels()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [10, 4], [S(), T()]), seed: 5);
        var generator = new MblmGenerator(model);
        var options = new SamplingOptions { MaxNewTokens = 30, Seed = 3, Temperature = 1.5 };
        var ids = generator.Generate(tensor(Encoding.UTF8.GetBytes("é").Select(b => (long)b).ToArray()).view(1, -1), options)[0];
        var text = new StringBuilder();
        await foreach (var piece in generator.StreamText("é", options)) text.Append(piece);
        Assert.AreEqual(Encoding.UTF8.GetString(ids.Where(i => i < 256).Select(i => (byte)i).ToArray()), text.ToString());

        using var cts = new CancellationTokenSource();
        int count = 0;
        await Assert.ThrowsAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in generator.StreamTokens([1, 2, 3], options with { MaxNewTokens = 1000 }, cts.Token))
                if (++count == 3) cts.Cancel();
        });
        Assert.AreEqual(3, count);
    }

    [TestMethod]
    public void CliGenerate_PromptIdsToIdsOut_ReproducesGoldenGreedy()
    {
        string dir = TestData.Golden("v1_t2");
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var greedy = expected.RootElement.GetProperty("greedy");
        int n = greedy.GetProperty("prompt_len").GetInt32();
        using var input = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "input.json")));
        var prompt = input.RootElement.GetProperty("ids")[0].EnumerateArray().Take(n).Select(x => x.GetInt64()).ToArray();
        string promptFile = Path.GetTempFileName(), idsOut = Path.GetTempFileName();
        try
        {
            File.WriteAllText(promptFile, JsonSerializer.Serialize(prompt));
            var (code, _, err) = CliTests.Mblm("generate", "--config", Path.Combine(dir, "config.json"), "--weights", Path.Combine(dir, "weights.safetensors"),
                "--prompt-ids", promptFile, "--max-bytes", "16", "--top-k", "1", "--ids-out", idsOut, "--device", "cpu");
            Assert.AreEqual(0, code, err);
            CollectionAssert.AreEqual(greedy.GetProperty("generated").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
                JsonSerializer.Deserialize<long[]>(File.ReadAllText(idsOut)));
        }
        finally { File.Delete(promptFile); File.Delete(idsOut); }
    }
}
