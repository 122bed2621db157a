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

    /// <summary>
    /// Runs <paramref name="stage"/> on <paramref name="input"/> under checkpointing. <paramref name="randomized"/> says
    /// whether the stage draws random numbers (dropout): only the CPU RNG is replayed, so that is refused on other devices.
    /// </summary>
    public static Tensor Run(nn.Module<Tensor, Tensor> stage, Tensor input, bool randomized) =>
        apply((Func<Tensor, Tensor[], Tensor>)((x, _) => stage.forward(x)), input, randomized, Array.Empty<Tensor>());

    /// <summary>
    /// Runs <paramref name="function"/>(input, constants) under checkpointing; the constants (e.g. targets) receive no
    /// gradient and are kept alive by autograd until the backward recomputation.
    /// </summary>
    public static Tensor Run(Func<Tensor, Tensor[], Tensor> function, Tensor input, bool randomized, params Tensor[] constants) =>
        apply(function, input, randomized, constants);

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        if (((Tensor)vars[1]).device.type != DeviceType.CPU && (bool)vars[2])
            throw new NotSupportedException("checkpointing with dropout > 0 replays only the CPU RNG; on a GPU set dropout to 0 or disable train_checkpoint_chunks");
        var stage = (Func<Tensor, Tensor[], Tensor>)vars[0];
        var input = (Tensor)vars[1];
        var constants = (Tensor[])vars[3];
        ctx.save_data("stage", stage);
        using (var rng = get_rng_state()) ctx.save_data("rng", rng.data<byte>().ToArray()); // managed copy: no native leak
        ctx.save_for_backward(new[] { input }.Concat(constants).ToList());
        using (no_grad()) return stage(input, constants);
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        using var scope = NewDisposeScope(); // backward may run where no scope is active: release the recomputation here
        var stage = (Func<Tensor, Tensor[], Tensor>)ctx.get_data("stage");
        var saved = ctx.get_saved_variables();
        var input = saved[0].detach().requires_grad_();
        var constants = saved.Skip(1).ToArray();
        using var current = get_rng_state().DetachFromDisposeScope();
        using (var rng = tensor((byte[])ctx.get_data("rng"))) set_rng_state(rng);
        try
        {
            using (enable_grad())
            {
                var output = stage(input, constants);
                autograd.backward(new[] { output }, new[] { gradOutput });
            }
        }
        finally
        {
            set_rng_state(current);
        }
        var grad = (input.grad ?? zeros_like(input)).MoveToOuterDisposeScope();
        MemoryProbe.At("checkpoint backward", grad);
        return new List<Tensor> { null!, grad, null!, null! };
    }
}
