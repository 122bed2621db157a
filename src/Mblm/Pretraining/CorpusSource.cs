using Mblm.Model;
using Mblm.Training;

namespace Mblm.Pretraining;

/// <summary>
/// Training windows drawn from a corpus: each sample picks a kind by its weight (among the kinds that have files in the
/// split) and a window of <see cref="WindowLength"/> bytes at a random offset in that kind's files read one after another
/// in manifest order (a window may span the end of one file and the start of the next, so no sample is padding; a kind
/// with fewer bytes than a window is one whole sample). Sample i of epoch e is the same in every run and process (seeded
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
        var (files, ends) = _files[kind];
        long total = ends[^1];
        int length = (int)Math.Min(WindowLength, total);
        long offset = rng.NextInt64(total - length + 1);
        var tokens = new long[length];
        // The file holding byte `offset` of the kind's stream: the first whose end is past it.
        int i = Array.BinarySearch(ends, offset + 1);
        i = i >= 0 ? i : ~i;
        for (int filled = 0; filled < length; i++)
        {
            long start = ends[i] - files[i].Size, from = offset + filled - start;
            int take = (int)Math.Min(length - filled, files[i].Size - from);
            var bytes = Read(files[i], from, take);
            for (int k = 0; k < take; k++) tokens[filled + k] = bytes[k];
            filled += take;
        }
        return new ByteSample(tokens, Enumerable.Repeat(1f, length).ToArray());
    }

    /// <summary>
    /// The files the held-out evaluation of <paramref name="kind"/> reads: whole files in manifest order while their total
    /// stays within <paramref name="maxBytes"/> (at least the first file), decoded and checked against the manifest.
    /// </summary>
    public IReadOnlyList<byte[]> EvaluationFiles(string kind, long maxBytes)
    {
        var taken = new List<byte[]>();
        if (!_files.TryGetValue(kind, out var entry)) return taken;
        long total = 0;
        foreach (var file in entry.Files)
        {
            if (taken.Count > 0 && total + file.Size > maxBytes) break;
            taken.Add(file.ReadContent(verify: false));
            total += file.Size;
        }
        return taken;
    }

    /// <summary>Non-overlapping windows of <see cref="WindowLength"/> covering each of <paramref name="files"/> from its start (the last one of a file may be shorter).</summary>
    public IEnumerable<ByteSample> Windows(IEnumerable<byte[]> files)
    {
        ArgumentNullException.ThrowIfNull(files);
        foreach (var content in files)
            for (int offset = 0; offset < content.Length; offset += WindowLength)
            {
                int length = Math.Min(WindowLength, content.Length - offset);
                yield return new ByteSample(content.AsSpan(offset, length).ToArray().Select(b => (long)b).ToArray(), Enumerable.Repeat(1f, length).ToArray());
            }
    }

    /// <summary>
    /// Held-out bits per byte of <paramref name="model"/> per kind, over each kind's <see cref="EvaluationFiles"/>
    /// (at most <paramref name="maxBytesPerKind"/> bytes), cut into non-overlapping windows of the model's context.
    /// </summary>
    public IReadOnlyDictionary<string, double> BitsPerBytePerKind(MblmModel model, long maxBytesPerKind, int batchSize = 8) =>
        Kinds.ToDictionary(k => k, k => BitsPerByte(model, EvaluationFiles(k, maxBytesPerKind), batchSize));

    /// <summary>Bits per byte of <paramref name="model"/> over <paramref name="files"/>, read in non-overlapping windows (<see cref="Windows"/>).</summary>
    public double BitsPerByte(MblmModel model, IReadOnlyList<byte[]> files, int batchSize = 8) =>
        Evaluator.Evaluate(model, new Samples(Windows(files).ToList()), batchSize).BitsPerByte;

    private sealed class Samples(IReadOnlyList<ByteSample> samples) : ISampleSource
    {
        public long Count(int epoch) => samples.Count;
        public ByteSample Get(int epoch, long index) => samples[(int)index];
    }

    private static byte[] Read(CorpusFile file, long offset, int length)
    {
        if (file.Encoding != CorpusEncoding.Raw) return file.ReadContent(verify: false).AsSpan((int)offset, length).ToArray();
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
        if (verify || file.Encoding != CorpusEncoding.Raw) file.ReadContent(verify);
        else if (info.Length != file.Size) throw new MblmFormatException(file.Path, null, $"is {info.Length:N0} bytes now, {file.Size:N0} in the corpus manifest");
    }
}
