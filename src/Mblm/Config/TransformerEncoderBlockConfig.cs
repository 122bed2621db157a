namespace Mblm.Config;

/// <summary>
/// Non-causal Transformer encoder stage (reference <c>TransformerEncoderBlock</c>, <c>block_type: transformerEncoder</c>):
/// the MEGABYTE layers of <see cref="TransformerBlockConfig"/> without the token shift and with bidirectional attention.
/// Same fields, defaults, parameters and state-dict names as the causal block. Used by <c>MblmEncoder</c> (masked-byte
/// training); the reference accepts it in any stage of any MBLM. Immutable.
/// </summary>
public sealed record TransformerEncoderBlockConfig : StageBlockConfig
{
    /// <summary>The reference's discriminator for this block.</summary>
    public const string TypeName = "transformerEncoder";

    /// <inheritdoc />
    public override bool IsCausal => false;

    /// <inheritdoc />
    public override bool HasDropout => AttnDropout > 0 || FfDropout > 0;

    /// <inheritdoc />
    public override Mblm.Model.StageModel CreateStage(long dim, int numLayers) => new Mblm.Model.TransformerEncoderStage(this, dim, numLayers);

    /// <inheritdoc />
    public override string Describe(int dim) =>
        $"transformerEncoder (non-causal) {AttnNumHeads}x{AttnHeadDims} heads, ff x{FfMultiplier}{(AttnUseRotEmbs ? ", rope in attention" : "")}";
    /// <summary>Size of one attention head (<c>attn_head_dims</c>, required).</summary>
    public required int AttnHeadDims { get; init; }
    /// <summary>Number of attention heads (<c>attn_num_heads</c>, required).</summary>
    public required int AttnNumHeads { get; init; }
    /// <summary>Rotary embedding inside attention (<c>attn_use_rot_embs</c>, required).</summary>
    public required bool AttnUseRotEmbs { get; init; }
    /// <summary>Dropout on attention probabilities (<c>attn_dropout</c>, default 0).</summary>
    public double AttnDropout { get; init; }
    /// <summary>Feed-forward width multiplier (<c>ff_multiplier</c>, default 2).</summary>
    public int FfMultiplier { get; init; } = 2;
    /// <summary>Dropout inside the feed-forward (<c>ff_dropout</c>, default 0).</summary>
    public double FfDropout { get; init; }
    /// <summary>Accepted for compatibility (<c>use_flash_attn</c>); attention always uses fused SDPA, the same function.</summary>
    public bool UseFlashAttn { get; init; }

    // The causal block with the same fields: shapes, parameter count and validation rules are identical.
    private TransformerBlockConfig SameShape => new()
    {
        PosEmbType = PosEmbType, AttnHeadDims = AttnHeadDims, AttnNumHeads = AttnNumHeads, AttnUseRotEmbs = AttnUseRotEmbs,
        AttnDropout = AttnDropout, FfMultiplier = FfMultiplier, FfDropout = FfDropout, UseFlashAttn = UseFlashAttn,
    };

    /// <inheritdoc />
    public override long CountParameters(long dim, long layers) => SameShape.CountParameters(dim, layers);

    /// <inheritdoc />
    public override void Validate(string path, int dim) => SameShape.Validate(path, dim);
}
