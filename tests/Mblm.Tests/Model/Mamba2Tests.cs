using Mblm.Config;
using Mblm.Model;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>The three computations of the Mamba2 function agree: chunked SSD, sequential recurrence, single steps.</summary>
[TestClass]
public sealed class Mamba2Tests
{
    private static (Tensor x, Tensor dt, Tensor a, Tensor b, Tensor c) RandomScanInputs(long length, int seed, double decayScale = 4)
    {
        manual_seed(seed);
        var x = randn(2, length, 3, 4).requires_grad_();
        var dt = nn.functional.softplus(randn(2, length, 3)).requires_grad_();
        var a = (-rand(3) * decayScale - 0.5).requires_grad_();
        var b = randn(2, length, 5).requires_grad_();
        var c = randn(2, length, 5).requires_grad_();
        return (x, dt, a, b, c);
    }

    [TestMethod]
    [DataRow(1L, 4)]
    [DataRow(7L, 4)]
    [DataRow(33L, 8)]
    [DataRow(101L, 16)]
    [DataRow(257L, 64)]
    [DataRow(1000L, 8)]        // 125 chunks: the inter-chunk carry runs as a loop
    [DataRow(300L, 256, 40.0)] // strong decay: cumulative log-decays reach −10⁴ inside a chunk
    public void ChunkedScan_EqualsSequentialRecurrence_OutputsAndGradients(long length, int chunk, double decayScale = 4)
    {
        using var scope = NewDisposeScope();
        var (x, dt, a, b, c) = RandomScanInputs(length, seed: (int)length, decayScale);
        var inputs = new[] { x, dt, a, b, c };
        var seq = Mamba2Scan.Sequential(x, dt, a, b, c);
        var seqGrads = autograd.grad(new[] { (seq * seq.detach().sin()).sum() }, inputs);
        var chunked = Mamba2Scan.Chunked(x, dt, a, b, c, chunk);
        var chunkedGrads = autograd.grad(new[] { (chunked * seq.detach().sin()).sum() }, inputs);

        double scale = seq.abs().max().item<float>();
        Assert.IsTrue((chunked - seq).abs().max().item<float>() <= 1e-5 * scale, $"outputs differ beyond 1e-5 × {scale}");
        for (int i = 0; i < inputs.Length; i++)
        {
            double gScale = seqGrads[i].abs().max().item<float>();
            double diff = (chunkedGrads[i] - seqGrads[i]).abs().max().item<float>();
            Assert.IsTrue(diff <= 1e-5 * Math.Max(gScale, 1), $"gradient {i} differs by {diff} (scale {gScale})");
        }
    }

    [TestMethod]
    public void Mamba2Stage_ChunkedEqualsSequential_ForwardAndBackward()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var block = TestData.S(dState: 8, headdim: 4);
        var stage = new Mamba2Stage(block, 16, 2);
        var x = randn(3, 45, 16);
        stage.ChunkSize = 8;
        var chunked = stage.forward(x);
        chunked.square().sum().backward();
        var chunkedGrads = stage.parameters().Select(p => p.grad!.clone()).ToArray();
        stage.zero_grad();
        stage.ScanMode = Mamba2ScanMode.Sequential;
        var seq = stage.forward(x);
        seq.square().sum().backward();
        var seqGrads = stage.parameters().Select(p => p.grad!).ToArray();
        double scale = seq.abs().max().item<float>();
        Assert.IsTrue((chunked - seq).abs().max().item<float>() <= 1e-5 * scale);
        for (int i = 0; i < seqGrads.Length; i++)
        {
            double gScale = seqGrads[i].abs().max().item<float>();
            double diff = (chunkedGrads[i] - seqGrads[i]).abs().max().item<float>();
            Assert.IsTrue(diff <= 1e-5 * Math.Max(gScale, 1), $"parameter {i}: gradient differs by {diff} (scale {gScale})");
        }
    }

    [TestMethod]
    public void SteppingTokenByToken_EqualsFullForward()
    {
        using var scope = NewDisposeScope();
        manual_seed(9);
        var stage = new Mamba2Stage(TestData.S(dState: 8, headdim: 4), 16, 3);
        stage.eval();
        var x = randn(2, 23, 16);
        using var noGrad = no_grad();
        var full = stage.forward(x);
        var state = stage.NewState(2, x.device);
        var steps = Enumerable.Range(0, 23).Select(t => stage.Step(x[.., t, ..], state)).ToArray();
        var stepped = stack(steps, 1);
        double scale = full.abs().max().item<float>();
        Assert.IsTrue((stepped - full).abs().max().item<float>() <= 1e-5 * scale);
    }

    [TestMethod]
    public void StateDictNames_AreMambaSsmNames()
    {
        using var scope = NewDisposeScope();
        var stage = new Mamba2Stage(TestData.S(dState: 8, headdim: 4), 16, 1);
        var names = stage.state_dict().Select(kv => $"{kv.Key} [{string.Join(",", kv.Value.shape)}]").ToArray();
        // Own parameters before children, as PyTorch orders them. d_inner 32, N 8, H 8: in_proj rows 2·32 + 2·8 + 8 = 88, conv channels 48.
        Assert.AreEqual(string.Join("\n", new[]
        {
            "layers.0.norm.weight [16]", "layers.0.mixer.dt_bias [8]", "layers.0.mixer.A_log [8]", "layers.0.mixer.D [8]",
            "layers.0.mixer.in_proj.weight [88,16]", "layers.0.mixer.conv1d.weight [48,1,4]", "layers.0.mixer.conv1d.bias [48]",
            "layers.0.mixer.norm.weight [32]", "layers.0.mixer.out_proj.weight [16,32]", "norm_f.weight [16]",
        }), string.Join("\n", names));
    }

    [TestMethod]
    public void Initialisation_FollowsMambaSsm()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var stage = new Mamba2Stage(new Mamba2BlockConfig { DState = 8, DConv = 4, Expand = 2, Headdim = 4 }, 64, 4);
        var p = stage.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        var aLog = p["layers.0.mixer.A_log"];
        Assert.IsTrue(aLog.exp().min().item<float>() >= 1 && aLog.exp().max().item<float>() <= 16, "A = exp(A_log) in [1, 16]");
        var dt = nn.functional.softplus(p["layers.0.mixer.dt_bias"]);
        Assert.IsTrue(dt.min().item<float>() >= 1e-3 - 1e-6 && dt.max().item<float>() <= 0.1 + 1e-6, "softplus(dt_bias) in [1e-3, 0.1]");
        Assert.AreEqual(1f, p["layers.0.mixer.D"].mean().item<float>());
        // out_proj: kaiming-uniform(a=√5) bound 1/√fan_in, divided by √layers = 2.
        double bound = 1.0 / Math.Sqrt(128) / 2;
        Assert.IsTrue(p["layers.0.mixer.out_proj.weight"].abs().max().item<float>() <= bound + 1e-7);
    }
}
