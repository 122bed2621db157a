
namespace Mblm.MLNet.Text;

/// <summary>
/// The text classifier's sequence: [SOT] text bytes [EOM], then the class as a text segment [SOT] label [EOM] — the answer
/// classifier's vocabulary and special tokens (<see cref="Classification.TokenLayout"/>: 0–255 bytes, 256 pad, 257 end of modality, 258
/// start of text), so a model of one can be trained further as the other. The loss is on the class segment only. With
/// alignment, pad tokens follow the text's [EOM] up to the next patch boundary (a multiple of the config's
/// <c>PatchSize</c>), so the class segment starts a patch of its own: its first token is predicted from the global stage's
/// summary of every patch of the text, not by the local stage from the few bytes that share its patch.
/// </summary>
internal static class TextClassifierLayout
{
    /// <summary>The prompt: [SOT] text [EOM], then pad up to a multiple of <paramref name="align"/> tokens (1: none).</summary>
    public static long[] Prompt(byte[] text, long align)
    {
        var ids = new long[PromptLength(text.Length, align)];
        Array.Fill(ids, TokenLayout.Pad);
        ids[0] = TokenLayout.StartOfText;
        for (int i = 0; i < text.Length; i++) ids[i + 1] = text[i];
        ids[text.Length + 1] = TokenLayout.EndOfModality;
        return ids;
    }

    /// <summary>Tokens a text of <paramref name="bytes"/> bytes takes as a prompt.</summary>
    public static long PromptLength(long bytes, long align) => (bytes + 2 + align - 1) / align * align;

    /// <summary>
    /// A pooled-head sample: the text's bytes (an empty text is one [EOM] token) with loss weight 1 on each (the auxiliary
    /// next-byte term), and its 0-based class.
    /// </summary>
    public static Training.ByteSample Pooled(byte[] text, int label)
    {
        var ids = PooledIds(text);
        var mask = new float[ids.Length];
        Array.Fill(mask, text.Length == 0 ? 0f : 1f);
        return new Training.ByteSample(ids, mask, label);
    }

    /// <summary>The tokens the pooled head reads for a text: its bytes, or one [EOM] token for an empty text.</summary>
    public static long[] PooledIds(byte[] text)
    {
        if (text.Length == 0) return [TokenLayout.EndOfModality];
        var ids = new long[text.Length];
        for (int i = 0; i < text.Length; i++) ids[i] = text[i];
        return ids;
    }

    /// <summary>
    /// A training sample: the prompt and the class segment, with loss weight 1 on the class segment and
    /// <paramref name="textWeight"/> on the text's bytes and its [EOM] (0: the class only).
    /// </summary>
    public static Training.ByteSample Sample(byte[] text, long[] classSegment, long align, float textWeight)
    {
        var prompt = Prompt(text, align);
        var ids = new long[prompt.Length + classSegment.Length];
        prompt.CopyTo(ids, 0);
        classSegment.CopyTo(ids, prompt.Length);
        var mask = new float[ids.Length];
        Array.Fill(mask, 1f, prompt.Length, classSegment.Length);
        if (textWeight > 0) Array.Fill(mask, textWeight, 1, text.Length + 1);
        return new Training.ByteSample(ids, mask);
    }
}
