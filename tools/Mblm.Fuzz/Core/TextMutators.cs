using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mblm.Fuzz.Core;

/// <summary>
/// Structured JSON mutations on a parsed document, written back by a writer of our own so that the result may hold what a
/// JSON library refuses to write: duplicate keys, numbers beyond every type's range, NaN, raw YAML (configs are read as
/// YAML), nesting thousands of levels deep.
/// </summary>
internal static class JsonMutator
{
    private sealed class Plan
    {
        public readonly Dictionary<string, string> Replace = new();
        public readonly HashSet<string> Delete = new();
        public readonly Dictionary<string, string> Rename = new();
        public readonly Dictionary<string, List<string>> ExtraMembers = new();   // object path → raw "key": value texts
        public readonly Dictionary<string, List<string>> ExtraElements = new();  // array path → raw values
    }

    private sealed record Position(string Path, JsonNode? Node, string? Key, string ParentPath, bool InArray);

    /// <summary>
    /// Mutates the JSON text <paramref name="json"/>; <paramref name="values"/> may propose format-specific values
    /// (dtype names, YAML-only syntax, …) for a position, or null to use the generic ones.
    /// </summary>
    /// <remarks><paramref name="prefer"/> marks positions (by path) that half of the mutations aim at.</remarks>
    public static byte[] Mutate(string json, FuzzRng rng, MutationLog log, string what, Func<FuzzRng, string, string?>? values = null,
        Func<string, bool>? prefer = null)
    {
        var root = JsonNode.Parse(json)!;
        var positions = new List<Position>();
        Walk(root, "", "", null, false, positions);
        var plan = new Plan();
        int ops = rng.Chance(0.8) ? 1 : 2 + rng.Int(2);
        for (int op = 0; op < ops; op++) Apply(root, positions, plan, rng, log, what, values, prefer);
        var sb = new StringBuilder(json.Length + 64);
        if (plan.Replace.TryGetValue("", out var rootRaw)) sb.Append(rootRaw);
        else Render(root, "", plan, sb);
        var bytes = Encoding.UTF8.GetBytes(sb.ToString());
        if (rng.Chance(0.07)) bytes = TextLevel(bytes, rng, log, what);
        return bytes;
    }

    private static void Walk(JsonNode? node, string path, string parent, string? key, bool inArray, List<Position> into)
    {
        if (path.Length > 0) into.Add(new Position(path, node, key, parent, inArray));
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o) Walk(v, path + "/" + Escape(k), path, k, false, into);
                break;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++) Walk(a[i], path + "/" + i, path, null, true, into);
                break;
        }
    }

    private static string Escape(string key) => key.Replace("~", "~0").Replace("/", "~1");

    private static string Describe(Position p, string what) => $"{what} {(p.Path.Length == 0 ? "(root)" : p.Path)}";

    private static string Quote(string s) => JsonSerializer.Serialize(s);

    private static void Apply(JsonNode root, List<Position> positions, Plan plan, FuzzRng rng, MutationLog log, string what,
        Func<FuzzRng, string, string?>? values, Func<string, bool>? prefer)
    {
        if (positions.Count == 0 || rng.Chance(0.02))
        {
            string raw = rng.Pick(new[] { "", " ", "null", "[]", "\"text\"", "257", Interesting.Nested(rng.Pick(new[] { 65, 100_000 }), rng.Chance(0.5)) });
            plan.Replace[""] = raw;
            log.Add($"{what}: whole document replaced by {Short(raw)}");
            return;
        }
        var leaves = positions.Where(p => p.Node is JsonValue or null).ToList();
        var preferred = prefer is null ? [] : positions.Where(q => prefer(q.Path)).ToList();
        var p = preferred.Count > 0 && rng.Chance(0.5) ? rng.Pick(preferred) : rng.Chance(0.7) && leaves.Count > 0 ? rng.Pick(leaves) : rng.Pick(positions);
        switch (rng.Weighted(45, 14, 10, 8, 6, 7, 5, 5))
        {
            case 0:
            {
                string raw = values?.Invoke(rng, p.Path) ?? ValueFor(p.Node, rng);
                plan.Replace[p.Path] = raw;
                log.Add($"{Describe(p, what)} = {Short(raw)}");
                break;
            }
            case 1:
                plan.Delete.Add(p.Path);
                log.Add($"{Describe(p, what)} removed");
                break;
            case 2:
            {
                var owner = positions.Where(q => q.Node is JsonObject).Select(q => q.Path).Prepend("").ToList();
                string objPath = p.InArray ? rng.Pick(owner) : p.ParentPath;
                var obj = objPath.Length == 0 ? root as JsonObject : positions.First(q => q.Path == objPath).Node as JsonObject;
                if (obj is null || obj.Count == 0) goto case 0;
                var (k, v) = obj.ElementAt(rng.Int(obj.Count));
                string dupValue = rng.Chance(0.5) ? v?.ToJsonString() ?? "null" : values?.Invoke(rng, objPath + "/" + Escape(k)) ?? ValueFor(v, rng);
                Add(plan.ExtraMembers, objPath, $"{Quote(k)}: {dupValue}");
                log.Add($"{what} {(objPath.Length == 0 ? "(root)" : objPath)}: key '{k}' given twice (second = {Short(dupValue)})");
                break;
            }
            case 3:
            {
                var objects = positions.Where(q => q.Node is JsonObject).Select(q => q.Path).Prepend("").ToList();
                string objPath = rng.Pick(objects);
                string key = rng.Pick(new[] { "extra", "", "__proto__", "NUM_TOKENS", "a\u0000b", new string('k', 10_000), "dtype", "version", "stages", "kind" });
                string value = values?.Invoke(rng, objPath + "/" + Escape(key)) ?? ValueFor(null, rng);
                Add(plan.ExtraMembers, objPath, $"{Quote(key)}: {value}");
                log.Add($"{what} {(objPath.Length == 0 ? "(root)" : objPath)}: added key {Short(Quote(key))} = {Short(value)}");
                break;
            }
            case 4:
            {
                if (p.Key is null) goto case 0;
                string to = rng.Pick(new[] { p.Key.ToUpperInvariant(), p.Key + " ", " " + p.Key, p.Key[..^1], p.Key + p.Key, "", p.Key.Replace('_', '-') });
                plan.Rename[p.Path] = to;
                log.Add($"{Describe(p, what)} renamed to {Short(Quote(to))}");
                break;
            }
            case 5:
            {
                var arrays = positions.Where(q => q.Node is JsonArray).ToList();
                if (arrays.Count == 0) goto case 0;
                var a = rng.Pick(arrays);
                var arr = (JsonArray)a.Node!;
                string raw = arr.Count > 0 && rng.Chance(0.5) ? arr[rng.Int(arr.Count)]?.ToJsonString() ?? "null" : values?.Invoke(rng, a.Path + "/" + arr.Count) ?? ValueFor(null, rng);
                int copies = rng.Pick(new[] { 1, 1, 2, 100 });
                for (int i = 0; i < copies; i++) Add(plan.ExtraElements, a.Path, raw);
                log.Add($"{Describe(a, what)}: {copies} element(s) {Short(raw)} appended");
                break;
            }
            case 6:
            {
                string inner = p.Node?.ToJsonString() ?? "null";
                string raw = rng.Chance(0.5) ? $"[{inner}]" : $"{{\"value\": {inner}}}";
                plan.Replace[p.Path] = raw;
                log.Add($"{Describe(p, what)} wrapped: {Short(raw)}");
                break;
            }
            default:
            {
                int depth = rng.Pick(new[] { 63, 64, 65, 1000, 100_000 });
                string raw = Interesting.Nested(depth, rng.Chance(0.5));
                plan.Replace[p.Path] = raw;
                log.Add($"{Describe(p, what)} = nesting {depth} deep");
                break;
            }
        }
    }

    private static void Add(Dictionary<string, List<string>> d, string key, string value)
    {
        if (!d.TryGetValue(key, out var list)) d[key] = list = [];
        list.Add(value);
    }

    /// <summary>A replacement for a value of this kind: mostly of the same kind with a boundary value, sometimes any type.</summary>
    public static string ValueFor(JsonNode? node, FuzzRng rng)
    {
        if (rng.Chance(0.3)) return Interesting.OtherValue(rng);
        return node switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.Number => Interesting.Number(rng),
            JsonValue v when v.GetValueKind() == JsonValueKind.String => rng.Chance(0.5) ? Interesting.Number(rng) : Quote(rng.Pick(new[]
                { "", " ", "F32", "mlnet", "language-model", "../../etc/passwd", "stages/000/", "/", "\u0000", "mblm-mlnet-pipeline", "rope", "mamba1" })),
            JsonValue => rng.Pick(new[] { "1", "0", "\"true\"", "null", "tru" }),
            JsonArray => rng.Pick(new[] { "[]", "[[]]", "[-1]", "[0]", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]", "[2147483648]", "[1e300, 1e300]" }),
            _ => Interesting.OtherValue(rng),
        };
    }

    private static void Render(JsonNode? node, string path, Plan plan, StringBuilder sb)
    {
        switch (node)
        {
            case JsonObject o:
            {
                sb.Append('{');
                bool first = true;
                void Member(string text)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    sb.Append(text);
                }
                foreach (var (k, v) in o)
                {
                    string child = path + "/" + Escape(k);
                    if (plan.Delete.Contains(child)) continue;
                    var inner = new StringBuilder();
                    inner.Append(Quote(plan.Rename.GetValueOrDefault(child, k))).Append(": ");
                    if (plan.Replace.TryGetValue(child, out var raw)) inner.Append(raw);
                    else Render(v, child, plan, inner);
                    Member(inner.ToString());
                }
                if (plan.ExtraMembers.TryGetValue(path, out var extra)) foreach (var m in extra) Member(m);
                sb.Append('}');
                break;
            }
            case JsonArray a:
            {
                sb.Append('[');
                bool first = true;
                for (int i = 0; i < a.Count; i++)
                {
                    string child = path + "/" + i;
                    if (plan.Delete.Contains(child)) continue;
                    if (!first) sb.Append(", ");
                    first = false;
                    if (plan.Replace.TryGetValue(child, out var raw)) sb.Append(raw);
                    else Render(a[i], child, plan, sb);
                }
                if (plan.ExtraElements.TryGetValue(path, out var extra))
                    foreach (var e in extra)
                    {
                        if (!first) sb.Append(", ");
                        first = false;
                        sb.Append(e);
                    }
                sb.Append(']');
                break;
            }
            case null:
                sb.Append("null");
                break;
            default:
                sb.Append(node.ToJsonString());
                break;
        }
    }

    /// <summary>Mutations of the text as bytes: a byte-order mark, invalid UTF-8, control characters, then byte-level ones.</summary>
    public static byte[] TextLevel(byte[] text, FuzzRng rng, MutationLog log, string what)
    {
        switch (rng.Int(5))
        {
            case 0:
                log.Add($"{what}: UTF-8 byte-order mark prepended");
                return [0xEF, 0xBB, 0xBF, .. text];
            case 1:
            {
                int at = rng.Int(text.Length + 1);
                byte[] bad = rng.Pick(new[] { new byte[] { 0xFF }, [0xC0, 0x80], [0xED, 0xA0, 0x80], [0x00], [0xF4, 0x90, 0x80, 0x80] });
                log.Add($"{what}: invalid UTF-8 / NUL inserted at {at}");
                return [.. text[..at], .. bad, .. text[at..]];
            }
            case 2:
                log.Add($"{what}: UTF-16 encoded");
                return Encoding.Unicode.GetBytes(Encoding.UTF8.GetString(text));
            default:
                return ByteMutator.Mutate(text, rng, log, what);
        }
    }

    public static string Short(string s) => s.Length <= 80 ? s : $"{s[..40]}…({s.Length} chars)…{s[^20..]}";
}

/// <summary>A small YAML document model of our own (block mappings, flow or block sequences, raw scalars) and its writer.</summary>
internal abstract class YNode
{
    public string? Anchor { get; set; }
    public abstract YNode Clone();
}

internal sealed class YScalar(string raw) : YNode
{
    /// <summary>The scalar as written (plain, quoted, or any raw one-line flow YAML).</summary>
    public string Raw { get; set; } = raw;
    public override YNode Clone() => new YScalar(Raw) { Anchor = Anchor };
}

/// <summary>Raw YAML for a value: one line is written after the key, several lines as an indented block under it.</summary>
internal sealed class YRaw(string text) : YNode
{
    public string Text { get; } = text;
    public override YNode Clone() => new YRaw(Text) { Anchor = Anchor };
}

internal sealed class YSeq(List<YNode> items, bool flow) : YNode
{
    public List<YNode> Items { get; } = items;
    public bool Flow { get; set; } = flow;
    public override YNode Clone() => new YSeq(Items.Select(i => i.Clone()).ToList(), Flow) { Anchor = Anchor };
}

internal sealed class YMap(List<(string Key, YNode Value)> items) : YNode
{
    public List<(string Key, YNode Value)> Items { get; } = items;
    public override YNode Clone() => new YMap(Items.Select(i => (i.Key, i.Value.Clone())).ToList()) { Anchor = Anchor };

    public YNode? this[string key] => Items.FirstOrDefault(i => i.Key == key).Value;
}

internal static class YamlWriter
{
    public static string Write(YMap root)
    {
        var sb = new StringBuilder();
        Map(root, 0, sb);
        return sb.ToString();
    }

    private static string Props(YNode n) => n.Anchor is null ? "" : "&" + n.Anchor + " ";

    private static void Map(YMap m, int indent, StringBuilder sb)
    {
        foreach (var (k, v) in m.Items)
        {
            sb.Append(' ', indent).Append(k).Append(':');
            Value(v, indent, sb);
        }
    }

    private static void Value(YNode v, int indent, StringBuilder sb)
    {
        switch (v)
        {
            case YScalar s:
                sb.Append(' ').Append(Props(s)).Append(s.Raw).Append('\n');
                break;
            case YRaw r when !r.Text.Contains('\n'):
                sb.Append(' ').Append(Props(r)).Append(r.Text).Append('\n');
                break;
            case YRaw r:
                sb.Append(r.Anchor is null ? "" : " &" + r.Anchor).Append('\n');
                foreach (var line in r.Text.Split('\n')) sb.Append(' ', indent + 2).Append(line).Append('\n');
                break;
            case YSeq q when q.Flow || q.Items.Count == 0:
                sb.Append(' ').Append(Props(q)).Append(Flow(q)).Append('\n');
                break;
            case YSeq q:
                sb.Append(q.Anchor is null ? "" : " &" + q.Anchor).Append('\n');
                foreach (var item in q.Items)
                {
                    if (item is YMap im && im.Items.Count > 0)
                    {
                        if (im.Anchor is not null)
                        {
                            sb.Append(' ', indent + 2).Append("- &").Append(im.Anchor).Append('\n');
                            Map(im, indent + 4, sb);
                        }
                        else
                        {
                            var inner = new StringBuilder();
                            Map(im, indent + 4, inner);
                            sb.Append(' ', indent + 2).Append("- ").Append(inner.ToString(indent + 4, inner.Length - indent - 4));
                        }
                    }
                    else sb.Append(' ', indent + 2).Append("- ").Append(Props(item)).Append(Flow(item)).Append('\n');
                }
                break;
            case YMap mm when mm.Items.Count == 0:
                sb.Append(' ').Append(Props(mm)).Append("{}\n");
                break;
            case YMap mm:
                sb.Append(mm.Anchor is null ? "" : " &" + mm.Anchor).Append('\n');
                Map(mm, indent + 2, sb);
                break;
        }
    }

    public static string Flow(YNode n) => n switch
    {
        YScalar s => s.Raw,
        YRaw r => r.Text.Replace('\n', ' '),
        YSeq q => "[" + string.Join(", ", q.Items.Select(i => Props(i) + Flow(i))) + "]",
        YMap m => "{" + string.Join(", ", m.Items.Select(i => $"{i.Key}: {Props(i.Value)}{Flow(i.Value)}")) + "}",
        _ => "",
    };
}

/// <summary>
/// Mutations of a YAML config: values replaced by YAML's special scalars and boundary numbers, alias bombs, anchors and
/// aliases (also self-referencing ones), deep block and flow nesting, duplicate and unknown keys, tags, several documents,
/// tabs, a byte-order mark, invalid UTF-8 and files beyond the size limit.
/// </summary>
internal static class YamlMutator
{
    public static readonly string[] SpecialScalars =
    [
        "~", "null", "Null", "NULL", "", ".inf", "-.inf", ".nan", ".NaN", "0x7fffffff", "0x100", "0o17", "017", "+12", "1_0",
        "1e3", "1.0e+3", "yes", "no", "on", "off", "True", "'257'", "\"257\"", "!!str 257", "!!int \"257\"", "!!float 1",
        "!!binary AAAA", "!!python/object/apply:os.system [\"true\"]", "!custom 1", "!!map {}", "*undefined_alias", "&lonely_anchor",
        "[1, 2", "{", "\"\\x00\"", "|", "'", "@reserved", "`reserved", "- 1", "? key", "%", "2147483648", "-2147483649",
        "9223372036854775808", "1e400", "-0", "0.0000001", "--1", "1 # comment", "a: b",
    ];

    public static string Scalar(FuzzRng rng) => rng.Chance(0.45) ? Interesting.Number(rng) : rng.Pick(SpecialScalars);

    /// <summary>An alias bomb as one flow value: each level a list of <paramref name="fanout"/> aliases of the level below.</summary>
    public static string FlowBomb(int levels, int fanout)
    {
        var sb = new StringBuilder("[&b0 [" + string.Join(", ", Enumerable.Repeat("lol", fanout)) + "]");
        for (int l = 1; l <= levels; l++)
            sb.Append($", &b{l} [" + string.Join(", ", Enumerable.Repeat($"*b{l - 1}", fanout)) + "]");
        return sb.Append(']').ToString();
    }

    /// <summary>Block mappings nested <paramref name="depth"/> deep (an indented staircase).</summary>
    public static string BlockNesting(int depth)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < depth; i++) sb.Append(' ', 2 * i).Append("a:\n");
        sb.Append(' ', 2 * depth).Append("b: 1");
        return sb.ToString();
    }

    private sealed record Pos(YNode Node, Action<YNode> Set, Action? Remove, YMap? Owner, int Index, string Path);

    private static void Walk(YNode node, string path, List<Pos> into)
    {
        switch (node)
        {
            case YMap m:
                for (int i = 0; i < m.Items.Count; i++)
                {
                    int idx = i;
                    var (k, v) = m.Items[i];
                    into.Add(new Pos(v, n => m.Items[idx] = (m.Items[idx].Key, n), () => m.Items.RemoveAt(idx), m, idx, $"{path}{(path.Length > 0 ? "." : "")}{k}"));
                    Walk(v, $"{path}{(path.Length > 0 ? "." : "")}{k}", into);
                }
                break;
            case YSeq q:
                for (int i = 0; i < q.Items.Count; i++)
                {
                    int idx = i;
                    into.Add(new Pos(q.Items[i], n => q.Items[idx] = n, () => q.Items.RemoveAt(idx), null, idx, $"{path}[{i}]"));
                    Walk(q.Items[i], $"{path}[{i}]", into);
                }
                break;
        }
    }

    public static byte[] Mutate(YMap seed, FuzzRng rng, MutationLog log, string what)
    {
        var root = (YMap)seed.Clone();
        if (rng.Chance(0.15)) return Document(root, rng, log, what);
        int ops = rng.Chance(0.8) ? 1 : 2;
        for (int op = 0; op < ops; op++)
        {
            var positions = new List<Pos>();
            Walk(root, "", positions);
            var p = rng.Pick(positions);
            switch (rng.Weighted(30, 10, 10, 8, 8, 7, 8, 6, 5, 4, 4))
            {
                case 0:
                {
                    string raw = Scalar(rng);
                    p.Set(new YScalar(raw));
                    log.Add($"{what} {p.Path} = {JsonMutator.Short(raw)}");
                    break;
                }
                case 1:
                {
                    int levels = rng.Pick(new[] { 4, 6, 8, 9, 12 }), fanout = rng.Pick(new[] { 9, 10, 16 });
                    p.Set(new YRaw(FlowBomb(levels, fanout)));
                    log.Add($"{what} {p.Path} = alias bomb ({fanout}^{levels} expanded nodes)");
                    break;
                }
                case 2:
                {
                    // Anchor one node and alias it from another (possibly from inside itself).
                    var target = rng.Pick(positions);
                    string name = "n" + rng.Int(1000);
                    target.Node.Anchor = name;
                    var user = rng.Pick(positions);
                    user.Set(new YScalar("*" + name));
                    log.Add($"{what} {target.Path} anchored &{name}; {user.Path} = *{name}");
                    break;
                }
                case 3:
                {
                    if (p.Remove is null) goto case 0;
                    p.Remove();
                    log.Add($"{what} {p.Path} removed");
                    break;
                }
                case 4:
                {
                    if (p.Owner is null) goto case 0;
                    var (k, v) = p.Owner.Items[p.Index];
                    YNode dup = rng.Chance(0.5) ? v.Clone() : new YScalar(Scalar(rng));
                    dup.Anchor = null;
                    p.Owner.Items.Insert(rng.Chance(0.5) ? p.Index + 1 : p.Owner.Items.Count, (k, dup));
                    log.Add($"{what} {p.Path}: key given twice");
                    break;
                }
                case 5:
                {
                    var maps = positions.Where(q => q.Node is YMap).Select(q => (YMap)q.Node).Prepend(root).ToList();
                    var m = rng.Pick(maps);
                    string key = rng.Pick(new[] { "extra", "NUM_TOKENS", "\"quoted key\"", "<<", "? complex", "[a, b]", "null", "1", "!!str tagged", new string('k', 2000) });
                    m.Items.Insert(rng.Int(m.Items.Count + 1), (key, new YScalar(Scalar(rng))));
                    log.Add($"{what}: key {JsonMutator.Short(key)} added");
                    break;
                }
                case 6:
                {
                    int depth = rng.Pick(new[] { 63, 64, 65, 200, 5000, 100_000 });
                    bool block = rng.Chance(0.5) && depth <= 5000;
                    p.Set(new YRaw(block ? BlockNesting(depth) : Interesting.Nested(depth, rng.Chance(0.5)).Replace("\"a\":", "a:")));
                    log.Add($"{what} {p.Path} = {(block ? "block" : "flow")} nesting {depth} deep");
                    break;
                }
                case 7:
                {
                    string raw = rng.Pick(new[] { "{}", "[]", "[[1]]", "{a: 1}", "[1, [2, [3]]]", "!!set {a, b}", "!!omap [a: 1]", "[" + string.Join(",", Enumerable.Repeat("1", 1_100_000)) + "]" });
                    p.Set(new YRaw(raw));
                    log.Add($"{what} {p.Path} = {JsonMutator.Short(raw)}");
                    break;
                }
                case 8:
                {
                    if (p.Owner is null) goto case 0;
                    var (k, v) = p.Owner.Items[p.Index];
                    string to = rng.Pick(new[] { k.ToUpperInvariant(), k + " ", k.Replace('_', '-'), k + "s", "'" + k + "'", "\"" + k + "\"" });
                    p.Owner.Items[p.Index] = (to, v);
                    log.Add($"{what} {p.Path} renamed to {to}");
                    break;
                }
                case 9:
                {
                    if (p.Node is YSeq q) { q.Flow = !q.Flow; log.Add($"{what} {p.Path}: sequence style switched"); break; }
                    if (p.Node is YMap mm) { p.Set(new YRaw(YamlWriter.Flow(mm))); log.Add($"{what} {p.Path}: mapping written in flow style"); break; }
                    goto case 0;
                }
                default:
                {
                    string tag = rng.Pick(new[] { "!!str", "!!int", "!!float", "!!seq", "!!map", "!!binary", "!!timestamp", "!foo", "!<tag:yaml.org,2002:python/object>" });
                    string flow = YamlWriter.Flow(p.Node);
                    p.Set(new YRaw(tag + " " + flow));
                    log.Add($"{what} {p.Path}: tagged {tag}");
                    break;
                }
            }
        }
        return Encoding.UTF8.GetBytes(YamlWriter.Write(root));
    }

    // Mutations of the whole document.
    private static byte[] Document(YMap root, FuzzRng rng, MutationLog log, string what)
    {
        string text = YamlWriter.Write(root);
        switch (rng.Int(13))
        {
            case 0:
            {
                // The alias bomb of the hardening tests, as keys of a section (io's values are kept as text).
                int levels = rng.Pick(new[] { 5, 9, 12 });
                string section = rng.Pick(new[] { "io", "io", "train", "resume", "bomb" });
                if (root[section] is not YMap map)
                {
                    map = new YMap([]);
                    root.Items.Add((section, map));
                }
                map.Items.Add(("a0", new YRaw("&a0 [x, x, x, x, x, x, x, x, x, x]")));
                for (int i = 1; i < levels; i++) map.Items.Add(($"a{i}", new YRaw($"&a{i} [{string.Join(", ", Enumerable.Repeat($"*a{i - 1}", 10))}]")));
                log.Add($"{what}: alias bomb of {levels} levels added under {section}");
                return Encoding.UTF8.GetBytes(YamlWriter.Write(root));
            }
            case 1:
                log.Add($"{what}: a second document appended");
                return Encoding.UTF8.GetBytes(text + "---\n" + text);
            case 2:
                log.Add($"{what}: document start with a tag");
                return Encoding.UTF8.GetBytes(rng.Pick(new[] { "--- !!str\n", "--- !!seq\n", "%YAML 1.1\n---\n", "%YAML 9.9\n---\n", "%TAG ! tag:evil,2024:\n---\n" }) + text);
            case 3:
                log.Add($"{what}: indented with tabs");
                return Encoding.UTF8.GetBytes(text.Replace("  ", "\t"));
            case 4:
                log.Add($"{what}: CRLF line ends and a byte-order mark");
                return [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(text.Replace("\n", "\r\n"))];
            case 5:
            {
                long size = rng.Pick(new[] { (16L << 20) - text.Length, (16L << 20) + 1, 40L << 20 });
                log.Add($"{what}: padded with a comment to {size + text.Length} bytes");
                var sb = new StringBuilder(text, (int)(text.Length + size + 4));
                sb.Append('#').Append('x', (int)Math.Max(0, size - 2)).Append('\n');
                return Encoding.UTF8.GetBytes(sb.ToString());
            }
            case 6:
            {
                string doc = rng.Pick(new[] { "", "# only a comment\n", "~\n", "257\n", "- a\n- b\n", "[]\n", "{}\n", "---\n...\n", "\"text\"\n" });
                log.Add($"{what}: document replaced by {JsonMutator.Short(doc.Trim())}");
                return Encoding.UTF8.GetBytes(doc);
            }
            case 7:
            {
                log.Add($"{what}: merge key << with an alias");
                return Encoding.UTF8.GetBytes("defaults: &d\n  num_tokens: 257\n" + text + "<<: *d\n");
            }
            case 8:
            {
                int n = rng.Pick(new[] { 10_000, 600_000 });
                var sb = new StringBuilder(text);
                sb.Append("io:\n");
                for (int i = 0; i < n; i++) sb.Append("  k").Append(i).Append(": v\n");
                log.Add($"{what}: {n} extra keys");
                return Encoding.UTF8.GetBytes(sb.ToString());
            }
            case 9:
            {
                int depth = rng.Pick(new[] { 65, 100_000, 1_000_000 });
                log.Add($"{what}: flow nesting {depth} deep appended");
                return Encoding.UTF8.GetBytes(text + "deep: " + new string('[', depth) + new string(']', depth) + "\n");
            }
            case 10:
            {
                log.Add($"{what}: self-referencing alias");
                return Encoding.UTF8.GetBytes(text + "io:\n  loop: &loop [1, *loop]\n");
            }
            case 11:
            {
                log.Add($"{what}: an anchor redefined and aliased");
                return Encoding.UTF8.GetBytes(text.Replace("num_tokens: 257", "num_tokens: &x 257").Replace("pad_token_id: 256", "pad_token_id: &x 256\nextra_alias: *x"));
            }
            default:
                return JsonMutator.TextLevel(Encoding.UTF8.GetBytes(text), rng, log, what);
        }
    }
}
