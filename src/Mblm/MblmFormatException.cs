namespace Mblm;

/// <summary>
/// A damaged, hostile or foreign file: a weights file, a checkpoint, a saved pipeline or one of its entries. The message
/// names the file (and the entry or key) and what was expected. Derives from <see cref="IOException"/>, what file-reading
/// code already catches (<see cref="InvalidDataException"/>, the natural parent, is sealed in .NET). Configs that break a rule throw <see cref="Mblm.Config.ConfigException"/>
/// instead; bad arguments throw the <see cref="ArgumentException"/> family.
/// </summary>
public class MblmFormatException : IOException
{
    /// <summary>The file (path, or a name for streams) the problem was found in.</summary>
    public string FileName { get; }

    /// <summary>The entry, tensor or key inside the file, when the problem is local to one.</summary>
    public string? Entry { get; }

    /// <summary>Creates the exception: <c>'source'[, entry 'e']: problem</c>.</summary>
    public MblmFormatException(string source, string? entry, string problem, Exception? inner = null)
        : base($"'{source}'{(entry is null ? "" : $", entry '{entry}'")}: {problem}", inner) => (FileName, Entry) = (source, entry);
}
