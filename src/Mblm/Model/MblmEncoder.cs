using Mblm.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// The MBLM encoder (reference <c>MBLMEncoder</c>): an <see cref="MblmModel"/> hierarchy, registered as <c>mblm</c>, trained
/// by masked-byte prediction. Input bytes chosen for masking are replaced by <see cref="MaskTokenId"/>; the model sees the
/// whole (masked) sequence and predicts the original byte at every masked position. With
/// <see cref="TransformerEncoderBlockConfig"/> stages every output depends on every input byte (no causal mask, no token
/// shift); the hierarchy itself (padding, patch embedders, start tokens, next-stage projections, head) is the decoder's.
/// <para>
/// Alignment differs from the decoder's reading: <c>hidden[:, t]</c> and <c>logits[:, t]</c> belong to byte t itself
/// (the local stage's output at byte t's own slot), and the loss compares <c>logits[:, t]</c> with <c>labels[:, t]</c>
/// without a shift. State-dict names are the reference's: every <see cref="MblmModel"/> name prefixed with <c>mblm.</c>;
/// there are no other parameters (the mask id is an ordinary row of the byte embeddings). See docs/encoder.md.
/// </para>
/// </summary>
public sealed class MblmEncoder : nn.Module<Tensor, Tensor>
{
    private readonly MblmModel _mblm;

    /// <summary>The (validated, immutable) configuration this encoder was built from.</summary>
    public MblmEncoderConfig Config { get; }

    /// <summary>The id of masked input bytes and the ignore index of the loss (<c>mask_token_id</c>).</summary>
    public int MaskTokenId => Config.MaskTokenId;

    /// <summary>The wrapped hierarchy (state-dict prefix <c>mblm.</c>).</summary>
    public MblmModel Mblm => _mblm;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Builds a freshly initialised encoder (PyTorch default initialisation; seed with <c>torch.manual_seed</c>).</summary>
    public MblmEncoder(MblmEncoderConfig config) : base("MBLMEncoder")
    {
        Config = config.Validate();
        _mblm = new MblmModel(config.Mblm, decoder: false);
        register_module("mblm", _mblm);
    }

    /// <summary>
    /// The reference's default return (<c>HIDDEN_STATE</c>): the last stage's final hidden states <c>(B, L, D_n)</c> of the
    /// masked ids <c>(B, L)</c>, start positions dropped and the patch padding cut off.
    /// </summary>
    public override Tensor forward(Tensor maskedIds) => HiddenStates(maskedIds);

    /// <summary>Hidden states <c>(B, L, D_n)</c>; <c>[:, t]</c> belongs to byte t. Same as <see cref="forward"/>.</summary>
    public Tensor HiddenStates(Tensor maskedIds)
    {
        var (hidden, start) = _mblm.HiddenStates(maskedIds);
        start.Dispose();
        return hidden;
    }

    /// <summary>Logits <c>(B, L, V)</c> (reference <c>LOGITS</c>); <c>[:, t]</c> is the distribution of byte t.</summary>
    public Tensor Logits(Tensor maskedIds) => _mblm.forward(maskedIds);

    /// <summary>The masked-byte loss (reference <c>LOSS</c>); see <see cref="MaskedLoss"/>.</summary>
    public Tensor Loss(Tensor maskedIds, Tensor mask, Tensor labels)
    {
        var (loss, logits) = LossAndLogits(maskedIds, mask, labels);
        logits.Dispose();
        return loss;
    }

    /// <summary>The masked-byte loss and the logits <c>(B, L, V)</c> (reference <c>LOSS_LOGITS</c>).</summary>
    public (Tensor Loss, Tensor Logits) LossAndLogits(Tensor maskedIds, Tensor mask, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var logits = _mblm.forward(maskedIds);
        var loss = MaskedLoss(logits, mask, labels, MaskTokenId);
        return (loss.MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The reference's masked-byte loss: positions where <paramref name="mask"/> (bool, <c>(B, L)</c>) is false get the
    /// target <paramref name="maskTokenId"/>, which is the cross-entropy's ignore index, so
    /// <c>loss = mean over {t : mask[t] ∧ labels[t] ≠ mask_token_id} of −log softmax(logits[t])[labels[t]]</c>. Pad labels are
    /// not ignored (the reference's datasets set mask false on padding). NaN when no position counts, as in the reference.
    /// Unlike the reference, <paramref name="labels"/> is not modified.
    /// </summary>
    public static Tensor MaskedLoss(Tensor logits, Tensor mask, Tensor labels, long maskTokenId)
    {
        using var scope = NewDisposeScope();
        if (logits.dim() != 3) throw new ArgumentException($"logits must have shape (batch, length, vocabulary), got [{string.Join(", ", logits.shape)}]", nameof(logits));
        long batch = logits.size(0), length = logits.size(1), v = logits.size(2);
        if (mask.dtype != ScalarType.Bool) throw new ArgumentException($"mask must be a bool tensor (true = masked byte, counted in the loss), got {mask.dtype}", nameof(mask));
        if (!mask.shape.SequenceEqual(new[] { batch, length }))
            throw new ArgumentException($"mask must have shape [{batch}, {length}] (that of the ids), got [{string.Join(", ", mask.shape)}]", nameof(mask));
        if (!labels.shape.SequenceEqual(mask.shape))
            throw new ArgumentException($"labels must have the shape of the mask [{batch}, {length}], got [{string.Join(", ", labels.shape)}]", nameof(labels));
        if (labels.dtype is not (ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte))
            throw new ArgumentException($"labels must be an integer tensor, got {labels.dtype}", nameof(labels));

        var device = logits.device;
        var m = mask.to(device);
        var targets = labels.to(int64, device).masked_fill(m.logical_not(), maskTokenId);
        // Counted targets must be valid classes (cross_entropy would fail less clearly); one host synchronisation.
        var counted = targets.ne(maskTokenId);
        var bounds = stack(new[] { targets.masked_fill(counted.logical_not(), 0).min(), targets.masked_fill(counted.logical_not(), 0).max() })
            .cpu().data<long>().ToArray();
        if (bounds[0] < 0 || bounds[1] >= v)
            throw new ArgumentOutOfRangeException(nameof(labels), $"labels at masked positions must lie in [0, {v}), found values in [{bounds[0]}, {bounds[1]}]");
        return nn.functional.cross_entropy(logits.reshape(-1, v), targets.reshape(-1), ignore_index: maskTokenId)
            .MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Masks bytes the way the reference's masked datasets do: each position is chosen with probability
    /// <paramref name="probability"/> (<c>rand &lt; p</c>), except <c>pad_token_id</c> positions (the reference pads after
    /// masking, so padding is never masked); chosen positions get <see cref="MaskTokenId"/>. Returns the masked ids and the
    /// bool mask; the labels are <paramref name="ids"/> themselves.
    /// </summary>
    public (Tensor MaskedIds, Tensor Mask) MaskBytes(Tensor ids, double probability, Generator? generator = null)
    {
        if (probability is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(probability), "must be in [0, 1]");
        using var scope = NewDisposeScope();
        var mask = rand(ids.shape, dtype: float32, device: ids.device, generator: generator).lt(probability)
            .logical_and(ids.ne(Config.Mblm.PadTokenId));
        var masked = ids.masked_fill(mask, MaskTokenId);
        return (masked.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope());
    }
}
