using System.Diagnostics;

namespace Mblm.Cli;

/// <summary>
/// The classic compressors a pretrained model's bits per byte are compared with — <c>gzip -9</c>, <c>bzip2 -9</c>,
/// <c>xz -9e</c>, <c>zstd -19</c> — run as the installed programs. Sizes leave out each format's fixed container
/// overhead (the compressed size of empty input: headers and checksums), which favours the compressors on short chunks.
/// </summary>
internal static class Compressors
{
    /// <summary>Display name, program and arguments (compress standard input to standard output).</summary>
    public static readonly IReadOnlyList<(string Name, string Program, string[] Arguments)> All =
    [
        ("gzip -9", "gzip", ["-9", "-c", "-n"]),
        ("bzip2 -9", "bzip2", ["-9", "-c"]),
        ("xz -9e", "xz", ["-9e", "-c", "-T1"]),
        ("zstd -19", "zstd", ["-19", "-c", "-q"]),
    ];

    /// <summary>
    /// Bits per byte of each compressor over <paramref name="files"/>: each file compressed whole (<paramref name="chunk"/> null),
    /// or cut into chunks of <paramref name="chunk"/> bytes compressed one by one (the same context a model of that window has).
    /// A compressor that is not installed or fails gets null.
    /// </summary>
    public static Dictionary<string, double?> BitsPerByte(IReadOnlyList<byte[]> files, int? chunk)
    {
        long bytes = files.Sum(f => (long)f.Length);
        var result = new Dictionary<string, double?>();
        foreach (var (name, program, arguments) in All)
        {
            long? overhead = Compress(program, arguments, ReadOnlyMemory<byte>.Empty);
            if (overhead is null || bytes == 0) { result[name] = null; continue; }
            long total = 0;
            bool ok = true;
            foreach (var file in files)
                for (int offset = 0; ok && offset < file.Length; offset += chunk ?? file.Length)
                {
                    int length = Math.Min(chunk ?? file.Length, file.Length - offset);
                    long? size = Compress(program, arguments, file.AsMemory(offset, length));
                    if (size is null) ok = false;
                    else total += Math.Max(0, size.Value - overhead.Value);
                }
            result[name] = ok ? 8.0 * total / bytes : null;
        }
        return result;
    }

    /// <summary>Compressed size of <paramref name="data"/>, or null when the program cannot be run or fails.</summary>
    private static long? Compress(string program, string[] arguments, ReadOnlyMemory<byte> data)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in arguments) start.ArgumentList.Add(a);
        try
        {
            using var process = Process.Start(start);
            if (process is null) return null;
            var writing = Task.Run(async () =>
            {
                await process.StandardInput.BaseStream.WriteAsync(data).ConfigureAwait(false);
                process.StandardInput.Close();
            });
            var errors = process.StandardError.ReadToEndAsync();
            long size = 0;
            var buffer = new byte[65536];
            int n;
            while ((n = process.StandardOutput.BaseStream.Read(buffer)) > 0) size += n;
            writing.Wait();
            errors.Wait();
            process.WaitForExit();
            return process.ExitCode == 0 ? size : null;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException or AggregateException) { return null; }
    }
}
