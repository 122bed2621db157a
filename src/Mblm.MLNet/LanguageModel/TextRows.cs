using System.Text;

namespace Mblm.MLNet.LanguageModel;

/// <summary>Cuts a long text into rows for a language model.</summary>
public static class TextRows
{
    /// <summary>
    /// Rows of whole lines (line ends kept, <c>\r\n</c> read as <c>\n</c>), each at most <paramref name="maxBytes"/> UTF-8
    /// bytes; a single longer line becomes a row of its own (the model scores it in windows). Blank rows are dropped.
    /// </summary>
    public static List<string> Split(string text, int maxBytes)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (maxBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxBytes), maxBytes, "must be positive");
        var rows = new List<string>();
        var current = new StringBuilder();
        int bytes = 0;
        foreach (var line in text.Replace("\r\n", "\n").Split('\n'))
        {
            string piece = line + "\n";
            int n = Encoding.UTF8.GetByteCount(piece);
            if (bytes + n > maxBytes && current.Length > 0)
            {
                rows.Add(current.ToString());
                current.Clear();
                bytes = 0;
            }
            current.Append(piece);
            bytes += n;
        }
        if (current.Length > 0) rows.Add(current.ToString());
        return rows.Where(r => r.Trim().Length > 0).ToList();
    }
}
