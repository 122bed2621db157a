using System.Globalization;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Data;
using SkiaSharp;

namespace Mblm.Examples;

/// <summary>
/// Small PNG charts drawn with SkiaSharp directly. No plotting package is used: ScottPlot 5 needs SkiaSharp 3, ML.NET's
/// image stack pins 2.88, and Plotly's PNG export downloads a browser at run time. Two kinds are drawn: line charts
/// (training and validation curves) and confusion matrices. The text uses DejaVu Sans where the system has it.
/// </summary>
public static class Plots
{
    private static readonly SKColor[] Palette =
    [
        new(0x1f, 0x77, 0xb4), new(0xd6, 0x27, 0x28), new(0x2c, 0xa0, 0x2c), new(0xff, 0x7f, 0x0e), new(0x94, 0x67, 0xbd), new(0x8c, 0x56, 0x4b),
    ];

    private static readonly Lazy<SKTypeface> Font = new(() =>
    {
        foreach (string path in new[]
                 {
                     "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf",
                     "/usr/share/fonts/dejavu/DejaVuSans.ttf", "/Library/Fonts/Arial.ttf", @"C:\Windows\Fonts\arial.ttf",
                 })
            if (File.Exists(path) && SKTypeface.FromFile(path) is { } face) return face;
        return SKTypeface.Default;
    });

    /// <summary>One named line of a <see cref="LineChart"/>.</summary>
    /// <param name="Name">The legend text.</param>
    /// <param name="Points">The points, in x order.</param>
    public sealed record Series(string Name, IReadOnlyList<(double X, double Y)> Points);

    /// <summary>A line chart as PNG bytes: one line per series, axes with ticks, a legend.</summary>
    public static byte[] LineChart(string title, string xLabel, string yLabel, IReadOnlyList<Series> series, int width = 720, int height = 420)
    {
        ArgumentNullException.ThrowIfNull(series);
        var points = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
        if (points.Count == 0) throw new ArgumentException("nothing to plot: every series is empty or not finite", nameof(series));
        var (x0, x1) = Range(points.Select(p => p.X));
        var (y0, y1) = Range(points.Select(p => p.Y));
        const float left = 72, right = 24, top = 44, bottom = 56;
        float w = width - left - right, h = height - top - bottom;
        float X(double x) => left + (float)((x - x0) / (x1 - x0)) * w;
        float Y(double y) => top + h - (float)((y - y0) / (y1 - y0)) * h;

        return Draw(width, height, canvas =>
        {
            using var text = Text(13);
            using var grid = new SKPaint { Color = new SKColor(0xe4, 0xe4, 0xe4), StrokeWidth = 1, IsAntialias = true };
            using var axis = new SKPaint { Color = SKColors.Black, StrokeWidth = 1.2f, IsAntialias = true };
            foreach (double t in Ticks(y0, y1))
            {
                canvas.DrawLine(left, Y(t), left + w, Y(t), grid);
                DrawText(canvas, Format(t), left - 6, Y(t) + 4, text, SKTextAlign.Right);
            }
            foreach (double t in Ticks(x0, x1))
            {
                canvas.DrawLine(X(t), top, X(t), top + h, grid);
                DrawText(canvas, Format(t), X(t), top + h + 18, text, SKTextAlign.Center);
            }
            canvas.DrawLine(left, top + h, left + w, top + h, axis);
            canvas.DrawLine(left, top, left, top + h, axis);
            using (var titlePaint = Text(16)) DrawText(canvas, title, width / 2f, 26, titlePaint, SKTextAlign.Center);
            DrawText(canvas, xLabel, left + w / 2, height - 14, text, SKTextAlign.Center);
            canvas.Save();
            canvas.RotateDegrees(-90, 18, top + h / 2);
            DrawText(canvas, yLabel, 18, top + h / 2, text, SKTextAlign.Center);
            canvas.Restore();

            for (int i = 0; i < series.Count; i++)
            {
                var color = Palette[i % Palette.Length];
                var pts = series[i].Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
                using var line = new SKPaint { Color = color, StrokeWidth = 2, IsAntialias = true, Style = SKPaintStyle.Stroke };
                using var path = new SKPath();
                for (int k = 0; k < pts.Count; k++)
                {
                    if (k == 0) path.MoveTo(X(pts[k].X), Y(pts[k].Y));
                    else path.LineTo(X(pts[k].X), Y(pts[k].Y));
                }
                canvas.DrawPath(path, line);
                if (pts.Count <= 40)
                    using (var dot = new SKPaint { Color = color, IsAntialias = true })
                        foreach (var p in pts) canvas.DrawCircle(X(p.X), Y(p.Y), 3, dot);
                // legend, top right
                float ly = top + 8 + 18 * i;
                canvas.DrawLine(left + w - 150, ly, left + w - 126, ly, line);
                DrawText(canvas, series[i].Name, left + w - 120, ly + 4, text, SKTextAlign.Left);
            }
        });
    }

    /// <summary>
    /// A confusion matrix as PNG bytes: rows are the true classes, columns the predicted ones, each cell shaded by its share
    /// of its row and labelled with its count.
    /// </summary>
    public static byte[] ConfusionMatrix(string title, IReadOnlyList<string> classes, IReadOnlyList<IReadOnlyList<double>> counts)
    {
        ArgumentNullException.ThrowIfNull(classes);
        ArgumentNullException.ThrowIfNull(counts);
        int k = classes.Count;
        if (k == 0 || counts.Count != k || counts.Any(r => r.Count != k))
            throw new ArgumentException($"counts must be a {k}×{k} matrix (one row and one column per class)", nameof(counts));
        int cell = k <= 10 ? 56 : k <= 20 ? 40 : 28;
        float left = 24 + MaxTextWidth(classes, 13), top = 64;
        int width = (int)(left + k * cell + 24), height = (int)(top + k * cell + 64);
        return Draw(width, height, canvas =>
        {
            using var text = Text(13);
            using (var titlePaint = Text(16)) DrawText(canvas, title, width / 2f, 26, titlePaint, SKTextAlign.Center);
            DrawText(canvas, "predicted", left + k * cell / 2f, 50, text, SKTextAlign.Center);
            for (int r = 0; r < k; r++)
            {
                double rowTotal = counts[r].Sum();
                DrawText(canvas, classes[r], left - 8, top + r * cell + cell / 2f + 5, text, SKTextAlign.Right);
                for (int c = 0; c < k; c++)
                {
                    double share = rowTotal > 0 ? counts[r][c] / rowTotal : 0;
                    byte shade = (byte)(255 - 200 * share);
                    using var fill = new SKPaint { Color = r == c ? new SKColor(shade, 255, shade) : new SKColor(255, shade, shade) };
                    var rect = new SKRect(left + c * cell, top + r * cell, left + (c + 1) * cell, top + (r + 1) * cell);
                    canvas.DrawRect(rect, fill);
                    using var border = new SKPaint { Color = SKColors.Gray, Style = SKPaintStyle.Stroke, StrokeWidth = 1 };
                    canvas.DrawRect(rect, border);
                    DrawText(canvas, counts[r][c].ToString("0", CultureInfo.InvariantCulture), rect.MidX, rect.MidY + 5, text, SKTextAlign.Center);
                }
            }
            for (int c = 0; c < k; c++)
                DrawText(canvas, classes[c], left + c * cell + cell / 2f, top + k * cell + 18, text, SKTextAlign.Center);
            DrawText(canvas, "rows: true class", left, top + k * cell + 44, text, SKTextAlign.Left);
        });
    }

    /// <summary>
    /// The confusion matrix of ML.NET's multiclass metrics as PNG bytes, with the classes named by the slot names of the
    /// scored data's score column (the label's key values).
    /// </summary>
    public static byte[] ConfusionMatrix(string title, MulticlassClassificationMetrics metrics, IDataView scored, string scoreColumnName = "Score")
    {
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentNullException.ThrowIfNull(scored);
        var column = scored.Schema.GetColumnOrNull(scoreColumnName)
            ?? throw new ArgumentException($"the scored data has no column '{scoreColumnName}'", nameof(scoreColumnName));
        var names = default(VBuffer<ReadOnlyMemory<char>>);
        column.GetSlotNames(ref names);
        var classes = names.DenseValues().Select(n => n.ToString()).ToList();
        var counts = metrics.ConfusionMatrix.Counts;
        if (classes.Count != counts.Count) classes = Enumerable.Range(0, counts.Count).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToList();
        return ConfusionMatrix(title, classes, counts);
    }

    /// <summary>An HTML <c>img</c> element holding the PNG inline (for notebooks' <c>display(HTML(...))</c>).</summary>
    public static string ToHtmlImage(byte[] png) => $"<img src=\"data:image/png;base64,{Convert.ToBase64String(png)}\"/>";

    /// <summary>Writes the PNG atomically (a temporary file, then a move) and returns the path.</summary>
    public static string Save(byte[] png, string path)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = full + $".{Guid.NewGuid():N}.tmp";
        File.WriteAllBytes(temp, png);
        File.Move(temp, full, overwrite: true);
        return full;
    }

    private static byte[] Draw(int width, int height, Action<SKCanvas> paint)
    {
        using var surface = SKSurface.Create(new SKImageInfo(width, height));
        surface.Canvas.Clear(SKColors.White);
        paint(surface.Canvas);
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>A text style: the paint (colour) and the font (face, size). SkiaSharp 3 moved size and face from the paint to SKFont.</summary>
    private sealed class TextStyle(float size) : IDisposable
    {
        public SKPaint Paint { get; } = NewPaint(size);
        public SKFont Font { get; } = new(Plots.Font.Value, size);

        private static SKPaint NewPaint(float size)
        {
#if SKIASHARP3
            return new SKPaint { Color = SKColors.Black, IsAntialias = true };
#else
            return new SKPaint { Color = SKColors.Black, IsAntialias = true, TextSize = size, Typeface = Plots.Font.Value };
#endif
        }

        public float Measure(string s)
        {
#if SKIASHARP3
            return Font.MeasureText(s, Paint);
#else
            return Paint.MeasureText(s);
#endif
        }

        public void Dispose()
        {
            Paint.Dispose();
            Font.Dispose();
        }
    }

    private static TextStyle Text(float size) => new(size);

    private static void DrawText(SKCanvas canvas, string s, float x, float y, TextStyle style, SKTextAlign align)
    {
#if SKIASHARP3
        canvas.DrawText(s, x, y, align, style.Font, style.Paint);
#else
        style.Paint.TextAlign = align;
        canvas.DrawText(s, x, y, style.Paint);
#endif
    }

    private static float MaxTextWidth(IEnumerable<string> items, float size)
    {
        using var style = Text(size);
        return items.Select(style.Measure).DefaultIfEmpty(0).Max();
    }

    private static (double Lo, double Hi) Range(IEnumerable<double> values)
    {
        double lo = values.Min(), hi = values.Max();
        if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
        double pad = (hi - lo) * 0.05;
        return (lo - pad, hi + pad);
    }

    /// <summary>About five round tick values inside [lo, hi].</summary>
    private static IEnumerable<double> Ticks(double lo, double hi)
    {
        double raw = (hi - lo) / 5, mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1, 2, 2.5, 5, 10 }.Select(m => m * mag).First(s => s >= raw);
        for (double t = Math.Ceiling(lo / step) * step; t <= hi + step * 1e-9; t += step) yield return Math.Abs(t) < step * 1e-9 ? 0 : t;
    }

    private static string Format(double v) =>
        Math.Abs(v) >= 10000 ? v.ToString("0.#e0", CultureInfo.InvariantCulture) : v.ToString("0.###", CultureInfo.InvariantCulture);
}

/// <summary>
/// Records the reports of a training run, for <see cref="Plots.LineChart"/>. Pass it as an estimator's
/// <c>Progress</c> option. It keeps the training loss per step (in bits per byte, which is nats / ln 2) and the validation
/// bits per byte where reported.
/// </summary>
public sealed class TrainingCurve : IProgress<TrainingProgress>
{
    private readonly List<(double, double)> _train = [], _validation = [];
    private readonly object _gate = new();

    /// <summary>(step, training loss in bits per byte).</summary>
    public IReadOnlyList<(double Step, double Bits)> Training { get { lock (_gate) return [.. _train]; } }

    /// <summary>(step, validation bits per byte).</summary>
    public IReadOnlyList<(double Step, double Bits)> Validation { get { lock (_gate) return [.. _validation]; } }

    /// <inheritdoc />
    public void Report(TrainingProgress value)
    {
        lock (_gate)
        {
            if (double.IsFinite(value.Loss)) _train.Add((value.Step, value.Loss / Math.Log(2)));
            if (value.ValidationBitsPerByte is double v) _validation.Add((value.Step, v));
        }
    }

    /// <summary>The curves as a PNG line chart (training, and validation when there is any).</summary>
    public byte[] ToPng(string title)
    {
        var series = new List<Plots.Series> { new("training", Training) };
        if (Validation.Count > 0) series.Add(new Plots.Series("validation", Validation));
        return Plots.LineChart(title, "optimiser step", "bits per byte", series);
    }
}
