using Mblm.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// Non-causal Transformer stage (reference <c>TransformerEncoder</c>, <c>block_type: transformerEncoder</c>): for each
/// layer <c>x = Attention(x) + x; x = FeedForward(x) + x</c> with bidirectional attention and no token shift, then a final
/// RMSNorm. Every output position depends on every input position of its row. Parameters and state-dict names equal
/// <see cref="TransformerStage"/>'s: <c>layers.j.0.*</c> (attention), <c>layers.j.1.*</c> (feed-forward), <c>norm.g</c>,
/// buffer <c>rotary_emb.inv_freq</c> (half-split RoPE over positions 0..S-1, start position included).
/// There is no incremental form: <see cref="NewCache"/>, <see cref="Step"/> and <see cref="Prefill"/> throw.
/// </summary>
public sealed class TransformerEncoderStage : StageModel
{
    private readonly ModuleList<TransformerEncoderLayer> _layers;
    private readonly ClampRmsNorm _norm;
    private readonly RotaryEmbedding? _rotary;

    /// <summary>Builds the stage for width <paramref name="dim"/> with <paramref name="numLayers"/> layers.</summary>
    public TransformerEncoderStage(TransformerEncoderBlockConfig block, long dim, int numLayers) : base("TransformerEncoder")
    {
        if (block.AttnUseRotEmbs)
        {
            _rotary = new RotaryEmbedding(block.AttnHeadDims);
            register_module("rotary_emb", _rotary);
        }
        _layers = new ModuleList<TransformerEncoderLayer>(Enumerable.Range(0, numLayers).Select(_ => new TransformerEncoderLayer(block, dim)).ToArray());
        register_module("layers", _layers);
        _norm = new ClampRmsNorm(dim);
        register_module("norm", _norm);
    }

    /// <summary>The layers, in order.</summary>
    public IReadOnlyList<TransformerEncoderLayer> Layers => _layers.ToList();

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var angles = _rotary?.Angles(x.size(1));
        foreach (var layer in _layers)
            x = layer.forward(x, angles);
        return _norm.forward(x).MoveToOuterDisposeScope();
    }

    private static NotSupportedException NotCausal() =>
        new("a transformerEncoder stage is not causal: its outputs depend on later positions, so it has no incremental " +
            "decoding (generation needs causal stages: transformer or mamba2)");

    /// <summary>Not supported: the stage is not causal.</summary>
    public override StageCache NewCache(long rows, long capacity, Device device) => throw NotCausal();

    /// <summary>Not supported: the stage is not causal.</summary>
    public override Tensor Step(Tensor x, StageCache cache) => throw NotCausal();

    /// <summary>Not supported: the stage is not causal.</summary>
    public override Tensor Prefill(Tensor x, StageCache cache) => throw NotCausal();
}

/// <summary>One encoder layer: <c>0</c> = non-causal <see cref="Attention"/>, <c>1</c> = <see cref="FeedForward"/>; no token shift.</summary>
public sealed class TransformerEncoderLayer : nn.Module
{
    private readonly Attention _attention;
    private readonly FeedForward _feedForward;

    /// <summary>The attention sublayer (non-causal).</summary>
    public Attention Attention => _attention;

    /// <summary>The feed-forward sublayer.</summary>
    public FeedForward FeedForward => _feedForward;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    internal TransformerEncoderLayer(TransformerEncoderBlockConfig block, long dim) : base("TransformerEncoderLayer")
    {
        _attention = new Attention(dim, block.AttnHeadDims, block.AttnNumHeads, block.AttnDropout, causal: false);
        _feedForward = new FeedForward(dim, block.FfMultiplier, block.FfDropout);
        register_module("0", _attention);
        register_module("1", _feedForward);
    }

    /// <summary>Pre-norm residual attention then feed-forward, on the unshifted input.</summary>
    public Tensor forward(Tensor x, RotaryAngles? angles)
    {
        using var scope = NewDisposeScope();
        x = _attention.forward(x, angles) + x;
        x = _feedForward.forward(x) + x;
        return x.MoveToOuterDisposeScope();
    }
}
