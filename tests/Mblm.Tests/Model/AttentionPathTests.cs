using Mblm.Model;
using TorchSharp;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>
/// The explicit short-row attention equals libtorch's fused kernel (values and gradients), and the step profiler
/// observes without changing anything.
/// </summary>
[TestClass]
public sealed class AttentionPathTests
{
    [TestMethod]
    [DataRow(true, 9L)]
    [DataRow(false, 9L)]
    [DataRow(true, 1L)]
    [DataRow(true, 16L)]
    public void ExplicitAttention_EqualsFusedKernel_ValuesAndGradients(bool causal, long length)
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        // q, k, v as the model makes them: transposed views of a (R, S, h, d_h) layout, not contiguous.
        var qkv = randn(6, length, 3 * 4, 32).requires_grad_();
        (Tensor output, Tensor grad) Run(long explicitMax)
        {
            qkv.grad?.zero_();
            var parts = qkv.split(4, 2);
            var o = Attention.Attend(parts[0].transpose(1, 2), parts[1].transpose(1, 2), parts[2].transpose(1, 2), 0.0, causal, explicitMax);
            var weights = linspace(-1, 1, o.numel()).view(o.shape); // a non-uniform upstream gradient
            (o * weights).sum().backward();
            return (o.detach().clone(), qkv.grad!.clone());
        }
        var (fused, fusedGrad) = Run(explicitMax: 0);
        var (explicitOut, explicitGrad) = Run(explicitMax: 16);
        Assert.IsTrue(explicitOut.allclose(fused, rtol: 1e-5, atol: 1e-6), $"outputs differ by {(explicitOut - fused).abs().max().item<float>()}");
        Assert.IsTrue(explicitGrad.allclose(fusedGrad, rtol: 1e-4, atol: 1e-5), $"gradients differ by {(explicitGrad - fusedGrad).abs().max().item<float>()}");
        if (causal && length > 1)
        {
            // the first position sees only itself: its output is its own value vector
            var v0 = qkv.detach().split(4, 2)[2][.., 0];
            Assert.IsTrue(explicitOut.transpose(1, 2)[.., 0].allclose(v0, rtol: 1e-5, atol: 1e-6));
        }
    }

    [TestMethod]
    public void StepProfile_RecordsEveryRegion_AndLeavesLossAndGradientsUnchanged()
    {
        using var scope = NewDisposeScope();
        var config = Cfg([16, 8], [6, 3], [T(), T()]);
        manual_seed(2);
        var ids = randint(0, 256, new long[] { 2, 17 });
        (float loss, Tensor[] grads) Step(MblmModel model)
        {
            model.zero_grad();
            var l = model.Loss(ids);
            l.backward();
            return (l.item<float>(), model.parameters().Select(p => p.grad!.clone()).ToArray());
        }
        var plain = Step(RandomModel(config, seed: 1));
        var model = RandomModel(config, seed: 1);
        var rec = StepProfile.Start("s0.prepare");
        (float loss, Tensor[] grads) profiled;
        try
        {
            model.zero_grad();
            var l = model.Loss(ids);
            rec.Forward("(end of forward)");
            rec.BeginBackward();
            l.backward();
            rec.EndBackward("s0.input");
            profiled = (l.item<float>(), model.parameters().Select(p => p.grad!.clone()).ToArray());
        }
        finally
        {
            StepProfile.Stop();
        }
        Assert.AreEqual(plain.loss, profiled.loss);
        for (int i = 0; i < plain.grads.Length; i++)
            Assert.IsTrue(plain.grads[i].eq(profiled.grads[i]).all().item<bool>(), $"gradient {i} changed under the profiler");
        foreach (string region in new[] { "s0.attn.qkv-proj", "s0.attn.sdpa", "s0.ffn.up", "s1.attn.rope", "s1.ffn.down", "head", "loss" })
        {
            Assert.IsTrue(rec.ForwardMs.ContainsKey(region), $"no forward time for {region}");
            Assert.IsTrue(rec.BackwardMs.ContainsKey(region), $"no backward time for {region}");
        }
        Assert.IsFalse(StepProfile.Active);
        Assert.AreEqual(plain.loss, Step(model).loss, 1e-7f, "marks stay out of later steps");
    }
}
