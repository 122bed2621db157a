namespace Mblm.Config;

/// <summary>Ready-made model configs.</summary>
public static class MblmPresets
{
    /// <summary>
    /// A small two-stage byte model (≈ 0.5 M parameters): a global Transformer over 64 patches of 8 bytes and a local
    /// Transformer inside each patch, 512 bytes of context, 257 tokens (bytes and pad 256), rotary attention. Trains to a
    /// useful model on a few hundred kilobytes of text in about a minute on two CPU cores.
    /// </summary>
    public static MblmConfig Small { get; } = new MblmConfig
    {
        NumTokens = 257,
        PadTokenId = 256,
        HiddenDims = [128, 64],
        NumLayers = [2, 2],
        SeqLens = [64, 8],
        Blocks =
        [
            new TransformerBlockConfig { AttnHeadDims = 32, AttnNumHeads = 4, AttnUseRotEmbs = true },
            new TransformerBlockConfig { AttnHeadDims = 16, AttnNumHeads = 4, AttnUseRotEmbs = true },
        ],
    }.Validate();

    /// <summary>
    /// <see cref="Small"/> for visual question answering: 260 tokens (bytes, pad 256, end of modality 257, start of text 258,
    /// start of image 259) and 2,048 tokens of context (256 patches of 8). Its weights other than the vocabulary rows have
    /// the same shapes as <see cref="Small"/>'s, so a Small language model transfers into it.
    /// </summary>
    public static MblmConfig SmallVqa { get; } = Small with { NumTokens = 260, SeqLens = [256, 8] };

    /// <summary>The tiny config used by tests and the CLI quick start (global Mamba2 + local Transformer, 256 bytes of context).</summary>
    public static MblmConfig Tiny { get; } = new MblmConfig
    {
        NumTokens = 257,
        PadTokenId = 256,
        HiddenDims = [64, 32],
        NumLayers = [2, 1],
        SeqLens = [64, 4],
        Blocks =
        [
            new Mamba2BlockConfig { DState = 16, DConv = 4, Expand = 2, Headdim = 16 },
            new TransformerBlockConfig { AttnHeadDims = 8, AttnNumHeads = 4, AttnUseRotEmbs = true, PosEmbType = PosEmbType.Fixed },
        ],
    }.Validate();
}
