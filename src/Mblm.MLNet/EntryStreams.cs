using System.Security.Cryptography;

namespace Mblm.MLNet;

/// <summary>
/// Reads one entry of a pipeline zip: never more than the entry's declared uncompressed length (a stream that goes on is
/// a lying header, and an error), hashing what passes when the manifest holds the entry's SHA-256. <see cref="Finish"/>
/// reads what is left and checks the length and the checksum. Every problem is an <see cref="MblmFormatException"/> naming
/// the file and the entry.
/// </summary>
internal sealed class CheckedEntryStream : Stream
{
    private readonly Stream _inner;
    private readonly string _file;
    private readonly string _entry;
    private readonly string? _expectedSha256;
    private readonly IncrementalHash? _hash;
    private long _read;

    /// <param name="inner">The entry's stream.</param>
    /// <param name="declared">The entry's declared uncompressed length: reading past it is an error.</param>
    /// <param name="file">The pipeline file, for errors.</param>
    /// <param name="entry">The entry's name, for errors.</param>
    /// <param name="expectedSha256">The entry's SHA-256 (lower-case hex) from the manifest, or null when the file has none.</param>
    public CheckedEntryStream(Stream inner, long declared, string file, string entry, string? expectedSha256)
    {
        _inner = inner;
        Declared = declared;
        _file = file;
        _entry = entry;
        _expectedSha256 = expectedSha256;
        _hash = expectedSha256 is null ? null : IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    }

    /// <summary>The entry's declared uncompressed length.</summary>
    public long Declared { get; }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _read; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n;
        try { n = _inner.Read(buffer); }
        catch (InvalidDataException e) { throw Error($"is damaged: {e.Message}", e); }
        if (n > 0)
        {
            if (n > Declared - _read) throw Error($"holds more than its declared {Declared:N0} bytes (a damaged or forged zip header)");
            _read += n;
            _hash?.AppendData(buffer[..n]);
        }
        return n;
    }

    /// <summary>Reads the rest of the entry, then checks that it held exactly its declared length and matches its checksum.</summary>
    public void Finish()
    {
        var buffer = new byte[81920];
        while (Read(buffer) > 0) { }
        if (_read != Declared) throw Error($"ends after {_read:N0} of its declared {Declared:N0} bytes");
        if (_hash is not null && Convert.ToHexStringLower(_hash.GetHashAndReset()) != _expectedSha256)
            throw Error("does not match its SHA-256 checksum in the manifest: the file is damaged");
    }

    /// <summary>
    /// After a reader failed on this entry: true when the entry's checksum does not match, i.e. the failure is damage to the
    /// file (reads what is left of the entry, at most its declared length). False when the file has no checksums.
    /// </summary>
    public bool IsDamaged()
    {
        if (_hash is null) return false;
        try { Finish(); }
        catch (MblmFormatException) { return true; }
        return false;
    }

    private MblmFormatException Error(string problem, Exception? inner = null) => new(_file, _entry, problem, inner);

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inner.Dispose();
            _hash?.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>Writes one entry of a pipeline zip and computes its SHA-256 on the way (for the manifest).</summary>
internal sealed class HashingWriteStream(Stream inner) : Stream
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    /// <summary>The SHA-256 of everything written, lower-case hex.</summary>
    public string Sha256() => Convert.ToHexStringLower(_hash.GetCurrentHash());

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _hash.AppendData(buffer);
        inner.Write(buffer);
    }

    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
            _hash.Dispose();
        }
        base.Dispose(disposing);
    }
}
