namespace Mblm.Config;

/// <summary>
/// Non-causal Transformer encoder stage (reference <c>TransformerEncoderBlock</c>, <c>block_type: transformerEncoder</c>):
/// the MEGABYTE layers of <see cref="TransformerBlockConfig"/> without the token shift and with bidirectional attention.
/// Same fields, defaults, parameters and state-dict names as the causal block. Used by <c>MblmEncoder</c> (masked-byte
/// training); the reference accepts it in any stage of any MBLM. Immutable.
/// </summary>
public sealed record TransformerEncoderBlockConfig : AttentionBlockConfig
{
    /// <summary>The reference's discriminator for this block.</summary>
    public const string TypeName = "transformerEncoder";

    /// <inheritdoc />
    public override bool IsCausal => false;
}
