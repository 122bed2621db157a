using System.Text;

namespace Mblm.MLNet.Vision;

/// <summary>
/// The visual-question-answering sequence: question, image, question, answer — each framed by a start-of-modality token and
/// an end-of-modality token, as the reference's CLEVR loader, but with the special tokens outside the byte range (the
/// reference's ids 128–131 collide with pixel values): 0–255 bytes, 256 pad, 257 end of modality, 258 start of text,
/// 259 start of image; 260 tokens. The loss is on the answer segment only (its start token, bytes and end token).
/// </summary>
public static class VqaLayout
{
    /// <summary>Padding.</summary>
    public const int Pad = 256;
    /// <summary>End of a modality segment.</summary>
    public const int EndOfModality = 257;
    /// <summary>Start of a text segment.</summary>
    public const int StartOfText = 258;
    /// <summary>Start of an image segment.</summary>
    public const int StartOfImage = 259;
    /// <summary>Vocabulary size of a VQA model.</summary>
    public const int NumTokens = 260;

    /// <summary>The prompt: [SOT] question [EOM] [SOI] image [EOM] [SOT] question [EOM].</summary>
    public static long[] Prompt(byte[] question, byte[] image)
    {
        var ids = new List<long>(question.Length * 2 + image.Length + 6);
        Segment(ids, StartOfText, question);
        Segment(ids, StartOfImage, image);
        Segment(ids, StartOfText, question);
        return ids.ToArray();
    }

    /// <summary>The answer segment: [SOT] answer [EOM].</summary>
    public static long[] Answer(byte[] answer)
    {
        var ids = new List<long>(answer.Length + 2);
        Segment(ids, StartOfText, answer);
        return ids.ToArray();
    }

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

    /// <summary>UTF-8 bytes of a text.</summary>
    public static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    private static void Segment(List<long> ids, int start, byte[] bytes)
    {
        ids.Add(start);
        foreach (var b in bytes) ids.Add(b);
        ids.Add(EndOfModality);
    }
}
