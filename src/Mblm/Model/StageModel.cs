using Mblm.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// The sequence model of one stage: <c>(R, S, D) → (R, S, D)</c>, causal along S (except the encoder's
/// <see cref="TransformerEncoderStage"/>, which has no incremental form). The hierarchy only talks to stages
/// through this type; a new block type is one subclass plus one case in <see cref="Create"/>.
/// </summary>
public abstract class StageModel : nn.Module<Tensor, Tensor>
{
    /// <summary>Names are registered explicitly (see NamingNote.cs); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Base constructor.</summary>
    protected StageModel(string name) : base(name) { }

    /// <summary>Fresh incremental-decoding state for <paramref name="rows"/> independent rows (one current row per sample).</summary>
    public abstract StageCache NewCache(long rows, long capacity, Device device);

    /// <summary>
    /// Advances every row by one position: <paramref name="x"/> (R, D) is the input at the next position, the result the
    /// stage output there; equal to the full forward's output at that position.
    /// </summary>
    public abstract Tensor Step(Tensor x, StageCache cache);

    /// <summary>
    /// Feeds a whole row prefix <paramref name="x"/> (R, S, D) into a fresh <paramref name="cache"/> and returns the outputs
    /// (R, S, D). The default steps position by position; stages override it with a parallel computation.
    /// </summary>
    public virtual Tensor Prefill(Tensor x, StageCache cache)
    {
        using var scope = NewDisposeScope();
        var outputs = x.unbind(1).Select(xt => Step(xt, cache)).ToArray();
        return stack(outputs, 1).MoveToOuterDisposeScope();
    }

    /// <summary>Builds the stage model that <paramref name="block"/> describes.</summary>
    public static StageModel Create(StageBlockConfig block, long dim, int numLayers) => block switch
    {
        TransformerBlockConfig t => new TransformerStage(t, dim, numLayers),
        Mamba2BlockConfig m => new Mamba2Stage(m, dim, numLayers),
        TransformerEncoderBlockConfig e => new TransformerEncoderStage(e, dim, numLayers), // [encoder] registry touch point
        _ => throw new NotSupportedException($"block_type '{block.BlockType}' has no stage model"),
    };
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
