using System.Text;

namespace Mblm.MLNet.Classification;

/// <summary>
/// The vocabulary every MBLM classifier shares (text, byte vectors and visual question answering): 0–255 bytes, then
/// 256 pad, 257 end of a modality segment, 258 start of a text segment, 259 start of an image segment; 260 tokens. The
/// special tokens lie outside the byte range (the reference's CLEVR ids 128–131 collide with pixel values), so a model
/// trained for one task can be trained further for another. A segment is its start token, its bytes, then
/// <see cref="EndOfModality"/>.
/// </summary>
public static class TokenLayout
{
    /// <summary>Padding.</summary>
    public const int Pad = 256;
    /// <summary>End of a modality segment.</summary>
    public const int EndOfModality = 257;
    /// <summary>Start of a text segment.</summary>
    public const int StartOfText = 258;
    /// <summary>Start of an image segment.</summary>
    public const int StartOfImage = 259;
    /// <summary>Vocabulary size of a classifier's model.</summary>
    public const int NumTokens = 260;

    /// <summary>A label (a class name or an answer) as a text segment: [SOT] label [EOM].</summary>
    public static long[] Answer(byte[] answer)
    {
        var ids = new List<long>(answer.Length + 2);
        Segment(ids, StartOfText, answer);
        return ids.ToArray();
    }

    /// <summary>UTF-8 bytes of a text.</summary>
    public static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    /// <summary>Appends a segment: <paramref name="start"/>, the bytes, [EOM].</summary>
    internal static void Segment(List<long> ids, int start, byte[] bytes)
    {
        ids.Add(start);
        foreach (var b in bytes) ids.Add(b);
        ids.Add(EndOfModality);
    }
}
