using Mblm.Config;
using Mblm.Model;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

[TestClass]
public sealed class CheckpointTests
{
    [TestMethod]
    [DataRow(new[] { 2, 3 })]
    [DataRow(new[] { 1, 7 })]
    [DataRow(new[] { 5, 100 })] // more chunks than rows: torch.chunk gives fewer chunks
    public void ChunkedCheckpoint_GradientsEqualPlainBackward(int[] chunks)
    {
        using var scope = NewDisposeScope();
        var config = Cfg([24, 16, 8], [3, 4, 2], [S(), T(), S()], layers: [1, 2, 1]);
        var (plainModel, model) = SameWeights(config, chunks, seed: 4);
        var ids = randint(0, 256, new long[] { 2, 13 });
        var mask = rand(2, 13);

        var plainLoss = plainModel.Loss(ids, mask);
        plainLoss.backward();
        var plain = plainModel.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());

        var chunkedLoss = model.Loss(ids, mask);
        chunkedLoss.backward();
        Assert.AreEqual(plainLoss.item<float>(), chunkedLoss.item<float>(), 1e-6);
        foreach (var (name, p) in model.named_parameters())
        {
            double diff = (p.grad! - plain[name]).abs().max().item<float>();
            double scale = plain[name].abs().max().item<float>();
            Assert.IsTrue(diff <= 1e-6 * Math.Max(scale, 1), $"{name}: gradient differs by {diff}");
        }
    }

    [TestMethod]
    public void ChunkedCheckpoint_WithDropout_ReplaysTheSameMasks()
    {
        using var scope = NewDisposeScope();
        var block = new TransformerBlockConfig { AttnHeadDims = 4, AttnNumHeads = 2, AttnUseRotEmbs = true, FfDropout = 0.3, PosEmbType = PosEmbType.Fixed };
        var config = Cfg([16, 8], [4, 3], [block, block]);
        var (plainModel, model) = SameWeights(config, [3], seed: 6);
        var ids = randint(0, 256, new long[] { 2, 12 });

        manual_seed(99);
        plainModel.Loss(ids).backward();
        var plain = plainModel.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        manual_seed(99);
        model.Loss(ids).backward();
        foreach (var (name, p) in model.named_parameters())
            Assert.IsTrue((p.grad! - plain[name]).abs().max().item<float>() <= 1e-6, name);
    }

    [TestMethod]
    [DataRow(1L, PosEmbType.Fixed)]   // one byte per piece: every stage, the stage-0 embedder and the head run in many pieces
    [DataRow(7L, PosEmbType.Rope)]    // pieces that do not divide the rows; rotary positions with offsets in the embedder
    [DataRow(1L << 20, PosEmbType.Fixed)] // one piece per configured chunk
    public void PiecewiseFoldedLoss_LossAndGradientsEqualPlainBackward(long pieceBytes, PosEmbType stage0Positions)
    {
        long saved = MblmModel.PieceBytes;
        try
        {
            MblmModel.PieceBytes = pieceBytes;
            using var scope = NewDisposeScope();
            var config = Cfg([16, 12, 8], [6, 3, 2], [T(pos: stage0Positions), T(), S()], layers: [2, 1, 1]);
            var (plainModel, model) = SameWeights(config, [2, 3], seed: 11);
            var ids = randint(0, 256, new long[] { 2, 29 }); // not a multiple of the 6-byte patch: the grid is padded
            var mask = rand(2, 29);

            var plainLoss = plainModel.Loss(ids, mask);
            plainLoss.backward();
            var plain = plainModel.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());

            var loss = model.Loss(ids, mask);
            loss.backward();
            Assert.AreEqual(plainLoss.item<float>(), loss.item<float>(), 1e-6);
            foreach (var (name, p) in model.named_parameters())
            {
                Assert.IsNotNull(p.grad, $"{name} received no gradient");
                double diff = (p.grad! - plain[name]).abs().max().item<float>();
                double scale = plain[name].abs().max().item<float>();
                Assert.IsTrue(diff <= 1e-6 * Math.Max(scale, 1), $"{name}: gradient differs by {diff}");
            }
        }
        finally
        {
            MblmModel.PieceBytes = saved;
        }
    }

    // Checkpointing is part of the config: two models, one without and one with chunks, holding the same weights.
    private static (MblmModel Plain, MblmModel Chunked) SameWeights(MblmConfig config, int[] chunks, int seed)
    {
        var plain = RandomModel(config with { TrainCheckpointChunks = null }, seed);
        var chunked = new MblmModel(config with { TrainCheckpointChunks = chunks });
        chunked.load_state_dict(plain.state_dict());
        plain.train();
        chunked.train();
        return (plain, chunked);
    }
}
