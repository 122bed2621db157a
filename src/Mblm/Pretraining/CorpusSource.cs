using Mblm.Model;
using Mblm.Training;

namespace Mblm.Pretraining;

/// <summary>
/// Training windows drawn from a corpus: each sample picks a kind by its weight (among the kinds that have files in the
/// split), a file of that kind in proportion to its size, and a window of up to <see cref="WindowLength"/> bytes at a
/// random offset (a shorter file is one whole sample). Sample i of epoch e is the same in every run and process (seeded
/// by seed, e and i), so training from a corpus resumes exactly. Files are checked against the manifest (size, and the
/// SHA-256 when opened with verification) before any is used.
/// </summary>
public sealed class CorpusSource : ISampleSource
{
    private readonly (string Kind, double Cumulative)[] _kinds;
    private readonly Dictionary<string, (CorpusFile[] Files, long[] CumulativeSize)> _files = [];
    private readonly long _samplesPerEpoch;
    private readonly long _seed;

    /// <param name="manifest">The corpus.</param>
    /// <param name="heldOut">Draw from the held-out files (true) or the training files (false).</param>
    /// <param name="windowLength">Bytes per sample (the model's context).</param>
    /// <param name="samplesPerEpoch">Samples an epoch has.</param>
    /// <param name="seed">Seed of the draws.</param>
    /// <param name="verify">Hash every file and compare with the manifest (else sizes only).</param>
    public CorpusSource(CorpusManifest manifest, bool heldOut, int windowLength, long samplesPerEpoch, long seed, bool verify = true)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentOutOfRangeException.ThrowIfLessThan(windowLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(samplesPerEpoch, 1);
        WindowLength = windowLength;
        _samplesPerEpoch = samplesPerEpoch;
        _seed = seed;
        foreach (var group in manifest.Files.Where(f => f.HeldOut == heldOut).GroupBy(f => f.Kind))
        {
            var files = group.ToArray();
            foreach (var f in files) Check(f, verify);
            long total = 0;
            _files[group.Key] = (files, files.Select(f => total += f.Size).ToArray());
        }
        if (_files.Count == 0) throw new ArgumentException($"the corpus has no {(heldOut ? "held-out" : "training")} files", nameof(manifest));
        double cumulative = 0;
        _kinds = _files.Keys.Order(StringComparer.Ordinal).Select(k => (k, cumulative += manifest.Weights[k])).ToArray();
    }

    /// <summary>Bytes per sample at most.</summary>
    public int WindowLength { get; }

    /// <summary>The kinds drawn from.</summary>
    public IReadOnlyList<string> Kinds => _kinds.Select(k => k.Kind).ToList();

    /// <inheritdoc/>
    public long Count(int epoch) => _samplesPerEpoch;

    /// <inheritdoc/>
    public ByteSample Get(int epoch, long index)
    {
        var rng = new Random(unchecked((int)(_seed * 1_000_003 + epoch * 7_919 + index * 104_729)) ^ (int)(index >> 31));
        double u = rng.NextDouble() * _kinds[^1].Cumulative;
        string kind = _kinds.First(k => u < k.Cumulative).Kind;
        var (files, sizes) = _files[kind];
        long at = rng.NextInt64(sizes[^1]);
        int i = Array.BinarySearch(sizes, at + 1);
        var file = files[i >= 0 ? i : ~i];
        int length = (int)Math.Min(WindowLength, file.Size);
        long offset = rng.NextInt64(file.Size - length + 1);
        return new ByteSample(Read(file, offset, length).Select(b => (long)b).ToArray(), Enumerable.Repeat(1f, length).ToArray());
    }

    /// <summary>Non-overlapping windows covering each file of <paramref name="kind"/> (the held-out evaluation's samples), up to <paramref name="maxBytes"/>.</summary>
    public IEnumerable<ByteSample> Windows(string kind, long maxBytes)
    {
        long taken = 0;
        if (!_files.TryGetValue(kind, out var entry)) yield break;
        foreach (var file in entry.Files)
            for (long offset = 0; offset < file.Size && taken < maxBytes; offset += WindowLength)
            {
                int length = (int)Math.Min(WindowLength, file.Size - offset);
                taken += length;
                yield return new ByteSample(Read(file, offset, length).Select(b => (long)b).ToArray(), Enumerable.Repeat(1f, length).ToArray());
            }
    }

    /// <summary>Held-out bits per byte of <paramref name="model"/> per kind, over at most <paramref name="maxBytesPerKind"/> bytes of each.</summary>
    public IReadOnlyDictionary<string, double> BitsPerBytePerKind(MblmModel model, long maxBytesPerKind, int batchSize = 8) =>
        Kinds.ToDictionary(k => k, k => Evaluator.Evaluate(model, new Samples(Windows(k, maxBytesPerKind).ToList()), batchSize).BitsPerByte);

    private sealed class Samples(IReadOnlyList<ByteSample> samples) : ISampleSource
    {
        public long Count(int epoch) => samples.Count;
        public ByteSample Get(int epoch, long index) => samples[(int)index];
    }

    private static byte[] Read(CorpusFile file, long offset, int length)
    {
        using var stream = new FileStream(file.Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (stream.Length != file.Size) throw new MblmFormatException(file.Path, null, $"is {stream.Length:N0} bytes now, {file.Size:N0} in the corpus manifest");
        var buffer = new byte[length];
        stream.Position = offset;
        stream.ReadExactly(buffer);
        return buffer;
    }

    private static void Check(CorpusFile file, bool verify)
    {
        var info = new FileInfo(file.Path);
        if (!info.Exists) throw new FileNotFoundException($"corpus file '{file.Path}' no longer exists", file.Path);
        if (info.Length != file.Size) throw new MblmFormatException(file.Path, null, $"is {info.Length:N0} bytes now, {file.Size:N0} in the corpus manifest");
        if (verify && Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(file.Path))) != file.Sha256)
            throw new MblmFormatException(file.Path, null, "has changed since the corpus manifest was written (SHA-256 differs)");
    }
}
