using System.Globalization;
using System.Text;
using Mblm.MLNet.Vision;
using Microsoft.ML;
using Microsoft.ML.Data;
using SkiaSharp;

namespace Mblm.Examples;

/// <summary>One generated question about one scene.</summary>
/// <param name="SceneId">Scene index (questions of one scene share the image).</param>
/// <param name="Image">The scene.</param>
/// <param name="Question">The question text.</param>
/// <param name="Answer">The answer: yes/no, a count 0–10, or an attribute value.</param>
/// <param name="Family">CLEVR question family: exists, count, compare-integer, query-attribute, compare-attribute.</param>
public sealed record VqaExample(int SceneId, RgbImage Image, string Question, string Answer, string Family);

/// <summary>A data-view row of generated examples: the image as PNG file bytes.</summary>
public sealed class VqaRow
{
    /// <summary>PNG file bytes of the scene.</summary>
    [VectorType]
    public byte[] Image { get; set; } = [];
    /// <summary>Question.</summary>
    public string Question { get; set; } = "";
    /// <summary>Answer (convert to a key with <c>MapValueToKey</c> for training).</summary>
    public string Answer { get; set; } = "";
    /// <summary>Question family.</summary>
    public string Family { get; set; } = "";
    /// <summary>Scene index.</summary>
    public int SceneId { get; set; }
}

/// <summary>
/// A seeded, deterministic CLEVR-like data generator: scenes of 2–6 objects (cube, sphere, cylinder; CLEVR's 8 colours;
/// small or large; rubber or metal — metal drawn with a specular highlight) at random non-overlapping positions, drawn with
/// SkiaSharp, and questions from CLEVR's five families with their answers.
/// </summary>
public sealed class ClevrLikeGenerator
{
    /// <summary>Question families, in table order.</summary>
    public static readonly string[] Families = ["exists", "count", "compare-integer", "query-attribute", "compare-attribute"];
    /// <summary>Shapes.</summary>
    public static readonly string[] Shapes = ["cube", "sphere", "cylinder"];
    /// <summary>Colours (CLEVR's palette).</summary>
    public static readonly string[] Colors = ["gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"];
    /// <summary>Sizes.</summary>
    public static readonly string[] Sizes = ["small", "large"];
    /// <summary>Materials.</summary>
    public static readonly string[] Materials = ["rubber", "metal"];

    private static readonly SKColor[] Rgb =
    [
        new(87, 87, 87), new(173, 35, 35), new(42, 75, 215), new(29, 105, 20),
        new(129, 74, 25), new(129, 38, 192), new(41, 208, 208), new(255, 238, 51),
    ];

    private sealed record Obj(int Shape, int Color, int Size, int Material, float X, float Y)
    {
        public int Attr(int a) => a switch { 0 => Size, 1 => Color, 2 => Material, _ => Shape };
    }

    // A filter: attribute index (0 size, 1 colour, 2 material, 3 shape) → value.
    private sealed record Filter(IReadOnlyDictionary<int, int> Values)
    {
        public bool Matches(Obj o) => Values.All(kv => o.Attr(kv.Key) == kv.Value);
    }

    private readonly Random _rng;

    /// <summary>Creates a generator; the same seed and sizes give the same examples.</summary>
    public ClevrLikeGenerator(int seed, int width = 64, int height = 48, int minObjects = 2, int maxObjects = 6)
    {
        if (width < 16 || height < 12) throw new ArgumentOutOfRangeException(nameof(width), $"scenes need at least 16x12 pixels (got {width}x{height})");
        if (minObjects < 1 || maxObjects < minObjects) throw new ArgumentOutOfRangeException(nameof(minObjects), $"need 1 <= minObjects <= maxObjects (got {minObjects}, {maxObjects})");
        _rng = new Random(seed);
        Width = width;
        Height = height;
        MinObjects = minObjects;
        MaxObjects = maxObjects;
    }

    /// <summary>Image width.</summary>
    public int Width { get; }
    /// <summary>Image height.</summary>
    public int Height { get; }
    /// <summary>Fewest objects per scene.</summary>
    public int MinObjects { get; }
    /// <summary>Most objects per scene.</summary>
    public int MaxObjects { get; }

    /// <summary>Every possible answer, in a fixed order (yes, no, counts 0–10, then attribute values).</summary>
    public static IReadOnlyList<string> AllAnswers { get; } =
        new[] { "yes", "no" }.Concat(Enumerable.Range(0, 11).Select(i => i.ToString(CultureInfo.InvariantCulture)))
            .Concat(Colors).Concat(Shapes).Concat(Sizes).Concat(Materials).ToList();

    /// <summary>Generates <paramref name="scenes"/> scenes with <paramref name="questionsPerScene"/> questions each, the families in turn.</summary>
    public List<VqaExample> Generate(int scenes, int questionsPerScene = 5)
    {
        var result = new List<VqaExample>();
        for (int s = 0; s < scenes; s++)
        {
            var objects = Scene();
            var image = Draw(objects);
            for (int q = 0; q < questionsPerScene; q++)
            {
                string family = Families[(s * questionsPerScene + q) % Families.Length];
                var (question, answer) = Ask(family, objects);
                result.Add(new VqaExample(s, image, question, answer, family));
            }
        }
        return result;
    }

    private sealed class AnswerKey
    {
        public string Answer { get; set; } = "";
    }

    /// <summary>A one-column data view of <see cref="AllAnswers"/>: pass it as <c>keyData</c> to <c>MapValueToKey</c> so every answer has a key, in a fixed order.</summary>
    public static IDataView AnswerKeyData(MLContext ml) => AnswerKeyData(ml, AllAnswers);

    /// <summary>A one-column data view of <paramref name="answers"/>, in their order, for <c>MapValueToKey</c>'s <c>keyData</c>.</summary>
    public static IDataView AnswerKeyData(MLContext ml, IEnumerable<string> answers) => ml.Data.LoadFromEnumerable(answers.Select(a => new AnswerKey { Answer = a }));

    /// <summary>The image as a PNG file with every pixel as it is (no resizing, all 256 levels).</summary>
    public static byte[] Png(RgbImage image) => ImageBytes.Encode(image, new ImageByteOptions { Encoding = ImageEncoding.Png, MaxPixels = null, Levels = null });

    /// <summary>Examples as an <see cref="IDataView"/> of <see cref="VqaRow"/> (images as PNG file bytes).</summary>
    public static IDataView ToDataView(MLContext ml, IEnumerable<VqaExample> examples)
    {
        var pngs = new Dictionary<RgbImage, byte[]>(ReferenceEqualityComparer.Instance);
        var rows = examples.Select(e => new VqaRow
        {
            Image = pngs.TryGetValue(e.Image, out var png) ? png : pngs[e.Image] = Png(e.Image),
            Question = e.Question, Answer = e.Answer, Family = e.Family, SceneId = e.SceneId,
        }).ToList();
        return ml.Data.LoadFromEnumerable(rows);
    }

    /// <summary>Writes <c>images/scene-NNNNN.png</c> and <c>questions.tsv</c> (image, question, answer, family) to a folder.</summary>
    public static void WriteTo(string folder, IEnumerable<VqaExample> examples)
    {
        Directory.CreateDirectory(Path.Combine(folder, "images"));
        var tsv = new StringBuilder("Image\tQuestion\tAnswer\tFamily\n");
        var written = new HashSet<int>();
        foreach (var e in examples)
        {
            string name = $"images/scene-{e.SceneId:D5}.png";
            if (written.Add(e.SceneId)) File.WriteAllBytes(Path.Combine(folder, name), Png(e.Image));
            tsv.Append(name).Append('\t').Append(e.Question).Append('\t').Append(e.Answer).Append('\t').Append(e.Family).Append('\n');
        }
        File.WriteAllText(Path.Combine(folder, "questions.tsv"), tsv.ToString());
    }

    private float Radius(int size) => Math.Max(3, (size == 0 ? 0.1f : 0.17f) * Height);

    private List<Obj> Scene()
    {
        int count = _rng.Next(MinObjects, MaxObjects + 1);
        var objects = new List<Obj>();
        for (int tries = 0; objects.Count < count && tries < 500; tries++)
        {
            int size = _rng.Next(2);
            float r = Radius(size);
            float x = r + (float)_rng.NextDouble() * (Width - 2 * r), y = r + (float)_rng.NextDouble() * (Height - 2 * r);
            if (objects.Any(o => MathF.Sqrt((o.X - x) * (o.X - x) + (o.Y - y) * (o.Y - y)) < Radius(o.Size) + r + 1)) continue;
            objects.Add(new Obj(_rng.Next(3), _rng.Next(8), size, _rng.Next(2), x, y));
        }
        return objects;
    }

    private RgbImage Draw(List<Obj> objects)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(Width, Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(new SKColor(196, 196, 190));
        using var paint = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill };
        foreach (var o in objects.OrderBy(o => o.Y))
        {
            float r = Radius(o.Size);
            var c = Rgb[o.Color];
            paint.Color = o.Material == 1 ? Shade(c, 0.75f) : c;
            switch (o.Shape)
            {
                case 0: canvas.DrawRect(o.X - r, o.Y - r, 2 * r, 2 * r, paint); break;
                case 1: canvas.DrawCircle(o.X, o.Y, r, paint); break;
                default:
                    canvas.DrawRect(o.X - 0.8f * r, o.Y - 0.7f * r, 1.6f * r, 1.7f * r, paint);
                    paint.Color = Shade(paint.Color, 1.3f);
                    canvas.DrawOval(o.X, o.Y - 0.7f * r, 0.8f * r, 0.3f * r, paint);
                    break;
            }
            if (o.Material == 1)
            {
                paint.Color = new SKColor(255, 255, 255);
                canvas.DrawCircle(o.X - 0.35f * r, o.Y - 0.35f * r, Math.Max(1, 0.28f * r), paint);
            }
        }
        canvas.Flush();
        return RgbImage.From(bitmap);
    }

    private static SKColor Shade(SKColor c, float f) =>
        new((byte)Math.Min(255, c.Red * f), (byte)Math.Min(255, c.Green * f), (byte)Math.Min(255, c.Blue * f));

    // Yes/no families are balanced the way CLEVR balances answers: draw the wanted answer first, then questions until one has it.
    private (string Question, string Answer) Ask(string family, List<Obj> objects)
    {
        string? wanted = family is "exists" or "compare-integer" or "compare-attribute" ? (_rng.Next(2) == 0 ? "yes" : "no") : null;
        (string Question, string Answer) qa = default;
        for (int tries = 0; tries < 50; tries++)
        {
            qa = AskOnce(family, objects);
            if (wanted is null || qa.Answer == wanted) break;
        }
        return qa;
    }

    private (string Question, string Answer) AskOnce(string family, List<Obj> objects)
    {
        switch (family)
        {
            case "exists":
            {
                var f = RandomFilter(objects, fromScene: _rng.Next(2) == 0, maxAttrs: 2);
                return ($"Is there a {Describe(f, plural: false)}?", objects.Any(f.Matches) ? "yes" : "no");
            }
            case "count":
            {
                var f = RandomFilter(objects, fromScene: _rng.Next(4) != 0, maxAttrs: 2);
                return ($"How many {Describe(f, plural: true)} are there?", objects.Count(f.Matches).ToString(CultureInfo.InvariantCulture));
            }
            case "compare-integer":
            {
                var a = RandomFilter(objects, true, 1);
                var b = RandomFilter(objects, _rng.Next(2) == 0, 1);
                int na = objects.Count(a.Matches), nb = objects.Count(b.Matches);
                return _rng.Next(3) switch
                {
                    0 => ($"Are there more {Describe(a, true)} than {Describe(b, true)}?", na > nb ? "yes" : "no"),
                    1 => ($"Are there fewer {Describe(a, true)} than {Describe(b, true)}?", na < nb ? "yes" : "no"),
                    _ => ($"Are there the same number of {Describe(a, true)} and {Describe(b, true)}?", na == nb ? "yes" : "no"),
                };
            }
            case "compare-attribute" when objects.Count > 1:
            {
                var (a, fa) = UniqueObject(objects);
                var (b, fb) = UniqueObject(objects, exclude: a);
                int attr = _rng.Next(4);
                return ($"Does the {Describe(fa, false)} have the same {AttributeNames[attr]} as the {Describe(fb, false)}?", a.Attr(attr) == b.Attr(attr) ? "yes" : "no");
            }
            default: // query-attribute (and compare-attribute in a one-object scene)
            {
                var (target, f) = UniqueObject(objects);
                int attr = Enumerable.Range(0, 4).Where(i => !f.Values.ContainsKey(i)).OrderBy(_ => _rng.Next()).First();
                return ($"What {AttributeNames[attr]} is the {Describe(f, false)}?", Value(attr, target.Attr(attr)));
            }
        }
    }

    private static readonly string[] AttributeNames = ["size", "color", "material", "shape"];

    // A filter of 1..maxAttrs attributes, taken from a scene object (so it matches) or drawn at random.
    private Filter RandomFilter(List<Obj> objects, bool fromScene, int maxAttrs)
    {
        var source = objects[_rng.Next(objects.Count)];
        int n = _rng.Next(1, maxAttrs + 1);
        var attrs = Enumerable.Range(0, 4).OrderBy(_ => _rng.Next()).Take(n);
        int[] cardinality = [2, 8, 2, 3];
        return new Filter(attrs.ToDictionary(a => a, a => fromScene ? source.Attr(a) : _rng.Next(cardinality[a])));
    }

    // An object and the smallest random filter that picks it alone (all four attributes as a last resort).
    private (Obj Target, Filter Filter) UniqueObject(List<Obj> objects, Obj? exclude = null)
    {
        var candidates = objects.Where(o => o != exclude).ToList();
        var target = candidates[_rng.Next(candidates.Count)];
        foreach (int n in new[] { 1, 2, 3 })
            foreach (var attrs in Subsets(n).OrderBy(_ => _rng.Next()))
            {
                var f = new Filter(attrs.ToDictionary(a => a, a => target.Attr(a)));
                if (objects.Count(f.Matches) == 1 && attrs.Length < 4) return (target, f);
            }
        return (target, new Filter(Enumerable.Range(0, 3).ToDictionary(a => a, a => target.Attr(a))));
    }

    private static IEnumerable<int[]> Subsets(int n) =>
        Enumerable.Range(0, 16).Where(m => System.Numerics.BitOperations.PopCount((uint)m) == n).Select(m => Enumerable.Range(0, 4).Where(i => (m >> i & 1) == 1).ToArray());

    private static string Value(int attr, int v) => attr switch { 0 => Sizes[v], 1 => Colors[v], 2 => Materials[v], _ => Shapes[v] };

    private static string Describe(Filter f, bool plural)
    {
        var words = new List<string>();
        foreach (int a in new[] { 0, 1, 2 })
            if (f.Values.TryGetValue(a, out int v)) words.Add(Value(a, v));
        string noun = f.Values.TryGetValue(3, out int s) ? Shapes[s] : "thing";
        words.Add(plural ? (noun == "sphere" ? "spheres" : noun + "s") : noun);
        return string.Join(' ', words);
    }
}
