using Mblm.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>
/// <see cref="Model.MblmModel.PooledFeatures"/>: the global stage's state after the last patch plus mean- and max-pooled
/// local states — one vector per row, the same for a row alone and padded in a batch, with gradients to every stage.
/// </summary>
[TestClass]
public sealed class PooledFeaturesTests
{
    private static readonly MblmConfig TwoStage = TestData.Cfg([24, 16], [8, 4], [TestData.T(heads: 2, headDim: 8, pos: PosEmbType.None), TestData.T(heads: 2, headDim: 8)]);
    private static readonly MblmConfig ThreeStage = TestData.Cfg([24, 16, 8], [4, 2, 4],
        [TestData.T(heads: 2, headDim: 8), TestData.S(dState: 4, headdim: 8), TestData.T(heads: 2, headDim: 4)]);

    private static Tensor Ids(params long[] bytes) => tensor(bytes, new long[] { 1, bytes.Length });

    [TestMethod]
    [DataRow(2)]
    [DataRow(3)]
    public void ARowPaddedInABatch_GivesTheSameVectorAsTheRowAlone(int stages)
    {
        var config = stages == 2 ? TwoStage : ThreeStage;
        using var model = TestData.RandomModel(config, seed: 4);
        using var scope = NewDisposeScope();
        long pad = config.PadTokenId;
        long[] a = [72, 101, 108, 108, 111], b = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];    // 5 and 13 bytes: neither fills its last patch
        var alone = new[] { a, b }.Select(r => model.PooledFeatures(Ids(r), tensor(new long[] { r.Length }))).ToArray();
        var batch = tensor(a.Concat(Enumerable.Repeat(pad, b.Length - a.Length)).Concat(b).ToArray(), new long[] { 2, b.Length });
        var together = model.PooledFeatures(batch, tensor(new long[] { a.Length, b.Length }));
        Assert.AreEqual(model.PooledWidth, together.size(1));
        Assert.AreEqual(config.HiddenDims[0] + 2L * config.HiddenDims[^1], model.PooledWidth);
        for (int i = 0; i < 2; i++)
        {
            var diff = (together[i] - alone[i][0]).abs().max().item<float>();
            Assert.IsTrue(diff < 1e-5, $"row {i}: {diff}");
        }
        // The three parts are the global state, the mean and the maximum of the local states over the row's bytes.
        var (local, _) = model.HiddenStates(Ids(b));
        var d0 = config.HiddenDims[0];
        var dn = config.HiddenDims[^1];
        Assert.IsTrue((alone[1][0, d0..(d0 + dn)] - local[0].mean(new long[] { 0 })).abs().max().item<float>() < 1e-5, "mean");
        Assert.IsTrue((alone[1][0, (d0 + dn)..] - local[0].amax(0)).abs().max().item<float>() < 1e-6, "max");
    }

    [TestMethod]
    public void LengthsOnTheHost_GiveTheSameVectors_AndAreCheckedThere()
    {
        using var model = TestData.RandomModel(TwoStage, seed: 6);
        using var scope = NewDisposeScope();
        long pad = TwoStage.PadTokenId;
        var batch = tensor(new long[] { 72, 101, 108, pad, pad, pad, 1, 2, 3, 4, 5, 6 }, new long[] { 2, 6 });
        var onDevice = model.PooledFeatures(batch, tensor(new long[] { 3, 6 }));
        var onHost = model.PooledFeaturesOf(batch, new long[] { 3, 6 });
        Assert.IsTrue((onDevice - onHost).abs().max().item<float>() == 0f);
        var mask = ones(2, 6);
        var (pooled, loss) = model.PooledFeaturesAndLossOf(batch, new long[] { 3, 6 }, mask);
        Assert.IsTrue((pooled - onHost).abs().max().item<float>() == 0f);
        Assert.AreEqual(model.PooledFeaturesAndLoss(batch, tensor(new long[] { 3, 6 }), mask).Loss.item<float>(), loss.item<float>());
        foreach (long[] bad in new[] { new long[] { 0, 6 }, new long[] { 3, 7 } })
            Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.PooledFeaturesOf(batch, bad), $"[{string.Join(", ", bad)}]");
        Assert.ThrowsExactly<ArgumentException>(() => model.PooledFeaturesOf(batch, new long[] { 3 }));
    }

    [TestMethod]
    public void WithAStart_ThePadsBeforeTheRowAreLeftOutOfThePooledFeatures()
    {
        using var model = TestData.RandomModel(TwoStage, seed: 7);
        using var scope = NewDisposeScope();
        long pad = TwoStage.PadTokenId;
        long[] row = [5, 6, 7, 8, 9, 10, 11];
        var ids = tensor(new long[] { pad, pad, pad }.Concat(row).ToArray(), new long[] { 1, 10 });
        var pooled = model.PooledFeaturesOf(ids, new long[] { row.Length }, new long[] { 3 });
        var (local, _) = model.HiddenStates(ids);
        int d0 = (int)TwoStage.HiddenDims[0], dn = (int)TwoStage.HiddenDims[^1];
        var bytes = local[0, 3..];
        Assert.IsTrue((pooled[0, d0..(d0 + dn)] - bytes.mean(new long[] { 0 })).abs().max().item<float>() < 1e-5, "mean over the row's bytes only");
        Assert.IsTrue((pooled[0, (d0 + dn)..] - bytes.amax(0)).abs().max().item<float>() < 1e-6, "max over the row's bytes only");
        // Positions 3..9 end in the third patch of 4: the global part is the state after it, as for an unshifted row of 10.
        var unshifted = model.PooledFeatures(ids, tensor(new long[] { 10 }));
        Assert.IsTrue((pooled[0, ..d0] - unshifted[0, ..d0]).abs().max().item<float>() < 1e-6, "global part");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.PooledFeaturesOf(ids, new long[] { row.Length }, new long[] { 4 }));
    }

    [TestMethod]
    public void TheGlobalPartHasReadTheLastByte_AndGradientsReachEveryStage()
    {
        using var model = TestData.RandomModel(TwoStage, seed: 5);
        using var scope = NewDisposeScope();
        long d0 = TwoStage.HiddenDims[0];
        // Changing the last byte changes the global part (it has read the whole row), not only the local parts.
        var one = model.PooledFeatures(Ids(1, 2, 3, 4, 5, 6), tensor(new long[] { 6 }));
        var other = model.PooledFeatures(Ids(1, 2, 3, 4, 5, 99), tensor(new long[] { 6 }));
        Assert.IsTrue((one[0, ..(int)d0] - other[0, ..(int)d0]).abs().max().item<float>() > 1e-6);

        model.train();
        var features = model.PooledFeatures(Ids(1, 2, 3, 4, 5, 6, 7, 8, 9), tensor(new long[] { 9 }));
        features.pow(2).sum().backward();
        var named = model.named_parameters().ToList();
        foreach (string prefix in new[] { "stage_models.0.", "stage_models.1.", "token_embs_rev.0.", "token_embs_rev.1.", "to_next_stage_proj.0." })
            Assert.IsTrue(named.Where(p => p.name.StartsWith(prefix, StringComparison.Ordinal)).Any(p => p.parameter.grad is { } g && g.abs().sum().item<float>() > 0), prefix);

        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.PooledFeatures(Ids(1, 2, 3), tensor(new long[] { 4 })));
        StringAssert.Contains(e.Message, "[1, 3]");
    }
}
