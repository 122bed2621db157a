using Microsoft.ML.Data;
using SkiaSharp;

namespace Mblm.MLNet.Vision;

/// <summary>How an image becomes bytes for the model.</summary>
public enum ImageEncoding
{
    /// <summary>Raw RGB pixels in planar channel order (all R rows, then G, then B), as the reference's <c>to_tensor().flatten()</c>.</summary>
    Pixels,
    /// <summary>The bytes of a JPEG file of the (cropped, resized) image at <see cref="ImageByteOptions.JpegQuality"/>.</summary>
    Jpeg,
    /// <summary>The bytes of a PNG file of the (cropped, resized) image.</summary>
    Png,
}

/// <summary>Image-to-bytes settings (the reference's <c>process_and_flatten_img</c> steps, in its order).</summary>
public sealed record ImageByteOptions
{
    /// <summary>Encoding of the result.</summary>
    public ImageEncoding Encoding { get; init; } = ImageEncoding.Pixels;
    /// <summary>Crop this fraction of the height from the top and from the bottom (margin <c>int(min(h·f, h/2))</c>).</summary>
    public double CropHeightFraction { get; init; }
    /// <summary>Crop this fraction of the width from the left and from the right.</summary>
    public double CropWidthFraction { get; init; }
    /// <summary>Resize to this width (with <see cref="ResizeHeight"/>; null: the size is kept, or reduced by <see cref="MaxPixels"/>).</summary>
    public int? ResizeWidth { get; init; }
    /// <summary>Resize to this height.</summary>
    public int? ResizeHeight { get; init; }
    /// <summary>
    /// Without <see cref="ResizeWidth"/>/<see cref="ResizeHeight"/>: an image (after cropping) with more pixels than this is
    /// downscaled, aspect ratio kept, to ⌊w·s⌋×⌊h·s⌋ with s = √(MaxPixels / (w·h)) (at least 1×1) — a 32×24 or 64×48 image
    /// becomes 16×12. Default <see cref="DefaultMaxPixels"/>; null keeps every image's size. A byte model reads every
    /// pixel byte, so the sequence (and the training time) grows with the pixel count: at 16×12 the answer classifier's
    /// defaults learn colour and shape of small one-object scenes in 6 epochs in about a quarter of the time 32×24 takes.
    /// </summary>
    public int? MaxPixels { get; init; } = DefaultMaxPixels;
    /// <summary>Default <see cref="MaxPixels"/>: 192 pixels, 576 bytes of planar RGB (16×12).</summary>
    public const int DefaultMaxPixels = 192;
    /// <summary>
    /// Discretise every channel into this many equal bins over 0..255, each value replaced by its bin's mean; null keeps all
    /// 256 levels. Default <see cref="DefaultLevels"/>: the paper's 3-bit pixels. Each pixel value is a token with its own
    /// embedding, so fewer levels let a small training set cover them: on one-object scenes whose colours vary from scene to
    /// scene, 8 levels took colour accuracy from 0.73 to 1.00 (see the README's VQA section). Applied before any encoding,
    /// so set null for JPEG or PNG bytes of the full tones.
    /// </summary>
    public int? Levels { get; init; } = DefaultLevels;
    /// <summary>Default <see cref="Levels"/>: 8 levels per channel (3 bits).</summary>
    public const int DefaultLevels = 8;
    /// <summary>JPEG quality 0–100 for <see cref="ImageEncoding.Jpeg"/>.</summary>
    public int JpegQuality { get; init; } = 75;

    /// <summary>Largest <see cref="ResizeWidth"/> and <see cref="ResizeHeight"/> (pixels).</summary>
    public const int MaxResizeSide = 4096;

    internal ImageByteOptions Checked(string owner)
    {
        void Check(bool ok, string name, string rule) { if (!ok) throw new ArgumentOutOfRangeException(name, $"{owner}.{name} {rule}"); }
        Check(Enum.IsDefined(Encoding), nameof(Encoding), $"must be Pixels, Jpeg or Png (got {Encoding})");
        Check(CropHeightFraction is >= 0 and < 0.5, nameof(CropHeightFraction), $"must be in [0, 0.5) (got {CropHeightFraction})");
        Check(CropWidthFraction is >= 0 and < 0.5, nameof(CropWidthFraction), $"must be in [0, 0.5) (got {CropWidthFraction})");
        Check((ResizeWidth is null) == (ResizeHeight is null), nameof(ResizeWidth), "and ResizeHeight must be given together");
        Check(ResizeWidth is null or (> 0 and <= MaxResizeSide) && ResizeHeight is null or (> 0 and <= MaxResizeSide), nameof(ResizeWidth),
            $"and ResizeHeight must be in 1..{MaxResizeSide} (got {ResizeWidth}x{ResizeHeight})");
        Check(Levels is null or (>= 2 and <= 256), nameof(Levels), $"must be in 2..256 (got {Levels})");
        Check(MaxPixels is null or > 0, nameof(MaxPixels), $"must be positive or null (got {MaxPixels})");
        Check(JpegQuality is >= 0 and <= 100, nameof(JpegQuality), $"must be in 0..100 (got {JpegQuality})");
        return this;
    }
}

/// <summary>An RGB image held as three planes (for exact, testable byte layouts).</summary>
public sealed class RgbImage
{
    /// <summary>Wraps planar RGB data (length 3·width·height: R plane, G plane, B plane; rows top to bottom).</summary>
    public RgbImage(int width, int height, byte[] planar)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"image size must be positive (got {width}x{height})");
        if (planar.Length != 3 * width * height) throw new ArgumentException($"expected {3 * width * height} planar bytes for {width}x{height}, got {planar.Length}", nameof(planar));
        Width = width;
        Height = height;
        Planar = planar;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }
    /// <summary>Height in pixels.</summary>
    public int Height { get; }
    /// <summary>R plane, then G, then B.</summary>
    public byte[] Planar { get; }

    /// <summary>Reads an <c>MLImage</c> (BGRA32 or RGBA32; alpha dropped).</summary>
    public static RgbImage From(MLImage image)
    {
        var px = image.Pixels;
        int w = image.Width, h = image.Height, n = w * h;
        bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
        var planar = new byte[3 * n];
        for (int i = 0; i < n; i++)
        {
            byte c0 = px[4 * i], c1 = px[4 * i + 1], c2 = px[4 * i + 2];
            planar[i] = bgra ? c2 : c0;
            planar[n + i] = c1;
            planar[2 * n + i] = bgra ? c0 : c2;
        }
        return new RgbImage(w, h, planar);
    }

    /// <summary>Decodes an image file's bytes (PNG, JPEG, …); alpha dropped.</summary>
    public static RgbImage Decode(ReadOnlySpan<byte> file)
    {
        using var data = SKData.CreateCopy(file);
        using var bitmap = SKBitmap.Decode(data) ?? throw new InvalidDataException($"the {file.Length} bytes are not an image SkiaSharp can decode");
        return From(bitmap);
    }

    /// <summary>Reads a SkiaSharp bitmap.</summary>
    public static RgbImage From(SKBitmap bitmap)
    {
        using var rgba = bitmap.ColorType == SKColorType.Rgba8888 && bitmap.AlphaType != SKAlphaType.Premul ? null : bitmap.Copy(SKColorType.Rgba8888);
        var src = rgba ?? bitmap;
        int w = src.Width, h = src.Height, n = w * h;
        var bytes = src.GetPixelSpan();
        var planar = new byte[3 * n];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = y * w + x, o = y * src.RowBytes + 4 * x;
                planar[i] = bytes[o];
                planar[n + i] = bytes[o + 1];
                planar[2 * n + i] = bytes[o + 2];
            }
        return new RgbImage(w, h, planar);
    }

    /// <summary>An opaque RGBA bitmap of this image.</summary>
    public SKBitmap ToBitmap()
    {
        var bitmap = new SKBitmap(new SKImageInfo(Width, Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        int n = Width * Height;
        var dst = new byte[bitmap.RowBytes * Height];
        for (int y = 0; y < Height; y++)
            for (int x = 0; x < Width; x++)
            {
                int i = y * Width + x, o = y * bitmap.RowBytes + 4 * x;
                dst[o] = Planar[i];
                dst[o + 1] = Planar[n + i];
                dst[o + 2] = Planar[2 * n + i];
                dst[o + 3] = 255;
            }
        System.Runtime.InteropServices.Marshal.Copy(dst, 0, bitmap.GetPixels(), dst.Length);
        return bitmap;
    }
}

/// <summary>Turns images into model bytes: crop → resize → discretise → planar pixels, JPEG or PNG.</summary>
public static class ImageBytes
{
    /// <summary>The bytes of <paramref name="image"/> under <paramref name="options"/>.</summary>
    public static byte[] Encode(RgbImage image, ImageByteOptions options)
    {
        var img = Crop(image, options.CropHeightFraction, options.CropWidthFraction);
        var (w, h) = options.ResizeWidth is int rw && options.ResizeHeight is int rh ? (rw, rh) : Bounded(img.Width, img.Height, options.MaxPixels);
        if (w != img.Width || h != img.Height) img = Resize(img, w, h);
        if (options.Levels is int levels) img = Discretise(img, levels);
        return options.Encoding switch
        {
            ImageEncoding.Pixels => (byte[])img.Planar.Clone(),
            ImageEncoding.Jpeg => EncodeFile(img, SKEncodedImageFormat.Jpeg, options.JpegQuality),
            _ => EncodeFile(img, SKEncodedImageFormat.Png, 100),
        };
    }

    /// <summary>The size <see cref="ImageByteOptions.MaxPixels"/> gives a <paramref name="width"/>×<paramref name="height"/> image (unchanged when it has no more
    /// pixels, or the limit is null).</summary>
    public static (int Width, int Height) Bounded(int width, int height, int? maxPixels)
    {
        if (maxPixels is not int max || (long)width * height <= max) return (width, height);
        double s = Math.Sqrt((double)max / ((double)width * height));
        int w = Math.Max(1, (int)Math.Floor(width * s + 1e-9)), h = Math.Max(1, (int)Math.Floor(height * s + 1e-9));
        // A side clamped to one pixel leaves the other side all of the budget.
        if (h == 1) w = Math.Min(w, max);
        if (w == 1) h = Math.Min(h, max);
        return (w, h);
    }

    /// <summary>Removes <c>int(min(size·f, size/2))</c> pixels from each side of each dimension (the reference's rule).</summary>
    public static RgbImage Crop(RgbImage image, double heightFraction, double widthFraction)
    {
        int mh = (int)Math.Min(image.Height * heightFraction, image.Height / 2.0), mw = (int)Math.Min(image.Width * widthFraction, image.Width / 2.0);
        if (mh == 0 && mw == 0) return image;
        int h = image.Height - 2 * mh, w = image.Width - 2 * mw;
        if (h <= 0 || w <= 0) throw new ArgumentException($"cropping {image.Width}x{image.Height} by {widthFraction}/{heightFraction} leaves nothing");
        var planar = new byte[3 * w * h];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < h; y++)
                Array.Copy(image.Planar, c * image.Width * image.Height + (y + mh) * image.Width + mw, planar, c * w * h + y * w, w);
        return new RgbImage(w, h, planar);
    }

    /// <summary>High-quality (cubic) resampling with SkiaSharp.</summary>
    public static RgbImage Resize(RgbImage image, int width, int height)
    {
        using var src = image.ToBitmap();
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque);
#if SKIASHARP3
        var sampling = width <= image.Width && height <= image.Height
            ? new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear)
            : new SKSamplingOptions(SKCubicResampler.Mitchell);
        using var dst = src.Resize(info, sampling)
#else
        using var dst = src.Resize(info, SKFilterQuality.High)
#endif
            ?? throw new InvalidOperationException($"SkiaSharp could not resize {image.Width}x{image.Height} to {width}x{height}");
        return RgbImage.From(dst);
    }

    /// <summary>n equal bins over 0..255: bin k holds values [⌈256k/n⌉, ⌈256(k+1)/n⌉); every value becomes its bin's integer mean (rounded down).</summary>
    public static RgbImage Discretise(RgbImage image, int levels)
    {
        var map = new byte[256];
        for (int k = 0; k < levels; k++)
        {
            int lo = (256 * k + levels - 1) / levels, hi = (256 * (k + 1) + levels - 1) / levels - 1;
            for (int v = lo; v <= hi; v++) map[v] = (byte)((lo + hi) / 2);
        }
        return new RgbImage(image.Width, image.Height, image.Planar.Select(v => map[v]).ToArray());
    }

    private static byte[] EncodeFile(RgbImage image, SKEncodedImageFormat format, int quality)
    {
        using var bitmap = image.ToBitmap();
        using var sk = SKImage.FromBitmap(bitmap);
        using var data = sk.Encode(format, quality) ?? throw new InvalidOperationException($"SkiaSharp could not encode {format}");
        return data.ToArray();
    }
}
