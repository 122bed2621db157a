using System.Globalization;
using System.Text.Json;
using Mblm.Config;
using Mblm.Training;
using Mblm.Weights;

namespace Mblm.Cli;

/// <summary>The exit codes of <c>mblm</c>.</summary>
public static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;
    /// <summary>Usage error: unknown command or flag, a missing or bad flag value, flags that do not go together.</summary>
    public const int Usage = 1;
    /// <summary>Interrupted (Ctrl+C or SIGTERM) before the command finished; <c>mblm train</c> left a checkpoint to resume from, <c>mblm generate</c> wrote what it had.</summary>
    public const int Interrupted = 130;
    /// <summary>Invalid files or data: a config, weights, pipeline, checkpoint or data file that is missing, unreadable, unwritable, damaged or does not fit.</summary>
    public const int InvalidInput = 2;
    /// <summary>Anything unexpected (a bug): the message says "internal error"; <c>--debug</c> prints the full exception.</summary>
    public const int Internal = 3;
}

/// <summary>A file or its contents cannot be used (exit code 2); the message names the file (or flag) and the problem.</summary>
public sealed class InvalidInputException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>How an exception maps to an exit code, and the one-line form of its message.</summary>
internal static class Errors
{
    /// <summary>Exception types that mean "the files or data given are not usable".</summary>
    public static bool IsInvalidInput(Exception e) =>
        e is InvalidInputException or ConfigException or IOException /* incl. MblmFormatException, FileNotFound, EndOfStream */
            or InvalidDataException or JsonException or WeightsMismatchException or UnauthorizedAccessException or CheckpointMismatchException;

    public static int ExitCodeOf(Exception e) =>
        e is UsageException ? ExitCodes.Usage : IsInvalidInput(e) ? ExitCodes.InvalidInput : ExitCodes.Internal;

    /// <summary>The message on one line: line breaks (and the indentation after them) become "; ".</summary>
    public static string OneLine(string message)
    {
        var lines = message.ReplaceLineEndings("\n").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0);
        return string.Join("; ", lines).Replace(":;", ":", StringComparison.Ordinal);
    }

    /// <summary>
    /// Runs <paramref name="read"/>, which reads <paramref name="path"/>; an exception that is not already a typed file error
    /// (a reader choking on a hostile file) becomes an <see cref="InvalidInputException"/> naming the file.
    /// </summary>
    public static T Reading<T>(string what, string path, Func<T> read)
    {
        try { return read(); }
        catch (Exception e) when (IsInvalidInput(e) && !e.Message.Contains(path, StringComparison.Ordinal))
        {
            // A typed file error whose message does not say which file (e.g. "Unable to read beyond the end of the stream").
            throw new InvalidInputException($"{what} '{path}': {OneLine(e.Message)}", e);
        }
        catch (Exception e) when (!IsInvalidInput(e) && e is not (UsageException or OutOfMemoryException or OperationCanceledException))
        {
            throw new InvalidInputException($"{what} '{path}' could not be read: {e.GetType().Name}: {OneLine(e.Message)}", e);
        }
    }
}

/// <summary>Checks of input and output paths, made before anything is loaded or computed.</summary>
internal static class CliPaths
{
    /// <summary>
    /// The model's config and weights files: from <c>--model DIR</c> (a model folder or a pretrained model's name:
    /// <c>config.json</c> and <c>model.safetensors</c>, see <see cref="Pretraining.MblmPretrained"/>), else from
    /// <c>--config</c> and <c>--weights</c> (<c>--weights</c> required when <paramref name="weightsFlag"/> is "weights").
    /// </summary>
    public static (string Config, string? Weights) ModelFiles(CliArgs args, string weightsFlag = "weights", bool weightsRequired = true)
    {
        string? model = args.Optional("model"), config = args.Optional("config"), weights = args.Optional(weightsFlag);
        if (model is not null)
        {
            if (config is not null || weights is not null) throw new UsageException($"give --model DIR, or --config and --{weightsFlag}, not both");
            string dir;
            try { dir = Pretraining.MblmPretrained.Resolve(model); }
            catch (DirectoryNotFoundException e) { throw new InvalidInputException($"--model: {e.Message}", e); }
            return (InputFile("model", Path.Combine(dir, "config.json")), InputFile("model", Path.Combine(dir, "model.safetensors")));
        }
        if (config is null) throw new UsageException("--config is required (or --model DIR)");
        if (weightsRequired && weights is null) throw new UsageException($"--{weightsFlag} is required (or --model DIR)");
        return (InputFile("config", config), weights is null ? null : InputFile(weightsFlag, weights));
    }

    /// <summary>An existing regular file for <c>--flag</c>: a directory or a missing file is an error naming the flag.</summary>
    public static string InputFile(string flag, string path)
    {
        if (path.Length == 0) throw new UsageException($"--{flag} needs a file path");
        if (Directory.Exists(path)) throw new InvalidInputException($"--{flag} '{path}' is a directory, not a file");
        if (!File.Exists(path)) throw new FileNotFoundException($"--{flag} '{path}' does not exist", path);
        return path;
    }

    /// <summary>A file path that can be written (the file need not exist; missing folders are created when writing).</summary>
    public static string OutputFile(string flag, string path)
    {
        string full = Full(flag, path);
        if (Directory.Exists(full)) throw new InvalidInputException($"--{flag} '{path}' is a directory; give a file name");
        RequireWritable(flag, path, Path.GetDirectoryName(full)!);
        return full;
    }

    /// <summary>A directory that exists and can be written, or can be created.</summary>
    public static string OutputDirectory(string flag, string path)
    {
        string full = Full(flag, path);
        if (File.Exists(full)) throw new InvalidInputException($"--{flag} '{path}' is a file, not a directory");
        RequireWritable(flag, path, full);
        return full;
    }

    /// <summary>Writes through a temporary file in the same folder, then moves it into place.</summary>
    public static void WriteAtomically(string path, ReadOnlySpan<byte> content) => AtomicFile.WriteAllBytes(path, content);

    private static string Full(string flag, string path)
    {
        if (path.Length == 0) throw new UsageException($"--{flag} needs a path");
        try { return Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new UsageException($"--{flag} '{path}' is not a valid path: {e.Message}");
        }
    }

    // The nearest existing folder at or above `folder` must be a folder (not a file) we can create files in.
    private static void RequireWritable(string flag, string path, string folder)
    {
        string existing = folder;
        while (!Directory.Exists(existing))
        {
            if (File.Exists(existing)) throw new InvalidInputException($"--{flag} '{path}' cannot be written: '{existing}' is a file, not a directory");
            existing = Path.GetDirectoryName(existing) ?? throw new InvalidInputException($"--{flag} '{path}' cannot be written: no existing folder above it");
        }
        string probe = Path.Combine(existing, $".mblm-write-check-{Guid.NewGuid():N}");
        try
        {
            using var stream = new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidInputException($"--{flag} '{path}' cannot be written: cannot create files in '{existing}' ({e.Message})");
        }
    }
}

/// <summary>JSON output helpers: numbers round-trip, and NaN or infinities never appear (they print as null).</summary>
internal static class CliJson
{
    public static string Number(double value) => double.IsFinite(value) ? value.ToString("R", CultureInfo.InvariantCulture) : "null";

    public static string Number(float value) => float.IsFinite(value) ? value.ToString("R", CultureInfo.InvariantCulture) : "null";

    /// <summary>A value for <see cref="JsonSerializer"/>: non-finite floating-point numbers (also inside arrays) become null.</summary>
    public static object? Finite(object? value) => value switch
    {
        double d => double.IsFinite(d) ? d : null,
        float f => float.IsFinite(f) ? f : null,
        float[] a => a.Select(x => float.IsFinite(x) ? (float?)x : null).ToArray(),
        _ => value,
    };
}

/// <summary>
/// The first Ctrl+C (SIGINT) or SIGTERM of a <c>mblm</c> process as a <see cref="CancellationToken"/>, while a command that
/// can stop cleanly listens (<see cref="Listen"/>: training, between steps, after a checkpoint). Otherwise, and at the
/// second signal, the signal's default action ends the process. <c>mblm generate</c> listens too: it stops, keeping and
/// writing what it generated.
/// </summary>
public static class Interrupt
{
    private static readonly CancellationTokenSource Source = new();
    private static int _installed, _listeners;
    private static readonly List<System.Runtime.InteropServices.PosixSignalRegistration> Registrations = [];

    /// <summary>Cancelled at the first interrupt received while a command listens.</summary>
    public static CancellationToken Token => Source.Token;

    /// <summary>Installs the handlers (once per process; the entry point calls it).</summary>
    public static void Install()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 1) return;
        foreach (var signal in new[] { System.Runtime.InteropServices.PosixSignal.SIGINT, System.Runtime.InteropServices.PosixSignal.SIGTERM })
            Registrations.Add(System.Runtime.InteropServices.PosixSignalRegistration.Create(signal, context =>
            {
                // Nobody listens, or the second signal: the default action ends the process.
                if (Volatile.Read(ref _listeners) == 0 || Source.IsCancellationRequested) return;
                context.Cancel = true;
                Console.Error.WriteLine($"mblm: {(context.Signal == System.Runtime.InteropServices.PosixSignal.SIGINT ? "Ctrl+C" : "SIGTERM")}: " +
                                        "stopping after the current step (again to stop at once)");
                Source.Cancel();
            }));
    }

    /// <summary>While the returned object is not disposed, an interrupt cancels <see cref="Token"/> instead of ending the process.</summary>
    public static IDisposable Listen()
    {
        Interlocked.Increment(ref _listeners);
        return new Listener();
    }

    private sealed class Listener : IDisposable
    {
        private int _disposed;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) Interlocked.Decrement(ref _listeners);
        }
    }
}
