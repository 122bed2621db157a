using System.Security.Cryptography;

namespace Mblm;

/// <summary>
/// Reads one entry of a zip (a saved pipeline, a <c>torch.save</c> checkpoint): never more than the entry's declared
/// uncompressed length (a stream that goes on is a lying header, and an error), hashing what passes when the manifest holds
/// the entry's SHA-256. <see cref="Finish()"/> reads what is left and checks the length and the checksum. Every problem is
/// an <see cref="MblmFormatException"/> naming the file and the entry.
/// </summary>
internal sealed class CheckedEntryStream : Stream
{
    private readonly Stream _inner;
    private readonly string _file;
    private readonly string _entry;
    private readonly string? _expectedSha256;
    private readonly IncrementalHash? _hash;
    private long _read;
    private bool _failed;

    /// <param name="inner">The entry's stream.</param>
    /// <param name="declared">The entry's declared uncompressed length: reading past it is an error.</param>
    /// <param name="file">The zip file, for errors.</param>
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

    public override int Read(Span<byte> buffer) => Read(buffer, null);

    private int Read(Span<byte> buffer, Exception? cause)
    {
        int n;
        try { n = _inner.Read(buffer); }
        catch (InvalidDataException e) { throw Error($"is damaged: {e.Message}", cause ?? e); }
        if (n > 0)
        {
            if (n > Declared - _read) throw Error($"holds more than its declared {Declared:N0} bytes (a damaged or forged zip header)", cause);
            _read += n;
            _hash?.AppendData(buffer[..n]);
        }
        return n;
    }

    /// <summary>Reads the rest of the entry, then checks that it held exactly its declared length and matches its checksum.</summary>
    public void Finish() => Finish(null);

    /// <summary>
    /// After a reader failed on this entry (<paramref name="failure"/>): when the file has checksums and the entry turns out
    /// damaged (it does not match its checksum, or its zip header lies about its size), the error that says so, with the
    /// reader's failure inside; otherwise null (the reader's own error stands). Reads at most what is left of the entry.
    /// </summary>
    public MblmFormatException? DamageBehind(Exception failure)
    {
        if (_hash is null || _failed) return null; // this stream's own error already says what is wrong
        try { Finish(failure); }
        catch (MblmFormatException damage) { return damage; }
        catch (Exception) { }
        return null;
    }

    private void Finish(Exception? cause)
    {
        var buffer = new byte[81920];
        while (Read(buffer, cause) > 0) { }
        if (_read != Declared) throw Error($"ends after {_read:N0} of its declared {Declared:N0} bytes", cause);
        if (_hash is not null && Convert.ToHexStringLower(_hash.GetHashAndReset()) != _expectedSha256)
            throw Error("does not match its SHA-256 checksum in the manifest: the file is damaged", cause);
    }

    private MblmFormatException Error(string problem, Exception? inner = null)
    {
        _failed = true;
        return new(_file, _entry, problem, inner);
    }

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

/// <summary>Writes one entry of a zip and computes its SHA-256 on the way (for the manifest).</summary>
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
