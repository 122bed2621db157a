using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mblm.Pretraining;

/// <summary>
/// A kind of file in a pretraining corpus: where such files are, which ones count, and the kind's sampling weight
/// (the share of training windows drawn from it, relative to the other kinds' weights).
/// </summary>
/// <param name="Name">Short name, e.g. <c>gettext</c>; letters, digits, '-' and '_'.</param>
/// <param name="Weight">Sampling weight (positive).</param>
/// <param name="Roots">Folders searched (recursively, symbolic links not followed).</param>
/// <param name="Accept">Whether a file (full path) is of this kind.</param>
public sealed record CorpusKind(string Name, double Weight, IReadOnlyList<string> Roots, Func<string, bool> Accept)
{
    /// <summary>How the files are stored: <see cref="CorpusEncoding.Raw"/> (the default) or gzip, which is then decoded (the corpus holds the decoded bytes).</summary>
    public CorpusEncoding Encoding { get; init; }
    /// <summary>Optional check of a file's (decoded) content, after <see cref="Accept"/> took its path (e.g. a script's first line).</summary>
    public Func<byte[], bool>? AcceptContent { get; init; }

    /// <summary>
    /// Kinds found on a Debian-like system: gettext catalogs in many languages, man pages in many languages (decoded from
    /// the gzip they are installed as), package documentation, C headers, Python, Perl and shell sources (scripts found by
    /// their first line), configuration files, ELF shared objects, .NET assemblies and PNG images.
    /// </summary>
    public static IReadOnlyList<CorpusKind> Installed { get; } =
    [
        new("gettext", 1.0, ["/usr/share/locale"], p => p.EndsWith(".mo", StringComparison.Ordinal)),
        new("man", 1.0, ["/usr/share/man"], p => p.EndsWith(".gz", StringComparison.Ordinal)) { Encoding = CorpusEncoding.Gzip },
        new("docs", 1.0, ["/usr/share/doc"], p => !p.EndsWith(".gz", StringComparison.Ordinal) && System.IO.Path.GetFileName(p) is var n
            && (n == "copyright" || n.StartsWith("README", StringComparison.Ordinal) || n.EndsWith(".md", StringComparison.Ordinal) || n.EndsWith(".txt", StringComparison.Ordinal))),
        new("c-header", 1.0, ["/usr/include"], p => p.EndsWith(".h", StringComparison.Ordinal)),
        new("python", 1.0, ["/usr/lib/python3"], p => p.EndsWith(".py", StringComparison.Ordinal)),
        new("perl", 0.5, ["/usr/share/perl", "/usr/share/perl5"], p => p.EndsWith(".pm", StringComparison.Ordinal)),
        new("shell", 0.5, ["/usr/bin", "/usr/sbin", "/etc", "/usr/share", "/usr/lib"],
            p => System.IO.Path.GetFileName(p) is var n && (n.EndsWith(".sh", StringComparison.Ordinal) || !n.Contains('.', StringComparison.Ordinal)))
        {
            AcceptContent = c => IsShellScript(c),
        },
        new("config", 0.5, ["/etc"], p => p.EndsWith(".conf", StringComparison.Ordinal)),
        new("elf", 0.5, ["/usr/lib/x86_64-linux-gnu"], p => p.Contains(".so", StringComparison.Ordinal)),
        new("dotnet", 0.5, ["/usr/share/dotnet/shared"], p => p.EndsWith(".dll", StringComparison.Ordinal)),
        new("png", 0.25, ["/usr/share"], p => p.EndsWith(".png", StringComparison.Ordinal)),
    ];

    /// <summary>Whether content starts with a POSIX shell or bash interpreter line.</summary>
    internal static bool IsShellScript(ReadOnlySpan<byte> content)
    {
        ReadOnlySpan<byte> line = content[..Math.Min(content.Length, 64)];
        int end = line.IndexOf((byte)'\n');
        if (end >= 0) line = line[..end];
        if (!line.StartsWith("#!"u8)) return false;
        string first = System.Text.Encoding.ASCII.GetString(line[2..]).Trim();
        return first is "/bin/sh" or "/bin/bash" or "/usr/bin/sh" or "/usr/bin/bash" or "/usr/bin/env sh" or "/usr/bin/env bash"
            || first.StartsWith("/bin/sh ", StringComparison.Ordinal) || first.StartsWith("/bin/bash ", StringComparison.Ordinal);
    }
}

/// <summary>How a corpus file is stored on disk.</summary>
public enum CorpusEncoding
{
    /// <summary>As is.</summary>
    Raw,
    /// <summary>gzip; the corpus holds (and sizes and hashes) the decoded bytes.</summary>
    Gzip,
}

/// <summary>How a corpus is gathered.</summary>
public sealed record CorpusOptions
{
    /// <summary>Percent of each kind's files held out for evaluation (chosen by a stable hash of the path: a file is wholly in one split).</summary>
    public int HeldOutPercent { get; init; } = 5;
    /// <summary>Bytes gathered per kind at most (files are taken in path order until the next would pass it).</summary>
    public long MaxBytesPerKind { get; init; } = 16L << 20;
    /// <summary>Largest file taken; larger ones are skipped.</summary>
    public long MaxFileBytes { get; init; } = 1L << 20;
    /// <summary>Deepest folder level searched below a root.</summary>
    public int MaxDepth { get; init; } = 12;
    /// <summary>Files looked at per kind at most (bounds the walk on large systems).</summary>
    public int MaxFilesScanned { get; init; } = 200_000;

    internal void Check()
    {
        if (HeldOutPercent is < 0 or > 50) throw new ArgumentOutOfRangeException(nameof(HeldOutPercent), $"CorpusOptions.HeldOutPercent must be in 0..50 (got {HeldOutPercent})");
        if (MaxBytesPerKind < 1) throw new ArgumentOutOfRangeException(nameof(MaxBytesPerKind), "CorpusOptions.MaxBytesPerKind must be positive");
        if (MaxFileBytes < 1) throw new ArgumentOutOfRangeException(nameof(MaxFileBytes), "CorpusOptions.MaxFileBytes must be positive");
        if (MaxDepth is < 0 or > 64) throw new ArgumentOutOfRangeException(nameof(MaxDepth), "CorpusOptions.MaxDepth must be in 0..64");
        if (MaxFilesScanned < 1) throw new ArgumentOutOfRangeException(nameof(MaxFilesScanned), "CorpusOptions.MaxFilesScanned must be positive");
    }
}

/// <summary>One file of a corpus.</summary>
/// <param name="Path">Full path.</param>
/// <param name="Size">Bytes.</param>
/// <param name="Sha256">SHA-256 of the content, lower-case hex.</param>
/// <param name="Kind">Its <see cref="CorpusKind.Name"/>.</param>
/// <param name="HeldOut">Whether it is in the held-out split.</param>
/// <param name="Encoding">How it is stored; <see cref="Size"/> and <see cref="Sha256"/> are of the decoded bytes.</param>
public sealed record CorpusFile(string Path, long Size, string Sha256, string Kind, bool HeldOut, CorpusEncoding Encoding = CorpusEncoding.Raw)
{
    /// <summary>
    /// The file's bytes (decoded), checked against <see cref="Size"/> (and <see cref="Sha256"/> when <paramref name="verify"/>);
    /// a file that changed since the manifest was written is an <see cref="MblmFormatException"/> naming it.
    /// </summary>
    public byte[] ReadContent(bool verify)
    {
        byte[] stored = File.ReadAllBytes(Path);
        byte[] content = Encoding == CorpusEncoding.Gzip
            ? CorpusManifest.Gunzip(stored, Size) ?? throw new MblmFormatException(Path, null, $"does not decode to the {Size:N0} bytes the corpus manifest says")
            : stored;
        if (content.Length != Size) throw new MblmFormatException(Path, null, $"is {content.Length:N0} bytes now, {Size:N0} in the corpus manifest");
        if (verify && Convert.ToHexStringLower(SHA256.HashData(content)) != Sha256)
            throw new MblmFormatException(Path, null, "has changed since the corpus manifest was written (SHA-256 differs)");
        return content;
    }
}

/// <summary>
/// The files of a pretraining corpus: path, size, SHA-256, kind and split of each, deduplicated by content (a file whose
/// bytes were already taken, under any kind, is left out), with each kind's sampling weight. Saved as JSON
/// (<c>corpus.json</c>), so a run can say exactly what it trained on, and checked when it is read back.
/// </summary>
public sealed class CorpusManifest
{
    /// <summary>Largest manifest file read.</summary>
    public const long MaxFileSize = 256L << 20;

    internal CorpusManifest(IReadOnlyList<CorpusFile> files, IReadOnlyDictionary<string, double> weights, int duplicates)
    {
        Files = files;
        Weights = weights;
        DuplicatesSkipped = duplicates;
    }

    /// <summary>The files, kind by kind in the order the kinds were given, each kind's in path order.</summary>
    public IReadOnlyList<CorpusFile> Files { get; }
    /// <summary>Sampling weight per kind.</summary>
    public IReadOnlyDictionary<string, double> Weights { get; }
    /// <summary>Files left out because their content was already in the corpus.</summary>
    public int DuplicatesSkipped { get; }

    /// <summary>Gathers the files of <paramref name="kinds"/> (see <see cref="CorpusKind.Installed"/>).</summary>
    public static CorpusManifest Build(IReadOnlyList<CorpusKind> kinds, CorpusOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(kinds);
        options ??= new CorpusOptions();
        options.Check();
        foreach (var k in kinds)
        {
            if (string.IsNullOrEmpty(k.Name) || !k.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
                throw new ArgumentException($"corpus kind name '{k.Name}' must be letters, digits, '-' or '_'", nameof(kinds));
            if (!(k.Weight > 0) || !double.IsFinite(k.Weight)) throw new ArgumentException($"corpus kind '{k.Name}': weight must be positive (got {k.Weight})", nameof(kinds));
        }
        if (kinds.Select(k => k.Name).Distinct().Count() != kinds.Count) throw new ArgumentException("corpus kind names must differ", nameof(kinds));

        var seen = new HashSet<string>(StringComparer.Ordinal);
        var files = new List<CorpusFile>();
        int duplicates = 0;
        foreach (var kind in kinds)
        {
            long bytes = 0;
            int scanned = 0;
            var found = kind.Roots.Where(Directory.Exists).SelectMany(r => Walk(r, options.MaxDepth).Select(p => (Root: r, Path: p)))
                .DistinctBy(f => f.Path, StringComparer.Ordinal).OrderBy(f => f.Path, StringComparer.Ordinal);
            foreach (var (root, path) in found)
            {
                if (++scanned > options.MaxFilesScanned) break;
                if (!kind.Accept(path)) continue;
                FileInfo info;
                try { info = new FileInfo(path); if (info.Length == 0 || info.Length > options.MaxFileBytes) continue; }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
                if (bytes + info.Length > options.MaxBytesPerKind) continue;
                byte[]? content;
                try { content = File.ReadAllBytes(path); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
                if (kind.Encoding == CorpusEncoding.Gzip) content = Gunzip(content, options.MaxFileBytes);
                if (content is null) continue;
                if (content.Length == 0 || bytes + content.Length > options.MaxBytesPerKind) continue;
                if (kind.AcceptContent is { } acceptContent && !acceptContent(content)) continue;
                string sha = Convert.ToHexStringLower(SHA256.HashData(content));
                if (!seen.Add(sha)) { duplicates++; continue; }
                bytes += content.Length;
                files.Add(new CorpusFile(path, content.Length, sha, kind.Name, IsHeldOut(Path.GetRelativePath(root, path).Replace('\\', '/'), options.HeldOutPercent), kind.Encoding));
            }
        }
        return new CorpusManifest(files, kinds.ToDictionary(k => k.Name, k => k.Weight), duplicates);
    }

    /// <summary>The decoded bytes of gzip data, or null when it is not valid gzip or decodes to more than <paramref name="maxBytes"/>.</summary>
    internal static byte[]? Gunzip(byte[] data, long maxBytes)
    {
        try
        {
            using var gzip = new System.IO.Compression.GZipStream(new MemoryStream(data), System.IO.Compression.CompressionMode.Decompress);
            using var output = new MemoryStream();
            var buffer = new byte[81920];
            int n;
            while ((n = gzip.Read(buffer)) > 0)
            {
                if (output.Length + n > maxBytes) return null;
                output.Write(buffer, 0, n);
            }
            return output.ToArray();
        }
        catch (InvalidDataException) { return null; }
    }

    /// <summary>Files below <paramref name="root"/>, depth-first, not following symbolic links, unreadable folders skipped.</summary>
    private static IEnumerable<string> Walk(string root, int maxDepth)
    {
        var stack = new Stack<(string Dir, int Depth)>();
        stack.Push((root, 0));
        while (stack.Count > 0)
        {
            var (dir, depth) = stack.Pop();
            string[] entries;
            try { entries = Directory.GetFileSystemEntries(dir); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            foreach (string entry in entries)
            {
                FileAttributes attributes;
                try { attributes = File.GetAttributes(entry); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
                if ((attributes & FileAttributes.ReparsePoint) != 0) continue;
                if ((attributes & FileAttributes.Directory) != 0) { if (depth < maxDepth) stack.Push((entry, depth + 1)); }
                else yield return entry;
            }
        }
    }

    /// <summary>
    /// Whether a file is held out: FNV-1a of its path relative to the kind's root where it was found, so the split is the
    /// same wherever the corpus lies and on every machine (unlike string.GetHashCode).
    /// </summary>
    internal static bool IsHeldOut(string path, int percent)
    {
        uint h = 2166136261;
        foreach (byte b in Encoding.UTF8.GetBytes(path)) h = (h ^ b) * 16777619;
        return h % 100 < (uint)percent;
    }

    /// <summary>Bytes, files and held-out files per kind, one line each.</summary>
    public string Summary() => string.Join(Environment.NewLine, Weights.Keys.Select(k =>
    {
        var of = Files.Where(f => f.Kind == k).ToList();
        return string.Create(CultureInfo.InvariantCulture,
            $"{k}: {of.Count} files, {of.Sum(f => f.Size):N0} bytes, {of.Count(f => f.HeldOut)} held out, weight {Weights[k]}");
    }));

    /// <summary>Writes the manifest as JSON, atomically (a failed write leaves the previous file).</summary>
    public void Save(string path)
    {
        var json = new JsonObject
        {
            ["format"] = 1,
            ["weights"] = new JsonObject(Weights.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["duplicates_skipped"] = DuplicatesSkipped,
            ["files"] = new JsonArray(Files.Select(f => (JsonNode)new JsonObject
            {
                ["path"] = f.Path, ["size"] = f.Size, ["sha256"] = f.Sha256, ["kind"] = f.Kind, ["held_out"] = f.HeldOut,
                ["encoding"] = f.Encoding == CorpusEncoding.Gzip ? "gzip" : null,
            }).ToArray()),
        };
        AtomicFile.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// Reads a manifest written by <see cref="Save"/>; every file, key and value is checked (sizes, hashes, kinds with a
    /// weight), and any problem is an <see cref="MblmFormatException"/> naming the file and what is wrong.
    /// </summary>
    public static CorpusManifest Load(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"corpus manifest '{path}' does not exist", path);
        if (info.Length > MaxFileSize) throw new MblmFormatException(path, null, $"is {info.Length:N0} bytes, more than the {MaxFileSize:N0} a corpus manifest may have");
        try
        {
            byte[] bytes = File.ReadAllBytes(path);
            if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new FormatException("not valid UTF-8 text");
            var root = JsonNode.Parse(bytes, documentOptions: new JsonDocumentOptions { MaxDepth = Limits.MaxNestingDepth })?.AsObject()
                       ?? throw new FormatException("not a JSON object");
            if ((int?)root["format"] != 1) throw new FormatException($"format {root["format"]?.ToJsonString() ?? "(absent)"} is not 1");
            var weights = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var (kind, value) in root["weights"]!.AsObject())
            {
                double w = value!.GetValue<double>();
                if (!(w > 0) || !double.IsFinite(w)) throw new FormatException($"weight of '{kind}' must be positive (got {w})");
                weights[kind] = w;
            }
            var files = new List<CorpusFile>();
            foreach (var node in root["files"]!.AsArray())
            {
                var o = node!.AsObject();
                var encoding = o["encoding"]?.GetValue<string>() switch
                {
                    null => CorpusEncoding.Raw,
                    "gzip" => CorpusEncoding.Gzip,
                    var other => throw new FormatException($"file {files.Count}: encoding '{other}' is not gzip (or absent)"),
                };
                var f = new CorpusFile(o["path"]!.GetValue<string>(), o["size"]!.GetValue<long>(), o["sha256"]!.GetValue<string>(),
                    o["kind"]!.GetValue<string>(), o["held_out"]!.GetValue<bool>(), encoding);
                if (f.Size <= 0) throw new FormatException($"file {files.Count}: size must be positive (got {f.Size})");
                if (f.Sha256.Length != 64 || !f.Sha256.All(char.IsAsciiHexDigitLower)) throw new FormatException($"file {files.Count}: sha256 must be 64 lower-case hex digits");
                if (!weights.ContainsKey(f.Kind)) throw new FormatException($"file {files.Count}: kind '{f.Kind}' has no weight");
                files.Add(f);
            }
            return new CorpusManifest(files, weights, root["duplicates_skipped"]?.GetValue<int>() ?? 0);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or NullReferenceException or KeyNotFoundException)
        {
            throw new MblmFormatException(path, null, $"not a valid corpus manifest: {e.Message}", e);
        }
    }
}
