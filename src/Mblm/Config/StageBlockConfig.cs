namespace Mblm.Config;

/// <summary>Positional embedding of a stage's token embeddings (the reference's <c>pos_emb_type</c>).</summary>
public enum PosEmbType
{
    /// <summary>No positional embedding (<c>null</c>; what the shipped configs use for Mamba stages).</summary>
    None,
    /// <summary>Learned absolute embedding <c>nn.Embedding(P_i, D_i)</c> (<c>"fixed"</c>; learned despite the name).</summary>
    Fixed,
    /// <summary>Interleaved (torchtune-style) rotary embedding applied to the embedding vectors as one head (<c>"rope"</c>).</summary>
    Rope,
}

/// <summary>
/// The config of one stage's sequence model, which maps <c>(R, S, D)</c> to <c>(R, S, D)</c> (causally along S for decoder
/// stages). A block type is a record deriving from this one, registered under its <c>block_type</c> name in
/// <see cref="StageBlocks"/>: it knows its fields (its init properties, read and written by the config reader and writer),
/// its rules (<see cref="Validate"/>), its parameter count, how to describe itself and how to build its stage module.
/// Built-in: <see cref="TransformerBlockConfig"/> (<c>transformer</c>) and <see cref="Mamba2BlockConfig"/> (<c>mamba2</c>).
/// Immutable.
/// </summary>
public abstract record StageBlockConfig
{
    /// <summary>The reference's <c>block_type</c> discriminator (the name this record type is registered under).</summary>
    public string BlockType => StageBlocks.NameOf(GetType());

    /// <summary>Positional embedding added to this stage's token embeddings.</summary>
    public PosEmbType PosEmbType { get; init; } = PosEmbType.None;

    /// <summary>
    /// Whether the stage's output at position t depends only on inputs at positions ≤ t. Decoder (MBLM) stages must be
    /// causal; non-causal blocks serve the encoder.
    /// </summary>
    public virtual bool IsCausal => true;

    /// <summary>Whether the stage draws random numbers in training (dropout): checkpointing then replays the RNG.</summary>
    public virtual bool HasDropout => false;

    /// <summary>
    /// Number of parameters of the stage model at width <paramref name="dim"/> with <paramref name="layers"/> layers,
    /// computed from the shapes (no allocation). The default builds the stage on the CPU and counts: override it for
    /// blocks that may be configured large.
    /// </summary>
    public virtual long CountParameters(long dim, long layers)
    {
        using var stage = CreateStage(dim, checked((int)layers));
        return stage.parameters().Sum(p => p.numel());
    }

    /// <summary>
    /// Checks the block's own rules for a stage of width <paramref name="dim"/>; throws <see cref="ConfigException"/> naming
    /// <paramref name="path"/>.key. Overrides should call the base rule (rope needs an even width).
    /// </summary>
    public virtual void Validate(string path, int dim) =>
        ConfigException.Require(PosEmbType != PosEmbType.Rope || dim % 2 == 0, $"{path}.pos_emb_type", "rope needs an even hidden dim");

    /// <summary>Builds the stage module: <c>(R, S, dim) → (R, S, dim)</c> with <paramref name="numLayers"/> layers.</summary>
    public abstract Mblm.Model.StageModel CreateStage(long dim, int numLayers);

    /// <summary>A one-line description for <c>mblm info</c>; the default lists the block type and its fields.</summary>
    public virtual string Describe(int dim) =>
        BlockType + " " + string.Join(", ", StageBlocks.FieldsOf(GetType()).Select(f => $"{f.Key} {FormatValue(f.Property.GetValue(this))}"));

    private static string FormatValue(object? v) => v switch
    {
        null => "null",
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => v.ToString() ?? "",
    };

    /// <summary>The reference spelling of a positional-embedding type.</summary>
    public static string PosEmbName(PosEmbType t) => t switch { PosEmbType.Fixed => "fixed", PosEmbType.Rope => "rope", _ => "null" };
}

/// <summary>
/// The fields, rules and parameter count shared by the MEGABYTE Transformer blocks: the causal decoder block
/// (<see cref="TransformerBlockConfig"/>) and the reference's non-causal encoder block
/// (<see cref="TransformerEncoderBlockConfig"/>), which have the same parameters and state-dict names.
/// </summary>
public abstract record AttentionBlockConfig : StageBlockConfig
{
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

    /// <inheritdoc />
    public override long CountParameters(long dim, long layers)
    {
        checked
        {
            long inner = (long)AttnHeadDims * AttnNumHeads, m = FfMultiplier;
            long attention = 4 * dim * inner + dim;                 // to_q, to_kv (2x), to_out, norm.g
            long feedForward = 2 * m * dim * dim + (m + 2) * dim;   // two Linear with bias + norm.g
            return layers * (attention + feedForward) + dim;         // + final norm.g
        }
    }

    /// <inheritdoc />
    public override void Validate(string path, int dim)
    {
        ConfigException.Require(AttnHeadDims > 0, $"{path}.attn_head_dims", "must be a positive integer");
        ConfigException.Require(AttnNumHeads > 0, $"{path}.attn_num_heads", "must be a positive integer");
        ConfigException.Require(!AttnUseRotEmbs || AttnHeadDims % 2 == 0, $"{path}.attn_head_dims", "must be even when attn_use_rot_embs is true (rotary pairs)");
        ConfigException.Require(FfMultiplier > 0, $"{path}.ff_multiplier", "must be a positive integer");
        ConfigException.Require(AttnDropout is >= 0 and < 1, $"{path}.attn_dropout", "must be in [0, 1)");
        ConfigException.Require(FfDropout is >= 0 and < 1, $"{path}.ff_dropout", "must be in [0, 1)");
        base.Validate(path, dim);
    }

    /// <inheritdoc />
    public override bool HasDropout => AttnDropout > 0 || FfDropout > 0;

    /// <inheritdoc />
    public override Mblm.Model.StageModel CreateStage(long dim, int numLayers) => new Mblm.Model.TransformerStage(this, dim, numLayers);

    /// <inheritdoc />
    public override string Describe(int dim) =>
        $"{BlockType}{(IsCausal ? "" : " (non-causal)")} {AttnNumHeads}x{AttnHeadDims} heads, ff x{FfMultiplier}{(AttnUseRotEmbs ? ", rope in attention" : "")}";
}

/// <summary>
/// MEGABYTE-style causal Transformer decoder stage (reference <c>TransformerBlock</c>, <c>block_type: transformer</c>):
/// token shift, RMSNorm (clamp form), bias-free q/kv/out projections, half-split RoPE, GELU feed-forward, final RMSNorm.
/// </summary>
public sealed record TransformerBlockConfig : AttentionBlockConfig;

/// <summary>
/// Mamba2 stage (mamba-ssm 2.2.2 semantics as MBLM uses it): pre-norm residual blocks around the Mamba2 mixer, final
/// add + RMSNorm. One group, <c>d_inner = expand·D</c>, <c>d_inner / headdim</c> heads.
/// </summary>
public sealed record Mamba2BlockConfig : StageBlockConfig
{
    /// <summary>SSM state size N (<c>d_state</c>, required).</summary>
    public required int DState { get; init; }
    /// <summary>Width of the causal depthwise convolution (<c>d_conv</c>, required).</summary>
    public required int DConv { get; init; }
    /// <summary>Inner expansion factor (<c>expand</c>, required).</summary>
    public required int Expand { get; init; }
    /// <summary>Head size (<c>headdim</c>, required).</summary>
    public required int Headdim { get; init; }
    /// <summary>Dropout before the final residual norm in training (<c>dropout</c>, default 0); never applied in eval.</summary>
    public double Dropout { get; init; }

    /// <summary>Inner width <c>expand · dim</c>.</summary>
    public long InnerDim(long dim) => checked(Expand * dim);

    /// <inheritdoc />
    public override long CountParameters(long dim, long layers)
    {
        checked
        {
            long di = InnerDim(dim), n = DState, heads = di / Headdim, convCh = di + 2 * n;
            long perLayer = dim * (2 * di + 2 * n + heads)   // in_proj
                          + convCh * DConv + convCh          // conv1d weight + bias
                          + 3 * heads                        // dt_bias, A_log, D
                          + di                               // gated norm
                          + di * dim                         // out_proj
                          + dim;                             // block pre-norm
            return layers * perLayer + dim;                  // + norm_f
        }
    }

    /// <inheritdoc />
    public override void Validate(string path, int dim)
    {
        ConfigException.Require(DState > 0, $"{path}.d_state", "must be a positive integer");
        ConfigException.Require(DConv > 0, $"{path}.d_conv", "must be a positive integer");
        ConfigException.Require(Expand > 0, $"{path}.expand", "must be a positive integer");
        ConfigException.Require(Headdim > 0, $"{path}.headdim", "must be a positive integer");
        ConfigException.Require(InnerDim(dim) % Headdim == 0, $"{path}.headdim",
            $"must divide expand * hidden dim = {InnerDim(dim)}");
        ConfigException.Require(Dropout is >= 0 and < 1, $"{path}.dropout", "must be in [0, 1)");
        base.Validate(path, dim);
    }

    /// <inheritdoc />
    public override bool HasDropout => Dropout > 0;

    /// <inheritdoc />
    public override Mblm.Model.StageModel CreateStage(long dim, int numLayers) => new Mblm.Model.Mamba2Stage(this, dim, numLayers);

    /// <inheritdoc />
    public override string Describe(int dim) =>
        $"mamba2 d_state {DState}, d_conv {DConv}, expand {Expand}, headdim {Headdim} ({InnerDim(dim) / Headdim} heads)";
}
