using Mblm.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// MEGABYTE-style Transformer stage. Causal (reference <c>TransformerDecoder</c>, block <c>transformer</c>): for each layer
/// <c>x = Attention(shift(x)) + x; x = FeedForward(shift(x)) + x</c>, then a final RMSNorm. Non-causal (reference
/// <c>TransformerEncoder</c>, block <c>transformerEncoder</c>): the same layers without token shift and with bidirectional
/// attention; it has no incremental form (<see cref="NewCache"/>, <see cref="Step"/> and <see cref="Prefill"/> throw).
/// State (both): <c>layers.j.0.*</c> (attention), <c>layers.j.1.*</c> (feed-forward), <c>norm.g</c>, buffer
/// <c>rotary_emb.inv_freq</c>.
/// </summary>
public sealed class TransformerStage : StageModel
{
    private readonly ModuleList<TransformerLayer> _layers;
    private readonly ClampRmsNorm _norm;
    private readonly RotaryEmbedding? _rotary;
    private readonly long _dim;

    /// <summary>Whether outputs depend only on earlier positions (the decoder block) or on the whole row (the encoder block).</summary>
    public bool IsCausal { get; }

    /// <summary>Builds the stage for width <paramref name="dim"/> with <paramref name="numLayers"/> layers.</summary>
    public TransformerStage(AttentionBlockConfig block, long dim, int numLayers) : base(block.IsCausal ? "TransformerDecoder" : "TransformerEncoder")
    {
        _dim = dim;
        IsCausal = block.IsCausal;
        if (block.AttnUseRotEmbs)
        {
            _rotary = new RotaryEmbedding(block.AttnHeadDims);
            register_module("rotary_emb", _rotary);
        }
        _layers = new ModuleList<TransformerLayer>(Enumerable.Range(0, numLayers).Select(_ => new TransformerLayer(block, dim)).ToArray());
        register_module("layers", _layers);
        _norm = new ClampRmsNorm(dim);
        register_module("norm", _norm);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var angles = _rotary?.Angles(x.size(1));
        foreach (var layer in _layers)
            x = layer.forward(x, angles);
        return _norm.forward(StepProfile.Mark(x, "final-norm")).MoveToOuterDisposeScope();
    }

    private NotSupportedException NotCausal() =>
        new("a transformerEncoder stage is not causal: its outputs depend on later positions, so it has no incremental " +
            "decoding (generation needs causal stages)");

    /// <inheritdoc />
    public override StageCache NewCache(long rows, long capacity, Device device) => !IsCausal ? throw NotCausal() :
        new TransformerCache(_layers.Select(l => l.Attention.NewKv(rows, capacity, device, CacheDtype)).ToArray(), rows, _dim, device, CacheDtype);

    // Caches hold activations in the model's dtype (a bf16 model decodes with bf16 caches).
    private ScalarType CacheDtype => parameters().First().dtype;

    /// <inheritdoc />
    public override Tensor Step(Tensor x, StageCache cache)
    {
        if (!IsCausal) throw NotCausal();
        using var scope = NewDisposeScope();
        var c = (TransformerCache)cache;
        long position = c.Position;
        var angles = _rotary?.Angles(1, position);
        for (int i = 0; i < _layers.Count; i++)
        {
            var layer = _layers[i];
            // Token shift at one position: the second half of the features comes from the previous position's input.
            var shifted = ShiftStep(x, c.PreviousAttentionInput[i]);
            c.PreviousAttentionInput[i].copy_(x);
            x = layer.Attention.Step(shifted, angles, c.Kv[i], position) + x;
            shifted = ShiftStep(x, c.PreviousFeedForwardInput[i]);
            c.PreviousFeedForwardInput[i].copy_(x);
            x = layer.FeedForward.forward(shifted.unsqueeze(1)).squeeze(1) + x;
        }
        c.Advance(1);
        return _norm.forward(x).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor Prefill(Tensor x, StageCache cache)
    {
        if (!IsCausal) throw NotCausal();
        using var scope = NewDisposeScope();
        var c = (TransformerCache)cache;
        if (c.Position != 0) throw new InvalidOperationException("Prefill needs a fresh (reset) cache");
        long s = x.size(1);
        var angles = _rotary?.Angles(s);
        for (int i = 0; i < _layers.Count; i++)
        {
            var layer = _layers[i];
            c.PreviousAttentionInput[i].copy_(x[.., -1, ..]);
            var (q, k, v) = layer.Attention.Project(TokenShift(x), angles);
            c.Kv[i].Write(k, v, 0);
            x = layer.Attention.Merge(Attention.Attend(q, k, v, 0.0, causal: true)) + x;
            c.PreviousFeedForwardInput[i].copy_(x[.., -1, ..]);
            x = layer.FeedForward.forward(TokenShift(x)) + x;
        }
        c.Advance(s);
        return _norm.forward(x).MoveToOuterDisposeScope();
    }

    // (R, D) input at position t and the input at t−1 → the token-shifted input at t.
    private static Tensor ShiftStep(Tensor x, Tensor previous)
    {
        long half = (x.size(-1) + 1) / 2; // chunk(2): the first part takes the odd feature
        return cat(new[] { x[.., ..(int)half], previous[.., (int)half..] }, -1);
    }

    /// <summary>
    /// Token shift (from RWKV, as in MEGABYTE): the second half of the features is moved one step forward in time
    /// (position 0 gets zeros); the first half is unchanged.
    /// </summary>
    public static Tensor TokenShift(Tensor x)
    {
        using var scope = NewDisposeScope();
        var halves = x.chunk(2, -1);
        var shifted = nn.functional.pad(halves[1], new long[] { 0, 0, 1, -1 });
        return cat(new[] { halves[0], shifted }, -1).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// One Transformer layer: <c>0</c> = <see cref="Attention"/>, <c>1</c> = <see cref="FeedForward"/>; causal layers
/// token-shift each sublayer's input and mask attention, non-causal (encoder) layers do neither.
/// </summary>
internal sealed class TransformerLayer : nn.Module
{
    private readonly Attention _attention;
    private readonly FeedForward _feedForward;
    private readonly bool _causal;

    /// <summary>The attention sublayer.</summary>
    internal Attention Attention => _attention;

    /// <summary>The feed-forward sublayer.</summary>
    internal FeedForward FeedForward => _feedForward;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    internal TransformerLayer(AttentionBlockConfig block, long dim) : base("TransformerLayer")
    {
        _causal = block.IsCausal;
        _attention = new Attention(dim, block.AttnHeadDims, block.AttnNumHeads, block.AttnDropout, causal: _causal);
        _feedForward = new FeedForward(dim, block.FfMultiplier, block.FfDropout);
        register_module("0", _attention);
        register_module("1", _feedForward);
    }

    /// <summary>Pre-norm residual attention then feed-forward, each on the token-shifted input (causal layers) or the input.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Style", "IDE1006", Justification = "TorchSharp's module convention: forward")]
    public Tensor forward(Tensor x, RotaryAngles? angles)
    {
        using var scope = NewDisposeScope();
        x = StepProfile.Mark(x, "attn.shift");
        x = StepProfile.Mark(_attention.forward(_causal ? TransformerStage.TokenShift(x) : x, angles), "attn.residual") + x;
        x = StepProfile.Mark(x, "ffn.shift");
        x = StepProfile.Mark(_feedForward.forward(_causal ? TransformerStage.TokenShift(x) : x), "ffn.residual") + x;
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>Decoding state of a Transformer stage: per layer the KV cache and the previous sublayer inputs (token shift).</summary>
internal sealed class TransformerCache : StageCache
{
    internal KvCache[] Kv { get; }
    internal Tensor[] PreviousAttentionInput { get; }
    internal Tensor[] PreviousFeedForwardInput { get; }

    internal TransformerCache(KvCache[] kv, long rows, long dim, Device device, ScalarType dtype)
    {
        Kv = kv;
        PreviousAttentionInput = kv.Select(_ => zeros(new[] { rows, dim }, dtype, device).DetachFromDisposeScope()).ToArray();
        PreviousFeedForwardInput = kv.Select(_ => zeros(new[] { rows, dim }, dtype, device).DetachFromDisposeScope()).ToArray();
    }

    internal void Advance(long positions) => Position += positions;

    /// <inheritdoc />
    public override void Reset()
    {
        Position = 0;
        foreach (var t in PreviousAttentionInput.Concat(PreviousFeedForwardInput)) t.zero_();
    }

    /// <inheritdoc />
    public override void RepeatRows(long times)
    {
        foreach (var kv in Kv) kv.RepeatRows(times);
        for (int i = 0; i < Kv.Length; i++)
        {
            PreviousAttentionInput[i] = Repeat(PreviousAttentionInput[i], times);
            PreviousFeedForwardInput[i] = Repeat(PreviousFeedForwardInput[i], times);
        }
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        foreach (var kv in Kv) kv.Dispose();
        foreach (var t in PreviousAttentionInput.Concat(PreviousFeedForwardInput)) t.Dispose();
    }
}
