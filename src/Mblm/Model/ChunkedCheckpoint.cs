using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// Activation checkpointing of a stage (libtorch's C++ API has no <c>torch.utils.checkpoint</c>; this is ours): the forward
/// runs without recording the stage's inner graph and keeps only its input; backward re-runs the stage with grad enabled
/// and back-propagates the incoming gradient through it, accumulating parameter gradients as the plain backward would.
/// The CPU RNG state is saved and replayed so dropout masks in the recomputation equal the original ones.
/// </summary>
public sealed class CheckpointFunction : autograd.SingleTensorFunction<CheckpointFunction>
{
    /// <inheritdoc />
    public override string Name => "MblmCheckpoint";

    /// <summary>Runs <paramref name="stage"/> on <paramref name="input"/> under checkpointing.</summary>
    public static Tensor Run(nn.Module<Tensor, Tensor> stage, Tensor input) => apply(stage, input);

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var stage = (nn.Module<Tensor, Tensor>)vars[0];
        var input = (Tensor)vars[1];
        ctx.save_data("stage", stage);
        using (var rng = get_rng_state()) ctx.save_data("rng", rng.data<byte>().ToArray()); // managed copy: no native leak
        ctx.save_for_backward(new List<Tensor> { input });
        using (no_grad()) return stage.forward(input);
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var stage = (nn.Module<Tensor, Tensor>)ctx.get_data("stage");
        var input = ctx.get_saved_variables()[0].detach().requires_grad_();
        using var current = get_rng_state().DetachFromDisposeScope();
        using (var saved = tensor((byte[])ctx.get_data("rng"))) set_rng_state(saved);
        try
        {
            using (enable_grad())
            {
                var output = stage.forward(input);
                autograd.backward(new[] { output }, new[] { gradOutput });
            }
        }
        finally
        {
            set_rng_state(current);
        }
        return new List<Tensor> { null!, input.grad! };
    }
}
