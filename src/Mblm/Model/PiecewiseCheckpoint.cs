using Mblm.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// The one activation checkpointing of the model (libtorch's C++ API has no <c>torch.utils.checkpoint</c>): the reference's
/// <c>train_checkpoint_chunks</c> (a stage's rows in <c>torch.chunk</c> pieces) and the long-context piece-wise path both run
/// through it. It checkpoints a function that is separable along one axis, computed piece by piece: for every split
/// <c>[a, b)</c> of that axis, <c>f(input[a:b], constants[a:b], a) = f(input, constants, 0)[a:b]</c> (rows of a stage are
/// independent sequences; the units of a patch embedder are independent). The forward runs the pieces in order without
/// recording a graph and keeps only the input and the constants; backward recomputes one piece at a time with grad and
/// back-propagates the matching slice of the incoming gradient, so the memory of a recomputation is that of one piece,
/// whatever the length. Parameter gradients accumulate as in the plain backward (up to summation order). The CPU RNG state
/// is saved before each piece and replayed, so dropout masks equal the forward's.
/// </summary>
internal sealed class PiecewiseCheckpoint : autograd.SingleTensorFunction<PiecewiseCheckpoint>
{
    /// <inheritdoc />
    public override string Name => "MblmPiecewiseCheckpoint";

    /// <summary>
    /// Free heap the allocator may hold between pieces before it is returned to the OS (<see cref="NativeHeap"/>): pieces
    /// free and reallocate the same sizes, and glibc otherwise keeps growing its heap with them.
    /// </summary>
    internal static long HeapSlackBytes { get; set; } = 512L << 20;

    private sealed record Plan(Func<Tensor?, Tensor[], long, Tensor> Function, bool HasInput, int Dim, long PieceLength, bool Randomized);

    /// <summary>
    /// Runs <paramref name="function"/>(input piece or null, constant pieces, offset of the piece) over pieces of at most
    /// <paramref name="pieceLength"/> along axis <paramref name="dim"/> of <paramref name="input"/> (which receives a
    /// gradient; null when the function has no differentiable input, then only parameters do) and of every constant
    /// (no gradient; ids, targets), and concatenates the results along the same axis. <paramref name="randomized"/>: the
    /// function draws random numbers (dropout); only the CPU RNG is replayed, so that is refused on other devices.
    /// </summary>
    public static Tensor Run(Func<Tensor?, Tensor[], long, Tensor> function, Tensor? input, int dim, long pieceLength, bool randomized, params Tensor[] constants)
    {
        if (pieceLength < 1) throw new ArgumentOutOfRangeException(nameof(pieceLength), $"piece length must be at least 1, got {pieceLength}");
        var reference = input ?? constants[0];
        if (randomized && reference.device.type != DeviceType.CPU)
            throw new NotSupportedException("checkpointing with dropout > 0 replays only the CPU RNG; on a GPU set dropout to 0 or disable train_checkpoint_chunks");
        // Without a differentiable input, an empty leaf that requires grad makes autograd call backward (for the parameters).
        using var anchor = input is null ? empty(new long[] { 0 }, device: reference.device).requires_grad_() : null;
        return apply(new Plan(function, input is not null, dim, pieceLength, randomized), input ?? anchor!, constants);
    }

    private static long Length(Plan plan, Tensor input, Tensor[] constants) =>
        plan.HasInput ? input.size(plan.Dim) : constants[0].size(plan.Dim);

    private static IEnumerable<(long Start, long Length)> Pieces(long total, long piece)
    {
        for (long a = 0; a < total; a += piece) yield return (a, Math.Min(piece, total - a));
    }

    private static Tensor[] Slice(Tensor[] ts, long dim, long start, long length) =>
        ts.Select(t => t.narrow(dim, start, length)).ToArray();

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var plan = (Plan)vars[0];
        var input = (Tensor)vars[1];
        var constants = (Tensor[])vars[2];
        ctx.save_data("plan", plan);
        ctx.save_for_backward(new[] { input }.Concat(constants).ToList());
        var states = new List<byte[]>();
        var outputs = new List<Tensor>();
        using (no_grad())
        {
            foreach (var (a, len) in Pieces(Length(plan, input, constants), plan.PieceLength))
            {
                if (plan.Randomized)
                    using (var rng = get_rng_state()) states.Add(rng.data<byte>().ToArray()); // managed copies: no native leak
                using var scope = NewDisposeScope();
                var piece = plan.HasInput ? input.narrow(plan.Dim, a, len) : null;
                outputs.Add(plan.Function(piece, Slice(constants, plan.Dim, a, len), a).MoveToOuterDisposeScope());
                scope.Dispose();
                NativeHeap.TrimIfSlackAbove(HeapSlackBytes);
            }
            ctx.save_data("rng", states);
            if (outputs.Count == 1) return outputs[0];
            var all = cat(outputs, plan.Dim);
            foreach (var o in outputs) o.Dispose();
            return all;
        }
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        using var scope = NewDisposeScope(); // backward may run where no scope is active: release the recomputation here
        var plan = (Plan)ctx.get_data("plan");
        var states = (List<byte[]>)ctx.get_data("rng");
        var saved = ctx.get_saved_variables();
        var input = saved[0];
        var constants = saved.Skip(1).ToArray();
        var gradInput = plan.HasInput ? zeros_like(input) : zeros(new long[] { 0 }, device: input.device);
        using var current = plan.Randomized ? get_rng_state().DetachFromDisposeScope() : null;
        try
        {
            int i = 0;
            foreach (var (a, len) in Pieces(Length(plan, input, constants), plan.PieceLength))
            {
                using var pieceScope = NewDisposeScope();
                if (plan.Randomized)
                    using (var rng = tensor(states[i])) set_rng_state(rng);
                i++;
                var piece = plan.HasInput ? input.narrow(plan.Dim, a, len).detach().requires_grad_() : null;
                using (enable_grad())
                {
                    var output = plan.Function(piece, Slice(constants, plan.Dim, a, len), a);
                    autograd.backward(new[] { output }, new[] { gradOutput.narrow(plan.Dim, a, len) });
                }
                if (piece?.grad is { } g) gradInput.narrow(plan.Dim, a, len).copy_(g);
                pieceScope.Dispose();
                NativeHeap.TrimIfSlackAbove(HeapSlackBytes);
            }
        }
        finally
        {
            if (current is not null) set_rng_state(current);
        }
        MemoryProbe.At("piecewise checkpoint backward", gradInput);
        return new List<Tensor> { null!, gradInput.MoveToOuterDisposeScope(), null! };
    }
}
