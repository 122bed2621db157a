using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// MEGABYTE's rotary embedding for attention heads, GPT-NeoX "half" layout: <c>t·cos + rotate_half(t)·sin</c> with
/// <c>rotate_half(x) = cat(-x₂, x₁)</c>, computed in float32. Positions count from 0 including the stage's start token.
/// State: buffer <c>inv_freq</c> (d_h/2) <c>= 1 / 10000^(arange(0, d_h, 2) / d_h)</c>.
/// </summary>
internal sealed class RotaryEmbedding : nn.Module
{
    private Tensor InvFreq => get_buffer("inv_freq")!; // by name: Module.to() replaces buffers

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the embedding for heads of size <paramref name="headDim"/> (even).</summary>
    public RotaryEmbedding(long headDim) : base("RotaryEmbedding")
    {
        register_buffer("inv_freq", 1.0 / pow(10000.0, arange(0, headDim, 2, dtype: float32) / (float)headDim), persistent: true);
    }

    /// <summary>
    /// The rotations <c>cos θ + i·sin θ</c> for positions <c>offset .. offset+length-1</c>, complex <c>(length, 1, d_h/2)</c>
    /// to broadcast over the heads of a <c>(…, S, heads, d_h/2)</c> tensor of feature pairs; computed once per stage call
    /// and shared by every layer.
    /// </summary>
    public RotaryAngles Angles(long length, long offset = 0)
    {
        using var scope = NewDisposeScope();
        var positions = arange(offset, offset + length, dtype: float32, device: InvFreq.device);
        // A model cast to a low-precision dtype (bf16 training) must not round the frequencies: recompute them in fp32.
        var invFreq = InvFreq.dtype == float32 ? InvFreq
            : 1.0 / pow(10000.0, arange(0, 2 * InvFreq.size(0), 2, dtype: float32, device: InvFreq.device) / (float)(2 * InvFreq.size(0)));
        var freqs = outer(positions, invFreq);                                  // (S, d_h/2)
        return new RotaryAngles(polar(ones_like(freqs), freqs).unsqueeze(1).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Rotates <paramref name="t"/> <c>(…, S, heads, d_h)</c> whose head features are in pair order — (x_j, x_{j+d_h/2}) of
    /// the reference's half layout at (2j, 2j+1) — as one complex multiply: the pair becomes
    /// <c>(x_j cos − x_{j+d_h/2} sin, x_{j+d_h/2} cos + x_j sin)</c>, the reference's <c>t·cos + rotate_half(t)·sin</c>.
    /// Float32 math, result in t's dtype.
    /// </summary>
    public static Tensor Apply(Tensor t, RotaryAngles angles)
    {
        using var scope = NewDisposeScope();
        var x = t.to_type(float32);
        var shape = x.shape;
        var pairs = view_as_complex(x.view(shape[..^1].Append(shape[^1] / 2).Append(2L).ToArray()));
        var y = view_as_real(pairs * angles.Rotation).view(shape);
        return y.to_type(t.dtype).MoveToOuterDisposeScope();
    }
}

/// <summary>Rotary rotations <c>cos θ + i·sin θ</c>, complex64 (S, 1, d_h/2).</summary>
internal sealed record RotaryAngles(Tensor Rotation) : IDisposable
{
    /// <inheritdoc />
    public void Dispose() => Rotation.Dispose();
}

/// <summary>
/// Stage-level rotary positional embedding (<c>pos_emb_type: rope</c>): torchtune's interleaved form (pairs
/// <c>(x[2j], x[2j+1])</c>, base 10000) applied to the token-embedding vectors as one head of size D, positions
/// <c>0..S-1</c> of the stage sequence (before the start token is prepended). No persistent state.
/// </summary>
internal sealed class InterleavedRope : nn.Module<Tensor, Tensor>
{
    private readonly long _dim;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the embedding for vectors of width <paramref name="dim"/> (even).</summary>
    public InterleavedRope(long dim) : base("RoPE") => _dim = dim;

    /// <summary>Applies the rotation to <paramref name="x"/> <c>(…, S, D)</c> along its second-to-last dimension.</summary>
    public override Tensor forward(Tensor x) => forward(x, 0);

    /// <summary>The same for positions starting at <paramref name="firstPosition"/> (incremental decoding).</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Style", "IDE1006", Justification = "TorchSharp's module convention: forward")]
    public Tensor forward(Tensor x, long firstPosition)
    {
        using var scope = NewDisposeScope();
        long s = x.size(-2);
        var theta = 1.0 / pow(10000.0, arange(0, _dim, 2, dtype: float32, device: x.device) / (float)_dim); // (D/2)
        var angles = outer(arange(firstPosition, firstPosition + s, dtype: float32, device: x.device), theta); // (S, D/2)
        var (cos, sin) = (angles.cos(), angles.sin());
        var shape = x.shape;
        var pairs = x.to_type(float32).reshape(shape[..^1].Append(_dim / 2).Append(2).ToArray());          // (…, S, D/2, 2)
        var even = pairs.select(-1, 0);
        var odd = pairs.select(-1, 1);
        var y = stack(new[] { even * cos - odd * sin, odd * cos + even * sin }, -1).reshape(shape);
        return y.to_type(x.dtype).MoveToOuterDisposeScope();
    }
}
