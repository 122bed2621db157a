using Mblm.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// The sequence model of one stage: <c>(R, S, D) → (R, S, D)</c>, causal along S for decoder stages. The hierarchy only
/// talks to stages through this type. A new block type is a subclass built by its config record's
/// <see cref="StageBlockConfig.CreateStage"/>. Incremental decoding (<see cref="NewCache"/>, <see cref="Step"/>) has a
/// default that keeps the current row's inputs and re-runs <c>forward</c> over them at every step: always correct for a
/// causal stage, at O(S) cost per step; blocks with a recurrent or KV state override both for O(1) steps.
/// </summary>
public abstract class StageModel : nn.Module<Tensor, Tensor>
{
    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Base constructor.</summary>
    protected StageModel(string name) : base(name) { }

    /// <summary>
    /// Fresh incremental-decoding state for <paramref name="rows"/> independent rows (one current row per sample), holding
    /// up to <paramref name="capacity"/> positions. The default keeps the row's inputs (see the class remarks).
    /// </summary>
    public virtual StageCache NewCache(long rows, long capacity, Device device) => new RecomputeCache();

    /// <summary>
    /// Advances every row by one position: <paramref name="x"/> (R, D) is the input at the next position, the result the
    /// stage output there; equal to the full forward's output at that position. The default appends x to the kept inputs
    /// and returns the last position of <c>forward</c> over them.
    /// </summary>
    public virtual Tensor Step(Tensor x, StageCache cache)
    {
        if (cache is not RecomputeCache rc)
            throw new InvalidOperationException($"{GetType().Name} overrides NewCache but not Step: override both, or neither");
        using var scope = NewDisposeScope();
        rc.Append(x.unsqueeze(1));
        return forward(rc.Inputs!)[.., -1, ..].MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Feeds a whole row prefix <paramref name="x"/> (R, S, D) into a fresh <paramref name="cache"/> and returns the outputs
    /// (R, S, D). The default steps position by position; stages override it with a parallel computation.
    /// </summary>
    public virtual Tensor Prefill(Tensor x, StageCache cache)
    {
        using var scope = NewDisposeScope();
        if (cache is RecomputeCache rc)
        {
            rc.Append(x);
            return forward(rc.Inputs!).MoveToOuterDisposeScope();
        }
        var outputs = x.unbind(1).Select(xt => Step(xt, cache)).ToArray();
        return stack(outputs, 1).MoveToOuterDisposeScope();
    }
}

/// <summary>Incremental-decoding state of one stage for its current rows; <see cref="Reset"/> starts new rows.</summary>
public abstract class StageCache : IDisposable
{
    /// <summary>Positions fed into the current rows so far.</summary>
    public long Position { get; protected set; }

    /// <summary>Starts new, empty rows (position 0).</summary>
    public abstract void Reset();

    /// <summary>Repeats every row <paramref name="times"/> times (copies of a row adjacent): one decoded prefix, many continuations.</summary>
    public abstract void RepeatRows(long times);

    /// <summary>Rows repeated in place: <c>t.repeat_interleave(times, 0)</c>, the old tensor disposed.</summary>
    protected static Tensor Repeat(Tensor t, long times)
    {
        var r = t.repeat_interleave(times, 0).DetachFromDisposeScope();
        t.Dispose();
        return r;
    }

    /// <inheritdoc />
    public abstract void Dispose();
}

/// <summary>The default cache: the current rows' inputs so far (R, S, D), re-run through the stage at every step.</summary>
internal sealed class RecomputeCache : StageCache
{
    /// <summary>Inputs fed into the current rows, or null before the first.</summary>
    public Tensor? Inputs { get; private set; }

    /// <summary>Appends positions x (R, S', D).</summary>
    public void Append(Tensor x)
    {
        var next = Inputs is null ? x.clone() : cat(new[] { Inputs, x }, 1);
        Inputs?.Dispose();
        Inputs = next.DetachFromDisposeScope();
        Position = Inputs.size(1);
    }

    /// <inheritdoc />
    public override void Reset()
    {
        Inputs?.Dispose();
        Inputs = null;
        Position = 0;
    }

    /// <inheritdoc />
    public override void RepeatRows(long times)
    {
        if (Inputs is { } t) Inputs = Repeat(t, times);
    }

    /// <inheritdoc />
    public override void Dispose() => Reset();
}
