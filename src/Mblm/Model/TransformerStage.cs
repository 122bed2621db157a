using Mblm.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// MEGABYTE-style causal Transformer stage (reference <c>TransformerDecoder</c>): for each layer
/// <c>x = Attention(shift(x)) + x; x = FeedForward(shift(x)) + x</c>, then a final RMSNorm.
/// State: <c>layers.j.0.*</c> (attention), <c>layers.j.1.*</c> (feed-forward), <c>norm.g</c>, buffer <c>rotary_emb.inv_freq</c>.
/// </summary>
public sealed class TransformerStage : StageModel
{
    private readonly ModuleList<TransformerLayer> _layers;
    private readonly ClampRmsNorm _norm;
    private readonly RotaryEmbedding? _rotary;

    /// <summary>Builds the stage for width <paramref name="dim"/> with <paramref name="numLayers"/> layers.</summary>
    public TransformerStage(TransformerBlockConfig block, long dim, int numLayers) : base("TransformerDecoder")
    {
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
        return _norm.forward(x).MoveToOuterDisposeScope();
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

/// <summary>One Transformer layer: <c>0</c> = <see cref="Attention"/>, <c>1</c> = <see cref="FeedForward"/>.</summary>
public sealed class TransformerLayer : nn.Module
{
    private readonly Attention _attention;
    private readonly FeedForward _feedForward;

    /// <summary>Names are registered explicitly (see NamingNote.cs); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    internal TransformerLayer(TransformerBlockConfig block, long dim) : base("TransformerLayer")
    {
        _attention = new Attention(dim, block.AttnHeadDims, block.AttnNumHeads, block.AttnDropout);
        _feedForward = new FeedForward(dim, block.FfMultiplier, block.FfDropout);
        register_module("0", _attention);
        register_module("1", _feedForward);
    }

    /// <summary>Pre-norm residual attention then feed-forward, each on the token-shifted input.</summary>
    public Tensor forward(Tensor x, RotaryAngles? angles)
    {
        using var scope = NewDisposeScope();
        x = _attention.forward(TransformerStage.TokenShift(x), angles) + x;
        x = _feedForward.forward(TransformerStage.TokenShift(x)) + x;
        return x.MoveToOuterDisposeScope();
    }
}
