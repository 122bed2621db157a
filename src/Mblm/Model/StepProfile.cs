using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// A diagnostic wall-clock profile of one training step by region (embedding, each stage's token shift, norms,
/// projections, rotary, attention, feed-forward, head and loss), forward and backward, for the benchmarks' <c>profile</c>
/// command. Off unless a profile is running: <see cref="Mark"/> then costs one field read.
/// <para>
/// How it works: the model calls <see cref="Mark"/> where a region begins. Forward time runs from one mark to the next on
/// the calling thread (CPU ops are synchronous). Each mark also wraps its tensor in an identity autograd node whose backward
/// records the time the gradient reaches it: on the CPU, autograd runs backward on the calling thread in reverse order,
/// so the time since the previous such record is the backward of the region that starts at that mark.
/// </para>
/// </summary>
internal static class StepProfile
{
    [ThreadStatic] private static Recorder? _active; // per thread: only the profiling thread's forward records

    /// <summary>Whether a profile is recording.</summary>
    internal static bool Active => _active is not null;

    /// <summary>
    /// Marks the start of region <paramref name="region"/> at tensor <paramref name="x"/>; returns <paramref name="x"/>
    /// itself when no profile runs, else an alias that records the backward time.
    /// </summary>
    internal static Tensor Mark(Tensor x, string region)
    {
        var r = _active;
        if (r is null) return x;
        region = Prefix + region;
        r.Forward(region);
        return x.requires_grad ? MarkerFunction.Run(x, region, r) : x;
    }

    /// <summary>Marks the start of a region whose input needs no gradient (its backward is timed as the end of backward).</summary>
    internal static void Begin(string region) => _active?.Forward(Prefix + region);

    /// <summary>The prefix of region names from now on (the model sets the stage: "s0.", "s1.", …).</summary>
    internal static string Prefix { get => _prefix ?? ""; set => _prefix = value; }

    [ThreadStatic] private static string? _prefix;

    /// <summary>Starts recording (forward regions from now); returns the recorder to read after the step.</summary>
    internal static Recorder Start(string firstRegion)
    {
        var r = new Recorder(firstRegion);
        _active = r;
        return r;
    }

    /// <summary>Stops recording.</summary>
    internal static void Stop() => (_active, Prefix) = (null, "");

    /// <summary>Per-region forward and backward milliseconds of one step.</summary>
    internal sealed class Recorder
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private string _forwardRegion;
        private double _forwardSince, _backwardSince;

        /// <summary>Forward milliseconds by region (summed over repeated regions).</summary>
        public Dictionary<string, double> ForwardMs { get; } = new();

        /// <summary>Backward milliseconds by region.</summary>
        public Dictionary<string, double> BackwardMs { get; } = new();

        internal Recorder(string firstRegion) => _forwardRegion = firstRegion;

        private double Now => _clock.Elapsed.TotalMilliseconds;

        internal void Forward(string region)
        {
            double now = Now;
            Add(ForwardMs, _forwardRegion, now - _forwardSince);
            (_forwardRegion, _forwardSince) = (region, now);
        }

        /// <summary>Backward begins now (call just before <c>loss.backward()</c>).</summary>
        internal void BeginBackward() => _backwardSince = Now;

        internal void Backward(string region)
        {
            double now = Now;
            Add(BackwardMs, region, now - _backwardSince);
            _backwardSince = now;
        }

        /// <summary>Backward has returned: the time since the last mark goes to <paramref name="region"/> (work before the first mark).</summary>
        internal void EndBackward(string region) => Backward(region);

        private static void Add(Dictionary<string, double> d, string key, double ms) => d[key] = d.GetValueOrDefault(key) + ms;
    }

    // Identity whose backward records when the gradient reaches the start of its region.
    private sealed class MarkerFunction : autograd.SingleTensorFunction<MarkerFunction>
    {
        public override string Name => "MblmProfileMark";

        public static Tensor Run(Tensor x, string region, Recorder r) => apply(x, region, r);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data("region", vars[1]);
            ctx.save_data("recorder", vars[2]);
            return ((Tensor)vars[0]).alias();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            ((Recorder)ctx.get_data("recorder")).Backward((string)ctx.get_data("region"));
            return new List<Tensor> { gradOutput, null!, null! };
        }
    }
}
