using System.IO.MemoryMappedFiles;

namespace Mblm.Training;

/// <summary>One training sample: token ids and per-position loss weights (same length), and for classification its class.</summary>
/// <param name="Ids">Token ids.</param>
/// <param name="LossMask">Per-position weights of the next-byte loss.</param>
/// <param name="Label">The 0-based class for a <see cref="ClassificationObjective"/>; -1 (none) otherwise.</param>
public readonly record struct ByteSample(long[] Ids, float[] LossMask, int Label = -1);

/// <summary>A source of training samples for the trainer; samples may have different lengths (batches are right-padded).</summary>
public interface ISampleSource
{
    /// <summary>Number of samples in epoch <paramref name="epoch"/>.</summary>
    long Count(int epoch);

    /// <summary>Sample <paramref name="index"/> of epoch <paramref name="epoch"/>.</summary>
    ByteSample Get(int epoch, long index);
}

/// <summary>
/// Bytes of a file (or a slice of it) cut into non-overlapping windows of <see cref="WindowLength"/> bytes, read through a
/// memory map so large files never load into memory. As in the reference, the window grid moves by one byte per epoch
/// (offset = epoch mod window length) and a trailing partial window is not used. Loss masks are all ones.
/// </summary>
public sealed class ByteFileDataset : ISampleSource, IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly long _start, _length;

    /// <summary>The file read.</summary>
    public string Path { get; }

    /// <summary>Bytes per sample.</summary>
    public int WindowLength { get; }

    /// <summary>Number of bytes of the file this dataset covers.</summary>
    public long Length => _length;

    /// <summary>
    /// Covers bytes [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>) of the file
    /// (the whole file by default).
    /// </summary>
    public ByteFileDataset(string path, int windowLength, long start = 0, long? length = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"data file '{path}' does not exist", path);
        if (windowLength <= 0) throw new ArgumentOutOfRangeException(nameof(windowLength), "window length must be positive");
        long fileLength = new FileInfo(path).Length;
        _start = start;
        _length = length ?? fileLength - start;
        if (start < 0 || _length < 0 || start + _length > fileLength)
            throw new ArgumentOutOfRangeException(nameof(start), $"slice [{start}, {start + _length}) is outside '{path}' ({fileLength} bytes)");
        Path = path;
        WindowLength = windowLength;
        if (fileLength > 0)
        {
            _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
    }

    /// <summary>Splits a file into a training part and a validation tail of <paramref name="validationFraction"/>.</summary>
    public static (ByteFileDataset Train, ByteFileDataset Validation) Split(string path, int windowLength, double validationFraction)
    {
        if (validationFraction is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(validationFraction), "must be in (0, 1)");
        long total = new FileInfo(path).Length;
        long valLength = (long)Math.Round(total * validationFraction);
        return (new ByteFileDataset(path, windowLength, 0, total - valLength), new ByteFileDataset(path, windowLength, total - valLength, valLength));
    }

    /// <inheritdoc />
    public long Count(int epoch) => Math.Max(0, (_length - Offset(epoch)) / WindowLength);

    /// <inheritdoc />
    public ByteSample Get(int epoch, long index)
    {
        if (index < 0 || index >= Count(epoch)) throw new ArgumentOutOfRangeException(nameof(index));
        var bytes = new byte[WindowLength];
        _view!.ReadArray(_start + Offset(epoch) + index * WindowLength, bytes, 0, WindowLength);
        var ids = new long[WindowLength];
        for (int i = 0; i < ids.Length; i++) ids[i] = bytes[i];
        return new ByteSample(ids, Enumerable.Repeat(1f, WindowLength).ToArray());
    }

    /// <summary>All bytes of the covered slice, read in windows (for byte-weighted evaluation of a whole file).</summary>
    public IEnumerable<byte[]> Chunks(int chunkLength)
    {
        for (long at = 0; at < _length; at += chunkLength)
        {
            var bytes = new byte[(int)Math.Min(chunkLength, _length - at)];
            _view!.ReadArray(_start + at, bytes, 0, bytes.Length);
            yield return bytes;
        }
    }

    private long Offset(int epoch) => _length > WindowLength ? epoch % WindowLength : 0;

    /// <inheritdoc />
    public void Dispose()
    {
        _view?.Dispose();
        _map?.Dispose();
    }
}
