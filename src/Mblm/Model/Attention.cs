using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// MEGABYTE self-attention (causal by default; the reference's <c>AttentionEncoder</c> is the same module with a
/// non-causal <c>Attend</c>): RMSNorm, bias-free <c>to_q</c>, <c>to_kv</c> (first half k, second half v) and
/// <c>to_out</c>, half-split RoPE on q and k, scale <c>d_h^-½</c>, fused scaled-dot-product attention.
/// State: <c>norm.g</c>, <c>to_q.weight</c> (inner, D), <c>to_kv.weight</c> (2·inner, D), <c>to_out.weight</c> (D, inner).
/// </summary>
internal sealed class Attention : nn.Module
{
    private readonly ClampRmsNorm _norm;
    private readonly Linear _toQ, _toKv, _toOut;
    private readonly long _heads, _headDim;
    private readonly double _dropout;
    private readonly bool _causal;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>
    /// Creates attention over width <paramref name="dim"/> with <paramref name="heads"/> heads of <paramref name="headDim"/>;
    /// <paramref name="causal"/> false lets every position attend to every position (encoder stages). Same state either way.
    /// </summary>
    public Attention(long dim, long headDim, long heads, double dropout, bool causal = true) : base("Attention")
    {
        (_heads, _headDim, _dropout, _causal) = (heads, headDim, dropout, causal);
        long inner = heads * headDim;
        _norm = new ClampRmsNorm(dim);
        _toQ = nn.Linear(dim, inner, hasBias: false);
        _toKv = nn.Linear(dim, 2 * inner, hasBias: false);
        _toOut = nn.Linear(inner, dim, hasBias: false);
        register_module("norm", _norm);
        register_module("to_q", _toQ);
        register_module("to_kv", _toKv);
        register_module("to_out", _toOut);
    }

    /// <summary>Whether position t only attends to positions ≤ t.</summary>
    public bool IsCausal => _causal;

    /// <summary>Attention over <paramref name="x"/> <c>(R, S, D)</c> (causal unless built otherwise); <paramref name="angles"/> for S positions, or null.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Style", "IDE1006", Justification = "TorchSharp's module convention: forward")]
    public Tensor forward(Tensor x, RotaryAngles? angles)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Project(x, angles);
        if (StepProfile.Active) (q, k, v) = (StepProfile.Mark(q, "attn.sdpa"), StepProfile.Mark(k, "attn.sdpa"), StepProfile.Mark(v, "attn.sdpa"));
        var o = Attend(q, k, v, training ? _dropout : 0.0, _causal);
        return Merge(StepProfile.Mark(o, "attn.out-proj")).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Rows at most this long attend through explicit batched matmuls (scores, mask, softmax, matmul) instead of libtorch's
    /// fused CPU kernel, whose per-(row, head) blocking costs more than the arithmetic for the local stages' short rows
    /// (P1's 9-position local rows: 23 vs 35 ms forward + backward per step; `benchmarks … profile`). Same result up to rounding.
    /// </summary>
    internal const long ExplicitAttentionMaxLength = 16;

    /// <summary>Scaled dot-product attention of q, k, v (R, h, S, d_h) → (R, h, S, d_h); causal: position t sees ≤ t.</summary>
    internal static Tensor Attend(Tensor q, Tensor k, Tensor v, double dropout, bool causal, long explicitMaxLength = ExplicitAttentionMaxLength)
    {
        long s = q.size(2);
        // fp32 on the CPU only: the fused kernel accumulates low-precision inputs in fp32, the explicit path would not
        if (s > explicitMaxLength || dropout > 0 || q.device.type != DeviceType.CPU || q.dtype != ScalarType.Float32)
            return nn.functional.scaled_dot_product_attention(q, k, v, p: dropout, is_casual: causal);
        using var scope = NewDisposeScope();
        var scores = matmul(q, k.transpose(-2, -1)).mul_(1.0 / Math.Sqrt(q.size(-1)));
        if (causal)
            using (var future = ones(s, s, dtype: ScalarType.Bool, device: q.device).triu_(1))
                scores = scores.masked_fill_(future, double.NegativeInfinity);
        return matmul(scores.softmax(-1), v).MoveToOuterDisposeScope();
    }

    /// <summary>Empty KV cache for <paramref name="rows"/> rows, growing from <paramref name="capacity"/> positions.</summary>
    public KvCache NewKv(long rows, long capacity, Device device, ScalarType dtype = ScalarType.Float32) =>
        new(rows, _heads, _headDim, Math.Max(1, capacity), device, dtype);

    /// <summary>
    /// Attention at one new position <paramref name="position"/>: <paramref name="x"/> (R, D) → (R, D); the new key and
    /// value are written into <paramref name="kv"/> and the query attends to positions 0..position.
    /// </summary>
    public Tensor Step(Tensor x, RotaryAngles? angles, KvCache kv, long position)
    {
        if (!_causal) throw new InvalidOperationException("non-causal attention has no incremental (one-position) form");
        using var scope = NewDisposeScope();
        var (q, k, v) = Project(x.unsqueeze(1), angles);           // (R, h, 1, d_h)
        kv.Write(k, v, position);
        var (keys, values) = kv.Upto(position + 1);
        var o = nn.functional.scaled_dot_product_attention(q, keys, values);
        return Merge(o).squeeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Normalised, projected, rotated heads: q, k, v each <c>(R, h, S, d_h)</c> (views). With rotary angles, the features of
    /// every q and k head come in pair order (see <see cref="PairOrder"/>), so q·k — and with it every attention output —
    /// is the reference's, while the rotation is one complex multiply.
    /// </summary>
    internal (Tensor q, Tensor k, Tensor v) Project(Tensor x, RotaryAngles? angles)
    {
        var h = StepProfile.Mark(_norm.forward(StepProfile.Mark(x, "attn.norm")), "attn.qkv-proj");
        long rows = h.size(0), s = h.size(1), inner = _heads * _headDim;
        // to_q and to_kv as one GEMM over the concatenated weights, q and k rows in pair order when they are rotated:
        // (R, S, 3·inner) = [q | k | v].
        Tensor qkv;
        using (var joined = cat(new[] { _toQ.weight!, _toKv.weight! }, 0))
        using (var w = angles is null ? joined.alias() : joined.index_select(0, PairOrder(h.device)))
            qkv = nn.functional.linear(h, w);
        // split (not slicing) so that backward joins the three gradients with one cat
        var parts = qkv.split(new[] { 2 * inner, inner }, -1);
        var qk = parts[0].view(rows, s, 2 * _heads, _headDim);                                         // (R, S, 2h, d_h)
        if (angles is not null) qk = RotaryEmbedding.Apply(StepProfile.Mark(qk, "attn.rope"), angles); // q and k rotated at once
        var qkHeads = qk.split(_heads, 2);
        var v = parts[1].view(rows, s, _heads, _headDim);
        return (qkHeads[0].transpose(1, 2), qkHeads[1].transpose(1, 2), v.transpose(1, 2));
    }

    /// <summary>
    /// Rows of [to_q; to_kv] in the order the projection computes them: within every q and k head, feature j of the
    /// reference's half layout (rotated with feature j + d_h/2) moves to 2j and its partner to 2j+1, so each rotated pair
    /// is adjacent (a complex number); v rows keep their order. q and k get the same order, so q·k is unchanged.
    /// </summary>
    private Tensor PairOrder(Device device)
    {
        var order = _pairOrder;
        if (order is not null && SameDevice(order.device, device)) return order;
        lock (_pairOrderGate) // forwards may run on several threads at once (concurrent serving)
        {
            if (_pairOrder is null || !SameDevice(_pairOrder.device, device))
            {
                // the previous device's copy is kept until Dispose: another thread may still be reading it
                if (_pairOrder is not null) _stalePairOrders.Add(_pairOrder);
                _pairOrder = tensor(BuildPairOrder(_heads, _headDim), device: device).DetachFromDisposeScope();
            }
            return _pairOrder;
        }
    }

    // Device has reference equality: compare what it names.
    private static bool SameDevice(Device a, Device b) => a.type == b.type && a.index == b.index;

    private volatile Tensor? _pairOrder; // built once per device: the projection runs at every layer and every generated byte
    private readonly object _pairOrderGate = new();
    private readonly List<Tensor> _stalePairOrders = [];

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _pairOrder?.Dispose();
            foreach (var t in _stalePairOrders) t.Dispose();
        }
        base.Dispose(disposing);
    }

    private static long[] BuildPairOrder(long heads, long headDim)
    {
        long inner = heads * headDim, half = headDim / 2;
        var order = new long[3 * inner];
        for (long r = 0; r < 3 * inner; r++) order[r] = r;
        for (long head = 0; head < 2 * heads; head++)
            for (long j = 0; j < half; j++)
            {
                order[head * headDim + 2 * j] = head * headDim + j;
                order[head * headDim + 2 * j + 1] = head * headDim + j + half;
            }
        return order;
    }

    /// <summary>(R, h, S, d_h) heads back to (R, S, D) through <c>to_out</c>.</summary>
    internal Tensor Merge(Tensor heads)
    {
        // (R, h, S, d_h) -> (R, S, h·d_h)
        var merged = heads.transpose(1, 2).reshape(heads.size(0), heads.size(2), _heads * _headDim);
        return _toOut.forward(merged);
    }
}

/// <summary>
/// MEGABYTE feed-forward: <c>0</c> RMSNorm, <c>1</c> Linear(D, m·D), GELU (exact), dropout, <c>4</c> Linear(m·D, D).
/// State: <c>0.g</c>, <c>1.weight</c>, <c>1.bias</c>, <c>4.weight</c>, <c>4.bias</c>.
/// </summary>
internal sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    private readonly ClampRmsNorm _norm;
    private readonly Linear _up, _down;
    private readonly double _dropout;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the feed-forward for width <paramref name="dim"/> with multiplier <paramref name="multiplier"/>.</summary>
    public FeedForward(long dim, long multiplier, double dropout) : base("FeedForward")
    {
        _dropout = dropout;
        _norm = new ClampRmsNorm(dim);
        _up = nn.Linear(dim, multiplier * dim);
        _down = nn.Linear(multiplier * dim, dim);
        register_module("0", _norm);
        register_module("1", _up);
        register_module("4", _down);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = StepProfile.Mark(_norm.forward(StepProfile.Mark(x, "ffn.norm")), "ffn.up");
        h = nn.functional.gelu(StepProfile.Mark(_up.forward(h), "ffn.gelu"));
        if (training && _dropout > 0) h = nn.functional.dropout(h, _dropout, training: true);
        return _down.forward(StepProfile.Mark(h, "ffn.down")).MoveToOuterDisposeScope();
    }
}

/// <summary>Keys and values of past positions (R, h, capacity, d_h), doubled in capacity when full.</summary>
internal sealed class KvCache : IDisposable
{
    private Tensor _k, _v;

    internal KvCache(long rows, long heads, long headDim, long capacity, Device device, ScalarType dtype)
    {
        _k = zeros(new[] { rows, heads, capacity, headDim }, dtype, device).DetachFromDisposeScope();
        _v = zeros(new[] { rows, heads, capacity, headDim }, dtype, device).DetachFromDisposeScope();
    }

    /// <summary>Writes k, v (R, h, S, d_h) at positions <paramref name="at"/>..at+S−1, growing as needed.</summary>
    public void Write(Tensor k, Tensor v, long at)
    {
        long needed = at + k.size(2);
        if (needed > _k.size(2))
        {
            long capacity = Math.Max(needed, 2 * _k.size(2));
            _k = Grow(_k, capacity);
            _v = Grow(_v, capacity);
        }
        using (no_grad())
        {
            _k[.., .., (int)at..(int)needed, ..] = k;
            _v[.., .., (int)at..(int)needed, ..] = v;
        }
    }

    /// <summary>Repeats every row <paramref name="times"/> times (copies adjacent).</summary>
    public void RepeatRows(long times)
    {
        var k = _k.repeat_interleave(times, 0).DetachFromDisposeScope();
        var v = _v.repeat_interleave(times, 0).DetachFromDisposeScope();
        _k.Dispose();
        _v.Dispose();
        (_k, _v) = (k, v);
    }

    /// <summary>Views of the first <paramref name="length"/> positions.</summary>
    public (Tensor K, Tensor V) Upto(long length) => (_k[.., .., ..(int)length, ..], _v[.., .., ..(int)length, ..]);

    private static Tensor Grow(Tensor t, long capacity)
    {
        var bigger = zeros(new[] { t.size(0), t.size(1), capacity, t.size(3) }, t.dtype, t.device);
        bigger[.., .., ..(int)t.size(2), ..] = t;
        t.Dispose();
        return bigger.DetachFromDisposeScope();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _k.Dispose();
        _v.Dispose();
    }
}
