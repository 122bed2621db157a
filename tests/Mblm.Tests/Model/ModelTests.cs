using Mblm.Config;
using Mblm.Model;
using TorchSharp;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

[TestClass]
public sealed class ModelTests
{
    public static IEnumerable<object[]> Hierarchies() =>
    [
        ["1 stage T", Cfg([16], [20], [T()])],
        ["1 stage S", Cfg([16], [20], [S()])],
        ["2 stages T,T", Cfg([16, 8], [6, 3], [T(), T()])],
        ["2 stages S,T", Cfg([16, 8], [6, 3], [S(), T()])],
        ["2 stages T,S rope", Cfg([16, 8], [6, 3], [T(pos: PosEmbType.Rope), S(pos: PosEmbType.Rope)])],
        ["3 stages T,T,T", Cfg([24, 16, 8], [3, 3, 2], [T(), T(heads: 2, headDim: 8), T()])],
        ["3 stages S,T,S", Cfg([24, 16, 8], [3, 3, 2], [S(), T(), S()])],
        ["4 stages mixed", Cfg([16, 16, 8, 8], [2, 2, 2, 3], [S(), T(), T(pos: PosEmbType.None), S()])],
        .. BlockExamples.Hierarchies([20], [6, 3]), // every registered causal block, plug-ins included
    ];

    [TestMethod]
    [DynamicData(nameof(Hierarchies))]
    public void ChangingByteT_LeavesEarlierLogitsUnchanged(string name, MblmConfig config)
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(config, seed: 3);
        long length = Math.Min(config.MaxContext, 17) - (config.NumStages > 1 ? 2 : 0); // odd lengths, patch padding
        manual_seed(11);
        var ids = randint(0, 256, new[] { 2, length });
        using var noGrad = no_grad();
        var (baseLogits, baseStart) = model.Logits(ids);
        for (long t = 0; t < length; t++)
        {
            var changed = ids.clone();
            changed[.., t] = (changed[.., t] + 1) % 256;
            var (logits, start) = model.Logits(changed);
            Assert.AreEqual(0.0, (start - baseStart).abs().max().item<float>(), $"{name}: start logits changed when byte {t} changed");
            if (t > 0)
            {
                double before = (logits[.., ..(int)t, ..] - baseLogits[.., ..(int)t, ..]).abs().max().item<float>();
                Assert.AreEqual(0.0, before, $"{name}: changing byte {t} changed logits before position {t}");
            }
            double at = (logits[.., (int)t, ..] - baseLogits[.., (int)t, ..]).abs().max().item<float>();
            Assert.IsTrue(at > 0, $"{name}: changing byte {t} did not change the logits at {t} (they have seen it)");
        }
    }

    [TestMethod]
    public void Logits_ShapeTruncatedToInput_AndPaddingDoesNotLeak()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [4, 3], [T(), T()]));
        var ids = randint(0, 256, new long[] { 1, 7 });
        using var noGrad = no_grad();
        var logits = model.forward(ids);
        CollectionAssert.AreEqual(new long[] { 1, 7, 257 }, logits.shape);
        // The same prefix inside a longer input gives the same logits (the pad grid is invisible).
        var longer = cat(new[] { ids, randint(0, 256, new long[] { 1, 5 }) }, 1);
        var logitsLonger = model.forward(longer);
        Assert.IsTrue((logitsLonger[.., ..7, ..] - logits).abs().max().item<float>() < 1e-5);
    }

    [TestMethod]
    public void LossMask_AllOnesEqualsNone_AllZerosGivesZero_WeightsAreNotNormalised()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [4, 3], [T(), S()]));
        var ids = randint(0, 256, new long[] { 2, 11 });
        using var noGrad = no_grad();
        var plain = model.Loss(ids).item<float>();
        Assert.AreEqual(plain, model.Loss(ids, ones(2, 11)).item<float>(), 1e-6);
        Assert.AreEqual(0f, model.Loss(ids, zeros(2, 11)).item<float>());
        // Weight 2 everywhere doubles the loss (sum of weighted terms / count of non-zero terms).
        Assert.AreEqual(2 * plain, model.Loss(ids, full(2, 11, 2f)).item<float>(), 1e-5);
        // Masking half the positions: mean over the remaining ones.
        var (logits, start) = model.Logits(ids);
        var ce = MblmModel.TokenLosses(logits, start, ids, 256);
        var mask = zeros(2, 11);
        mask[.., 5..] = 1;
        Assert.AreEqual(ce[.., 5..].mean().item<float>(), model.Loss(ids, mask).item<float>(), 1e-6);
    }

    [TestMethod]
    public void PadTargets_AreIgnored_AndAllPadGivesZeroLossWithGradient()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [4, 3], [T(), T()]));
        model.train();
        var ids = tensor(new long[] { 256, 256, 256, 256 }).view(1, 4);
        var loss = model.Loss(ids);
        Assert.AreEqual(0f, loss.item<float>());
        loss.backward(); // all-masked loss still back-propagates (zero gradients)
        var withPad = tensor(new long[] { 72, 105, 256, 256 }).view(1, 4);
        var withoutPad = tensor(new long[] { 72, 105 }).view(1, 2);
        model.eval();
        using var noGrad = no_grad();
        Assert.AreEqual(model.Loss(withoutPad).item<float>(), model.Loss(withPad).item<float>(), 1e-6);
    }

    [TestMethod]
    public void Input_Validation_NamesTheProblem()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [4, 3], [T(), T()]));
        var tooLong = Assert.ThrowsExactly<ArgumentException>(() => model.forward(zeros(1, 13, dtype: int64)));
        StringAssert.Contains(tooLong.Message, "at most 12 bytes");
        var outOfRange = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.forward(full(1, 3, 257L)));
        StringAssert.Contains(outOfRange.Message, "num_tokens");
        Assert.ThrowsExactly<ArgumentException>(() => model.forward(zeros(3, dtype: int64)));
        Assert.ThrowsExactly<ArgumentException>(() => model.forward(zeros(1, 3)));
        Assert.ThrowsExactly<ArgumentException>(() => model.Loss(zeros(1, 3, dtype: int64), ones(1, 4)));
        // Without a fixed positional embedding at stage 0 longer inputs are accepted, as in the reference.
        var free = RandomModel(Cfg([16, 8], [4, 3], [S(), T()]));
        CollectionAssert.AreEqual(new long[] { 1, 20, 257 }, free.forward(zeros(1, 20, dtype: int64)).shape);
    }

    [TestMethod]
    public void BatchRows_AreIndependent()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([24, 16, 8], [3, 3, 2], [S(), T(), T()]));
        var ids = randint(0, 256, new long[] { 3, 15 });
        using var noGrad = no_grad();
        var all = model.forward(ids);
        for (int b = 0; b < 3; b++)
            Assert.IsTrue((model.forward(ids[b..(b + 1)]) - all[b..(b + 1)]).abs().max().item<float>() < 1e-5);
    }

    [TestMethod]
    public void ModuleTo_ConvertsEveryParameter_IncludingTheExplicitlyRegisteredOnes()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [4, 3], [S(), T(pos: PosEmbType.Rope)]), seed: 12);
        var ids = randint(0, 256, new long[] { 2, 11 });
        using var noGrad = no_grad();
        var expected = model.forward(ids);
        model.to(ScalarType.Float64);
        Assert.IsTrue(model.parameters().All(p => p.dtype == ScalarType.Float64));
        var actual = model.forward(ids);
        Assert.AreEqual(ScalarType.Float64, actual.dtype);
        Assert.IsTrue((actual.to_type(ScalarType.Float32) - expected).abs().max().item<float>() < 1e-4);
    }
}
