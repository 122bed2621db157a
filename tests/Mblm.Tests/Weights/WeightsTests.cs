using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

[TestClass]
public sealed class WeightsTests
{
    /// <summary>The 2-stage model of mblm.md §7.4: dims [16, 8], seq_lens [4, 3], heads 2×4, fixed positions.</summary>
    private static MblmConfig Section74TwoStage => Cfg([16, 8], [4, 3], [T(), T()]);
    private static MblmConfig Section74ThreeStage => Cfg([24, 16, 8], [2, 3, 2], [T(), T(), T()]);

    /// <summary>Fills the p-th parameter (named_parameters order, buffers excluded) with 0.1·sin(0.7·k + p + 1).</summary>
    private static MblmModel SinFilled(MblmConfig config)
    {
        var model = new MblmModel(config);
        model.eval();
        using var noGrad = no_grad();
        int p = 0;
        foreach (var (_, parameter) in model.named_parameters())
        {
            var k = arange(parameter.NumberOfElements, dtype: float64);
            parameter.copy_(((k * 0.7 + p + 1).sin() * 0.1).to_type(float32).view(parameter.shape));
            p++;
        }
        return model;
    }

    private static Tensor Bytes(string s) => tensor(System.Text.Encoding.UTF8.GetBytes(s).Select(b => (long)b).ToArray()).view(1, -1);

    [TestMethod]
    public void StateDictKeys_EqualReferenceKeyList()
    {
        using var scope = NewDisposeScope();
        var model = new MblmModel(Section74TwoStage);
        var keys = model.state_dict().Select(kv => $"{kv.Key} ({string.Join(", ", kv.Value.shape)})").ToArray();
        string[] expected =
        [
            "start_tokens.0 (16)", "start_tokens.1 (8)", "pos_embs.0.weight (4, 16)", "pos_embs.1.weight (3, 8)",
            "token_embs_rev.0.weight (257, 8)", "token_embs_rev.1.0.weight (257, 8)", "token_embs_rev.1.2.weight (24)",
            "token_embs_rev.1.2.bias (24)", "token_embs_rev.1.3.weight (16, 24)", "token_embs_rev.1.3.bias (16)",
            "token_embs_rev.1.4.weight (16)", "token_embs_rev.1.4.bias (16)",
            "stage_models.0.rotary_emb.inv_freq (2)", "stage_models.0.layers.0.0.norm.g (16)",
            "stage_models.0.layers.0.0.to_q.weight (8, 16)", "stage_models.0.layers.0.0.to_kv.weight (16, 16)",
            "stage_models.0.layers.0.0.to_out.weight (16, 8)", "stage_models.0.layers.0.1.0.g (16)",
            "stage_models.0.layers.0.1.1.weight (32, 16)", "stage_models.0.layers.0.1.1.bias (32)",
            "stage_models.0.layers.0.1.4.weight (16, 32)", "stage_models.0.layers.0.1.4.bias (16)", "stage_models.0.norm.g (16)",
            "stage_models.1.rotary_emb.inv_freq (2)", "stage_models.1.layers.0.0.norm.g (8)",
            "stage_models.1.layers.0.0.to_q.weight (8, 8)", "stage_models.1.layers.0.0.to_kv.weight (16, 8)",
            "stage_models.1.layers.0.0.to_out.weight (8, 8)", "stage_models.1.layers.0.1.0.g (8)",
            "stage_models.1.layers.0.1.1.weight (16, 8)", "stage_models.1.layers.0.1.1.bias (16)",
            "stage_models.1.layers.0.1.4.weight (8, 16)", "stage_models.1.layers.0.1.4.bias (8)", "stage_models.1.norm.g (8)",
            "to_next_stage_proj.0.1.weight (24, 16)", "to_next_stage_proj.0.1.bias (24)", "to_logits.weight (257, 8)", "to_logits.bias (257)",
        ];
        // Key order is irrelevant in a file (safetensors sorts by name); names and shapes are the format.
        Assert.AreEqual(string.Join("\n", expected.Order(StringComparer.Ordinal)), string.Join("\n", keys.Order(StringComparer.Ordinal)));
        Assert.AreEqual(9_617L, model.parameters().Sum(p => p.NumberOfElements));
    }

    [TestMethod]
    public void Section74_TwoStage_MatchesReferenceVectors()
    {
        using var scope = NewDisposeScope();
        var model = SinFilled(Section74TwoStage);
        using var noGrad = no_grad();
        var (loss, logits, _) = model.LossAndLogits(Bytes("Hello, MBLM!"));
        Assert.AreEqual(5.541328, loss.item<float>(), 1e-5);
        AssertRow(new[] { -0.116057, -0.088718, -0.019752, 0.058712 }, logits[0, 0, ..4]);
        AssertRow(new[] { -0.105063, -0.085242, -0.025356, 0.046544 }, logits[0, 11, ..4]);
        Assert.AreEqual(-0.12671, logits.sum().item<float>(), 1e-4);
        CollectionAssert.AreEqual(new long[] { 59, 68, 112, 77, 67, 94, 76, 85, 68, 103, 85, 41 }, logits.argmax(-1)[0].data<long>().ToArray());

        var (shortLoss, shortLogits, _) = model.LossAndLogits(Bytes("Hello, M"));
        Assert.AreEqual(5.576380, shortLoss.item<float>(), 1e-5);
        CollectionAssert.AreEqual(new long[] { 1, 8, 257 }, shortLogits.shape);
        AssertRow(new[] { -0.103065, -0.080440, -0.019904, 0.050198 }, shortLogits[0, 7, ..4]);

        var mask = cat(new[] { zeros(1, 6), ones(1, 6) }, 1);
        Assert.AreEqual(5.463828, model.Loss(Bytes("Hello, MBLM!"), mask).item<float>(), 1e-5);
    }

    [TestMethod]
    public void Section74_ThreeStage_MatchesReferenceVectors()
    {
        using var scope = NewDisposeScope();
        var model = SinFilled(Section74ThreeStage);
        Assert.AreEqual(17_177L, model.parameters().Sum(p => p.NumberOfElements));
        using var noGrad = no_grad();
        var (loss, logits, _) = model.LossAndLogits(Bytes("Hello, MBLM!"));
        Assert.AreEqual(5.552895, loss.item<float>(), 1e-5);
        AssertRow(new[] { 0.042618, 0.087721, 0.091490, 0.052131 }, logits[0, 0, ..4]);
        AssertRow(new[] { 0.040876, 0.084130, 0.087661, 0.049784 }, logits[0, 11, ..4]);
        Assert.AreEqual(2.77812, logits.sum().item<float>(), 1e-4);
        CollectionAssert.AreEqual(new long[] { 181, 199, 181, 172, 190, 181, 181, 208, 190, 181, 190, 181 }, logits.argmax(-1)[0].data<long>().ToArray());
    }

    private static void AssertRow(double[] expected, Tensor row)
    {
        var actual = row.data<float>().ToArray();
        for (int i = 0; i < expected.Length; i++) Assert.AreEqual(expected[i], actual[i], 2e-6, $"element {i}");
    }

    [TestMethod]
    public void SafeTensors_RoundTripIsBitExact()
    {
        using var scope = NewDisposeScope();
        var config = Cfg([16, 8], [4, 3], [S(), T()]);
        var a = RandomModel(config, seed: 1);
        var b = RandomModel(config, seed: 2);
        string path = Path.Combine(Path.GetTempPath(), $"mblm-rt-{Guid.NewGuid():N}.safetensors");
        try
        {
            ModelWeights.Save(a, path);
            ModelWeights.Load(b, path);
            var sa = a.state_dict();
            foreach (var (name, tb) in b.state_dict())
                Assert.IsTrue(sa[name].eq(tb).all().item<bool>(), name);
            var ids = randint(0, 256, new long[] { 1, 10 });
            using var noGrad = no_grad();
            Assert.IsTrue(a.forward(ids).eq(b.forward(ids)).all().item<bool>());
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void StrictLoad_ReportsEveryMissingUnexpectedAndMismatchedKey()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [4, 3], [T(), T()]));
        var state = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        state.Remove("to_logits.bias");
        state.Remove("start_tokens.1");
        state["extra.weight"] = zeros(3);
        state["to_logits.weight"] = zeros(256, 8);
        var e = Assert.ThrowsExactly<WeightsMismatchException>(() => ModelWeights.Load(model, state, "test"));
        CollectionAssert.AreEquivalent(new[] { "to_logits.bias", "start_tokens.1" }, e.Missing.ToArray());
        CollectionAssert.AreEqual(new[] { "extra.weight" }, e.Unexpected.ToArray());
        Assert.AreEqual(1, e.Mismatched.Count);
        StringAssert.Contains(e.Message, "to_logits.weight: file [256, 8] vs model [257, 8]");
        StringAssert.Contains(e.Message, "missing (2)");
    }

    [TestMethod]
    public void FailedSave_KeepsThePreviousFile()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [4, 3], [T(), T()]));
        string path = Path.Combine(Path.GetTempPath(), $"mblm-keep-{Guid.NewGuid():N}.safetensors");
        try
        {
            ModelWeights.Save(model, path);
            byte[] before = File.ReadAllBytes(path);
            var bad = new Dictionary<string, Tensor> { ["x"] = zeros(2, dtype: complex64) }; // unsupported dtype: save fails
            Assert.Throws<Exception>(() => SafeTensors.Save(bad, path));
            CollectionAssert.AreEqual(before, File.ReadAllBytes(path));
            Assert.AreEqual(1, Directory.GetFiles(Path.GetDirectoryName(path)!, Path.GetFileName(path) + "*").Length, "no temp file left");
        }
        finally { File.Delete(path); }
    }
}
