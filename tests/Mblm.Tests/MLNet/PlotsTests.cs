using Mblm.Examples;
using Mblm.Training;
using SkiaSharp;

namespace Mblm.Tests;

/// <summary>The PNG charts of the examples and notebooks: they decode, have the promised size, and show what was plotted.</summary>
[TestClass]
public sealed class PlotsTests
{
    [TestMethod]
    public void LineChart_DrawsEverySeriesInItsColour()
    {
        var rising = new Plots.Series("a", Enumerable.Range(0, 50).Select(i => ((double)i, (double)i)).ToList());
        var falling = new Plots.Series("b", Enumerable.Range(0, 50).Select(i => ((double)i, 49.0 - i)).ToList());
        byte[] png = Plots.LineChart("title", "x", "y", [rising, falling], 640, 400);
        using var bitmap = SKBitmap.Decode(png);
        Assert.AreEqual(640, bitmap.Width);
        Assert.AreEqual(400, bitmap.Height);
        var pixels = bitmap.Pixels;
        int blue = pixels.Count(p => p.Blue > 150 && p.Red < 80 && p.Green < 150);
        int red = pixels.Count(p => p.Red > 180 && p.Green < 80 && p.Blue < 80);
        Assert.IsTrue(blue > 300, $"first series: {blue} blue pixels");
        Assert.IsTrue(red > 300, $"second series: {red} red pixels");
        int dark = pixels.Count(p => p.Red < 100 && p.Green < 100 && p.Blue < 100);
        Assert.IsTrue(dark > 150, $"axes and text: {dark} dark pixels");
    }

    [TestMethod]
    public void LineChart_RejectsNothingToPlot()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => Plots.LineChart("t", "x", "y", [new Plots.Series("nan", [(0, double.NaN)])]));
        StringAssert.Contains(ex.Message, "nothing to plot");
    }

    [TestMethod]
    public void ConfusionMatrix_ShadesTheDiagonalByRowShare()
    {
        double[][] counts = [[9, 1, 0], [0, 10, 0], [5, 0, 5]];
        using var bitmap = SKBitmap.Decode(Plots.ConfusionMatrix("cm", ["red", "green", "blue"], counts));
        Assert.IsTrue(bitmap.Width > 3 * 56 && bitmap.Height > 3 * 56);
        var pixels = bitmap.Pixels;
        int strongGreen = pixels.Count(p => p.Green == 255 && p.Red < 80 && p.Blue < 80);   // the all-correct row's diagonal cell
        int pinkish = pixels.Count(p => p.Red == 255 && p.Green is > 100 and < 200);        // the half-wrong row's off-diagonal cell
        Assert.IsTrue(strongGreen > 1000, $"{strongGreen} strongly green pixels");
        Assert.IsTrue(pinkish > 1000, $"{pinkish} pink pixels");
        Assert.ThrowsExactly<ArgumentException>(() => Plots.ConfusionMatrix("cm", ["a", "b"], counts));
    }

    [TestMethod]
    public void TrainingCurve_RecordsBitsPerByte()
    {
        var curve = new TrainingCurve();
        curve.Report(new TrainingProgress(1, 2, Math.Log(2) * 3, 1e-3, 100, TimeSpan.Zero));
        curve.Report(new TrainingProgress(2, 2, Math.Log(2) * 2, 1e-3, 100, TimeSpan.Zero, ValidationBitsPerByte: 2.5));
        Assert.AreEqual(2, curve.Training.Count);
        Assert.AreEqual(3.0, curve.Training[0].Bits, 1e-12);
        Assert.AreEqual((2.0, 2.5), curve.Validation.Single());
        using var bitmap = SKBitmap.Decode(curve.ToPng("curve"));
        Assert.AreEqual(720, bitmap.Width);
    }
}
