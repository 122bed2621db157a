using System.Reflection;
using Microsoft.ML.Runtime;

namespace Mblm.MLNet.Hosting;

/// <summary>
/// ML.NET's cancellation as seen from outside ML.NET. <c>MLContext.CancelExecution()</c> (what AutoML calls, and what
/// Microsoft.ML.Experimental exposes) marks the context and every host registered under it as cancelled; ML.NET's own
/// trainers notice at their next <c>CheckAlive()</c>. That check and the <c>ICancelable.IsCanceled</c> flag behind it are
/// internal to ML.NET, so the flag is read here by reflection (the interface is looked up by name; when it cannot be
/// found, cancellation through the context is not seen, and the explicit <see cref="CancellationToken"/>s still work).
/// </summary>
internal static class HostCancellation
{
    /// <summary>Whether <paramref name="host"/> (an ML.NET host or environment) has been cancelled.</summary>
    public static bool IsCanceled(object host) =>
        Flags.GetOrAdd(host.GetType(), FindFlag)?.GetValue(host) as bool? ?? false;

    // The ICancelable.IsCanceled property of each host type, looked up once (this runs every training step and batch).
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, PropertyInfo?> Flags = new();

    private static PropertyInfo? FindFlag(Type type) =>
        type.GetInterfaces().FirstOrDefault(i => i.FullName == "Microsoft.ML.Runtime.ICancelable")
            ?.GetProperty("IsCanceled", BindingFlags.Public | BindingFlags.Instance);

    /// <summary>Throws ML.NET's <see cref="OperationCanceledException"/> when <paramref name="host"/> has been cancelled.</summary>
    public static void ThrowIfCanceled(object host)
    {
        if (IsCanceled(host)) throw new OperationCanceledException("Operation was cancelled (MLContext.CancelExecution).");
    }

    /// <summary>
    /// A token that is cancelled when <paramref name="host"/> is (checked whenever <see cref="Watch.Poll"/> runs, e.g. once per
    /// training step) or when <paramref name="linked"/> is.
    /// </summary>
    public static Watch Watching(IHost host, CancellationToken linked = default) => new(host, linked);

    /// <summary>
    /// A token that is cancelled within <paramref name="period"/> of <paramref name="host"/> being cancelled (a timer
    /// polls it), for work that has no step of its own to poll from, such as generating bytes; null host: never cancelled.
    /// </summary>
    public static Polled Polling(object? host, TimeSpan period) => new(host, period);

    internal sealed class Polled : IDisposable
    {
        private readonly CancellationTokenSource _source = new();
        private readonly Timer? _timer;

        public Polled(object? host, TimeSpan period)
        {
            if (host is not null)
                _timer = new Timer(_ => { if (IsCanceled(host)) _source.Cancel(); }, null, TimeSpan.Zero, period);
        }

        public CancellationToken Token => _source.Token;

        public void Dispose()
        {
            _timer?.Dispose(); // waits for nothing: a tick running now cancels a source nobody listens to any more
            _source.Dispose();
        }
    }

    internal sealed class Watch(IHost host, CancellationToken linked) : IDisposable
    {
        private readonly CancellationTokenSource _source = CancellationTokenSource.CreateLinkedTokenSource(linked);

        public CancellationToken Token => _source.Token;

        /// <summary>Cancels <see cref="Token"/> if the host has been cancelled since.</summary>
        public void Poll()
        {
            if (!_source.IsCancellationRequested && IsCanceled(host)) _source.Cancel();
        }

        public void Dispose() => _source.Dispose();
    }
}
