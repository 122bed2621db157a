using System.Text;
using System.Text.RegularExpressions;

namespace TextClassification;

/// <summary>A labelled row; <see cref="Source"/> is the file it came from (train and test never share a file).</summary>
internal sealed record Row(string Text, string Class, string Source);

/// <summary>A task: how it was built, its training and held-out rows.</summary>
internal sealed record TaskData(string Name, string How, Row[] Train, Row[] Test)
{
    /// <summary>The same rows cut to at most <paramref name="maxBytes"/> UTF-8 bytes (at a character boundary).</summary>
    public TaskData Short(int maxBytes) => new($"{Name}, ≤{maxBytes} B", $"the rows above cut to their first ≤ {maxBytes} bytes",
        Train.Select(r => r with { Text = Cut(r.Text, maxBytes) }).ToArray(), Test.Select(r => r with { Text = Cut(r.Text, maxBytes) }).ToArray());

    public static string Cut(string text, int maxBytes)
    {
        if (Encoding.UTF8.GetByteCount(text) <= maxBytes) return text;
        int bytes = 0, i = 0;
        while (i < text.Length)
        {
            int step = char.IsSurrogatePair(text, i) ? 2 : 1;
            int n = Encoding.UTF8.GetByteCount(text.AsSpan(i, step));
            if (bytes + n > maxBytes) break;
            bytes += n;
            i += step;
        }
        return text[..i];
    }

    public string Summary()
    {
        var classes = Train.Select(r => r.Class).Distinct().Count();
        double mean(Row[] rows) => rows.Average(r => Encoding.UTF8.GetByteCount(r.Text));
        return $"{Name}: {classes} classes, {Train.Length} training rows from {Train.Select(r => r.Source).Distinct().Count()} files, " +
               $"{Test.Length} held-out rows from {Test.Select(r => r.Source).Distinct().Count()} other files; mean {mean(Train):F0} bytes a row";
    }
}

/// <summary>Builds the tasks from files that installed Debian packages ship; nothing is generated or stored.</summary>
internal static class Datasets
{
    private const int MaxFileBytes = 1 << 20, ReadBytes = 64 << 10, MaxDepth = 12, MaxFilesPerClass = 4000;

    /// <summary>Stable across runs and processes (FNV-1a), unlike string.GetHashCode.</summary>
    private static uint Hash(string s, int seed)
    {
        uint h = 2166136261 ^ (uint)seed;
        foreach (byte b in Encoding.UTF8.GetBytes(s)) h = (h ^ b) * 16777619;
        return h;
    }

    private static bool IsTestFile(string key, int seed) => Hash(key, seed) % 4 == 0;

    // Takes up to perClass rows of each class from its pool (seeded shuffle), train and test from disjoint files.
    private static (Row[] Train, Row[] Test) Draw(Dictionary<string, List<Row>> pools, Func<Row, string> splitKey, int trainPerClass, int testPerClass, int seed)
    {
        var rng = new Random(seed);
        var train = new List<Row>();
        var test = new List<Row>();
        foreach (var (label, pool) in pools.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var shuffled = pool.ToArray();
            rng.Shuffle(shuffled);
            var tr = shuffled.Where(r => !IsTestFile(splitKey(r), seed)).Take(trainPerClass).ToList();
            var te = shuffled.Where(r => IsTestFile(splitKey(r), seed)).Take(testPerClass).ToList();
            if (tr.Count < trainPerClass / 2 || te.Count < testPerClass / 2)
                Console.WriteLine($"  note: class '{label}' has only {tr.Count} training and {te.Count} test rows here");
            train.AddRange(tr);
            test.AddRange(te);
        }
        var a = train.ToArray();
        var b = test.ToArray();
        rng.Shuffle(a);
        rng.Shuffle(b);
        return (a, b);
    }

    private static readonly Regex Spaces = new(@"\s+", RegexOptions.Compiled);

    /// <summary>
    /// Language identification: translated messages (msgstr) of the gettext catalogs under
    /// /usr/share/locale/LANG/LC_MESSAGES/*.mo, 20–200 bytes, different from their English msgid, whitespace collapsed, unique
    /// per language. A catalog's domain (its file name, e.g. coreutils.mo) is either training or test for every language.
    /// </summary>
    public static TaskData Languages(string[] languages, int trainRows, int testRows, int seed)
    {
        var pools = new Dictionary<string, List<Row>>();
        foreach (var lang in languages)
        {
            var dir = Path.Combine("/usr/share/locale", lang, "LC_MESSAGES");
            var seen = new HashSet<string>();
            var pool = new List<Row>();
            if (Directory.Exists(dir))
                foreach (var file in Directory.EnumerateFiles(dir, "*.mo").Order(StringComparer.Ordinal).Take(MaxFilesPerClass))
                    foreach (var (id, translation) in MoCatalog.Read(file))
                    {
                        string text = Spaces.Replace(translation, " ").Trim();
                        int bytes = Encoding.UTF8.GetByteCount(text);
                        if (bytes < 20 || bytes > 200 || text == Spaces.Replace(id, " ").Trim() || text.Count(char.IsLetter) < 8 || !seen.Add(text)) continue;
                        pool.Add(new Row(text, lang, file));
                    }
            pools[lang] = pool;
        }
        var (train, test) = Draw(pools, r => Path.GetFileName(r.Source), trainRows / languages.Length, testRows / languages.Length, seed);
        return new TaskData("language of a message", $"gettext catalogs /usr/share/locale/{{{string.Join(",", languages)}}}/LC_MESSAGES/*.mo " +
            $"({pools.Sum(p => p.Value.Count):N0} messages of 20-200 bytes; split by catalog domain)", train, test);
    }

    /// <summary>The code task's classes: where their files are and how they are recognised.</summary>
    private static readonly (string Class, string[] Roots, Func<string, bool> Name, Func<string, bool>? Content)[] CodeClasses =
    [
        ("c-header", ["/usr/include"], p => p.EndsWith(".h", StringComparison.Ordinal), null),
        ("python", ["/usr/lib/python3", "/usr/lib/python3.11"], p => p.EndsWith(".py", StringComparison.Ordinal), null),
        ("perl", ["/usr/share/perl", "/usr/share/perl5"], p => p.EndsWith(".pm", StringComparison.Ordinal), null),
        ("shell", ["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/share", "/etc"],
            p => p.EndsWith(".sh", StringComparison.Ordinal) || Path.GetDirectoryName(p) is "/usr/bin" or "/usr/sbin" or "/etc/init.d",
            t => Regex.IsMatch(t, @"\A#! ?/(usr/)?bin/(env )?(ba|da)?sh\b")),
        ("config", ["/etc", "/usr/share", "/usr/lib"], p => p.EndsWith(".conf", StringComparison.Ordinal), t => !t.TrimStart().StartsWith('<')),
        ("cmake", ["/usr/share/cmake-3.25", "/usr/lib/x86_64-linux-gnu/cmake"], p => p.EndsWith(".cmake", StringComparison.Ordinal) || p.EndsWith("CMakeLists.txt", StringComparison.Ordinal), null),
    ];

    /// <summary>
    /// The language of a source or configuration snippet: C headers, Python, Perl modules, shell scripts (by their #! line),
    /// .conf files (not XML) and CMake modules, as installed; a snippet is 1–8 consecutive non-blank lines from a random
    /// line of a file (40–200 bytes), at most 12 per file. Files are split into training and test.
    /// </summary>
    public static TaskData Code(int trainRows, int testRows, int seed)
    {
        var pools = new Dictionary<string, List<Row>>();
        var files = new Dictionary<string, int>();
        foreach (var (label, roots, name, content) in CodeClasses)
        {
            var rng = new Random((int)Hash(label, seed));
            var pool = new List<Row>();
            int used = 0;
            foreach (var file in roots.Where(Directory.Exists).SelectMany(r => Walk(r, name)).Distinct().Order(StringComparer.Ordinal))
            {
                if (used >= MaxFilesPerClass) break;
                string? text = ReadText(file);
                if (text is null || (content is not null && !content(text))) continue;
                // A shell script named *.sh counts as shell only with its #! line; a .conf file is config only as text.
                var lines = text.Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
                int taken = 0;
                for (int attempt = 0; attempt < 24 && taken < 12; attempt++)
                {
                    int start = rng.Next(lines.Length);
                    var snippet = new StringBuilder();
                    for (int i = start; i < lines.Length && snippet.Length < 200; i++)
                    {
                        if (lines[i].Trim().Length == 0) { if (snippet.Length > 0) break; continue; }
                        if (Encoding.UTF8.GetByteCount(snippet + lines[i]) > 200) break;
                        snippet.Append(lines[i]).Append('\n');
                    }
                    string s = snippet.ToString();
                    if (Encoding.UTF8.GetByteCount(s) < 40) continue;
                    pool.Add(new Row(s, label, file));
                    taken++;
                }
                if (taken > 0) used++;
            }
            pools[label] = pool.DistinctBy(r => r.Text).ToList();
            files[label] = used;
        }
        var (train, test) = Draw(pools, r => r.Source, trainRows / CodeClasses.Length, testRows / CodeClasses.Length, seed);
        return new TaskData("language of a code/config snippet", "installed files: " +
            string.Join(", ", CodeClasses.Select(c => $"{c.Class} ({files[c.Class]} files under {string.Join(" ", c.Roots.Where(Directory.Exists))})")) +
            "; snippets of 1-8 lines, 40-200 bytes; split by file", train, test);
    }

    // Regular files under root (no links followed), depth-bounded, whose path passes the name filter.
    private static IEnumerable<string> Walk(string root, Func<string, bool> name)
    {
        var options = new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = MaxDepth, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.ReparsePoint };
        return Directory.EnumerateFiles(root, "*", options).Where(name);
    }

    // The first ReadBytes of a regular file of at most MaxFileBytes, as UTF-8 text; null for binaries and other encodings.
    private static string? ReadText(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is not null || info.Length > MaxFileBytes || info.Length == 0) return null;
            using var stream = File.OpenRead(path);
            var buffer = new byte[Math.Min(ReadBytes, info.Length)];
            int read = stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
            var span = buffer.AsSpan(0, read);
            if (span.Contains((byte)0)) return null;
            // A read cut in the middle of a character: drop the partial character.
            int end = read;
            while (end > 0 && end > read - 4 && (buffer[end - 1] & 0xC0) == 0x80) end--;
            if (end > 0 && buffer[end - 1] >= 0xC0) end--;
            if (read < buffer.Length || read == info.Length) end = read;
            return new UTF8Encoding(false, true).GetString(buffer, 0, end);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DecoderFallbackException) { return null; }
    }
}
