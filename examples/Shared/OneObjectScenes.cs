using SkiaSharp;
using Mblm.MLNet.Vision;

namespace Mblm.Examples;

/// <summary>
/// Small scenes of one object (32×24 pixels; one of four colours, a circle or a square) with two questions each: its colour
/// and its shape. Two generators, written apart so that defaults are not fitted to one: <see cref="First"/> and
/// <see cref="Second"/>. The tests (<c>VqaDefaultsTests</c>) and <c>examples/Vqa --one-object</c> use them.
/// </summary>
public static class OneObjectScenes
{
    /// <summary>The colour question.</summary>
    public const string ColourQuestion = "what colour is the object?";
    /// <summary>The shape question.</summary>
    public const string ShapeQuestion = "what shape is the object?";
    /// <summary>The question families (<see cref="VqaExample.Family"/>): colour and shape.</summary>
    public static readonly string[] Families = ["colour", "shape"];

    private static readonly (string Name, SKColor Rgb)[] Colours =
        [("red", new(200, 40, 40)), ("green", new(40, 170, 60)), ("blue", new(50, 70, 210)), ("yellow", new(220, 200, 50))];

    private static readonly string[] Shapes = ["circle", "square"];

    /// <summary>Every answer: the four colours, then the two shapes.</summary>
    public static IReadOnlyList<string> AllAnswers { get; } = Colours.Select(c => c.Name).Concat(Shapes).ToList();

    /// <summary>
    /// The first generator: a grey background; objects of radius 4 to 8 pixels at a random place, anti-aliased, squares
    /// upright. Seeded: the same <paramref name="seed"/> gives the same scenes.
    /// </summary>
    public static List<VqaExample> First(int count, int seed)
    {
        var rng = new Random(seed);
        var result = new List<VqaExample>();
        for (int i = 0; i < count; i++)
        {
            var (colour, rgb) = Colours[rng.Next(Colours.Length)];
            string shape = Shapes[rng.Next(Shapes.Length)];
            float r = 4 + (float)rng.NextDouble() * 4, x = r + 1 + (float)rng.NextDouble() * (32 - 2 * r - 2), y = r + 1 + (float)rng.NextDouble() * (24 - 2 * r - 2);
            var image = Draw(new SKColor(128, 128, 128), canvas =>
            {
                using var paint = Paint(rgb, antialias: true);
                if (shape == "circle") canvas.DrawCircle(x, y, r, paint);
                else canvas.DrawRect(x - r, y - r, 2 * r, 2 * r, paint);
            });
            Add(result, i, image, colour, shape);
        }
        return result;
    }

    /// <summary>
    /// The second generator: a beige background; colours jittered by up to ±25 per channel; objects of radius 3 to 8
    /// pixels; no anti-aliasing; squares turned by up to 45 degrees, circles drawn as slightly squashed ellipses. Seeded.
    /// </summary>
    public static List<VqaExample> Second(int count, int seed)
    {
        var rng = new Random(seed * 7 + 3);
        var result = new List<VqaExample>();
        byte Jitter(byte v) => (byte)Math.Clamp(v + rng.Next(-25, 26), 0, 255);
        for (int i = 0; i < count; i++)
        {
            var (colour, rgb) = Colours[rng.Next(Colours.Length)];
            string shape = Shapes[rng.Next(Shapes.Length)];
            float r = 3 + (float)rng.NextDouble() * 5;
            float x = r + 1 + (float)rng.NextDouble() * (32 - 2 * r - 2), y = r + 1 + (float)rng.NextDouble() * (24 - 2 * r - 2);
            var jittered = new SKColor(Jitter(rgb.Red), Jitter(rgb.Green), Jitter(rgb.Blue));
            var image = Draw(new SKColor(214, 200, 170), canvas =>
            {
                using var paint = Paint(jittered, antialias: false);
                if (shape == "circle")
                {
                    float squash = 0.85f + (float)rng.NextDouble() * 0.15f;
                    canvas.DrawOval(x, y, r, r * squash, paint);
                }
                else
                {
                    canvas.Save();
                    canvas.RotateDegrees((float)rng.NextDouble() * 45, x, y);
                    canvas.DrawRect(x - r * 0.9f, y - r * 0.9f, 1.8f * r, 1.8f * r, paint);
                    canvas.Restore();
                }
            });
            Add(result, i, image, colour, shape);
        }
        return result;
    }

    /// <summary>The generator of a name: <c>first</c> or <c>second</c>.</summary>
    public static Func<int, int, List<VqaExample>> Named(string name) => name switch
    {
        "first" => First,
        "second" => Second,
        _ => throw new ArgumentException($"unknown scene generator '{name}' (first, second)", nameof(name)),
    };

    private static SKPaint Paint(SKColor colour, bool antialias) => new() { IsAntialias = antialias, Style = SKPaintStyle.Fill, Color = colour };

    private static RgbImage Draw(SKColor background, Action<SKCanvas> draw)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(32, 24, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(background);
            draw(canvas);
        }
        return RgbImage.From(bitmap);
    }

    private static void Add(List<VqaExample> result, int scene, RgbImage image, string colour, string shape)
    {
        result.Add(new VqaExample(scene, image, ColourQuestion, colour, "colour"));
        result.Add(new VqaExample(scene, image, ShapeQuestion, shape, "shape"));
    }
}
