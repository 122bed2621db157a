using Mblm.MLNet.Classification;

namespace Mblm.MLNet.Vision;

/// <summary>
/// The visual-question-answering sequence: question, image, question, answer — each framed by a start-of-modality token and
/// an end-of-modality token, as the reference's CLEVR loader, in the vocabulary all classifiers share
/// (<see cref="TokenLayout"/>: special tokens outside the byte range). The label-likelihood loss is on the answer segment
/// only (its start token, bytes and end token).
/// </summary>
public static class VqaLayout
{
    /// <summary>Padding (<see cref="TokenLayout.Pad"/>).</summary>
    public const int Pad = TokenLayout.Pad;
    /// <summary>End of a modality segment (<see cref="TokenLayout.EndOfModality"/>).</summary>
    public const int EndOfModality = TokenLayout.EndOfModality;
    /// <summary>Start of a text segment (<see cref="TokenLayout.StartOfText"/>).</summary>
    public const int StartOfText = TokenLayout.StartOfText;
    /// <summary>Start of an image segment (<see cref="TokenLayout.StartOfImage"/>).</summary>
    public const int StartOfImage = TokenLayout.StartOfImage;
    /// <summary>Vocabulary size of a VQA model (<see cref="TokenLayout.NumTokens"/>).</summary>
    public const int NumTokens = TokenLayout.NumTokens;

    /// <summary>The prompt: [SOT] question [EOM] [SOI] image [EOM] [SOT] question [EOM].</summary>
    public static long[] Prompt(byte[] question, byte[] image)
    {
        var ids = new List<long>(question.Length * 2 + image.Length + 6);
        TokenLayout.Segment(ids, StartOfText, question);
        TokenLayout.Segment(ids, StartOfImage, image);
        TokenLayout.Segment(ids, StartOfText, question);
        return ids.ToArray();
    }

    /// <summary>The answer segment: [SOT] answer [EOM] (<see cref="TokenLayout.Answer"/>).</summary>
    public static long[] Answer(byte[] answer) => TokenLayout.Answer(answer);

    /// <summary>A training sample: the prompt and the answer segment, with loss weight 1 on the answer segment only.</summary>
    public static (long[] Ids, float[] LossMask) Sample(byte[] question, byte[] image, byte[] answer)
    {
        var prompt = Prompt(question, image);
        var ans = Answer(answer);
        var ids = prompt.Concat(ans).ToArray();
        var mask = new float[ids.Length];
        for (int i = prompt.Length; i < ids.Length; i++) mask[i] = 1;
        return (ids, mask);
    }

    /// <summary>
    /// A pooled-head sample: the prompt (question, image, question) with its 0-based answer class, the next-byte loss
    /// weighted 1 on every prompt position (scaled by the objective's auxiliary weight).
    /// </summary>
    public static Training.ByteSample Pooled(byte[] question, byte[] image, int label)
    {
        var ids = Prompt(question, image);
        var mask = new float[ids.Length];
        Array.Fill(mask, 1f);
        return new Training.ByteSample(ids, mask, label);
    }

    /// <summary>UTF-8 bytes of a text (<see cref="TokenLayout.Utf8"/>).</summary>
    public static byte[] Utf8(string text) => TokenLayout.Utf8(text);
}
